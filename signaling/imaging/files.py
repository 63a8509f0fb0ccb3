"""Where stored DICOM instances live: ``<data_dir>/imaging/<consultation>/<study>/<series>/
<sop>.dcm``, byte for byte as they were sent.

Every path is made of a consultation id (the database's) and UIDs that passed
:func:`~signaling.imaging.dicom.valid_uid` (digits and dots only), checked again here: no
raw input ever names a file, and nothing can climb out of the root. A write goes to a
temporary file in the same directory, is flushed to disk, and only then takes its name
(:meth:`InstanceFiles.commit`): a reader sees the whole file or none. Blocking: callers on
an event loop use a worker thread.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from signaling.imaging.dicom import valid_uid

_CONSULTATION = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class InstanceKey:
    """The names a stored instance is filed under."""

    consultation_id: str
    study: str
    series: str
    sop: str

    def __post_init__(self) -> None:
        if _CONSULTATION.fullmatch(self.consultation_id) is None:
            raise ValueError("not a consultation id")
        for uid in (self.study, self.series, self.sop):
            if not valid_uid(uid):
                raise ValueError("not a DICOM UID")


class InstanceFiles:
    """The instance files under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: InstanceKey) -> Path:
        return self.root / key.consultation_id / key.study / key.series / f"{key.sop}.dcm"

    def stage(self, key: InstanceKey, data: bytes) -> Path:
        """Write ``data`` to a temporary file beside the instance's place, flushed to disk;
        :meth:`commit` gives it its name, :meth:`discard` removes it."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{key.sop}.{secrets.token_hex(8)}.part")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary

    def commit(self, key: InstanceKey, staged: Path) -> None:
        """Give a staged file the instance's name (atomically), and make that durable."""
        final = self.path(key)
        os.replace(staged, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @staticmethod
    def discard(staged: Path) -> None:
        staged.unlink(missing_ok=True)

    def read(self, key: InstanceKey) -> bytes | None:
        """The instance's bytes, or None when no file is there (not yet committed)."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, key: InstanceKey) -> bool:
        """Delete the instance's file (False: there was none), and the study, series and
        consultation directories it leaves empty."""
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        consultation = self.root / key.consultation_id
        directory = path.parent
        while directory != self.root and directory.is_relative_to(consultation):
            try:
                directory.rmdir()  # only when empty (a staged file or another instance stays)
            except OSError:
                break
            directory = directory.parent
        return True
