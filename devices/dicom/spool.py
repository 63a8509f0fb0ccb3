"""Accepted instances kept on disk until the server took them (store and forward).

One file per instance under the spool's directory, named
``<sequence>~<consultation>~<d|c>~<SOP Instance UID>.dcm`` (``d``: de-identified, ``c``:
sent as received, with consent), written to a temporary name, flushed to disk and renamed,
so a file that is there is whole: the C-STORE is answered success only after that. Oldest
first. Bounded by a number of files and of bytes: a full spool refuses new instances (the
modality is told, 0xA700), it never drops accepted ones. An instance the server refuses for
good is moved to ``refused/`` beside them (kept for the site's staff, logged), not deleted.

Blocking calls: run them in a worker thread.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_UID = re.compile(r"^[0-9.]{1,64}$")


class SpoolFull(Exception):
    """No room for another instance; the message says which bound."""


@dataclass(frozen=True)
class SpoolLimits:
    max_files: int = 10_000
    max_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class Spooled:
    path: Path
    consultation_id: str
    deidentified: bool
    sop_instance_uid: str
    size: int


class Spool:
    def __init__(self, directory: Path, limits: SpoolLimits = SpoolLimits()) -> None:
        self.directory = directory
        self.refused_dir = directory / "refused"
        self.limits = limits
        self.refused_dir.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):  # a write the process did not finish
            stale.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._counter = itertools.count()
        entries = self._entries()
        self._files = len(entries)
        self._bytes = sum(e.size for e in entries)

    def _names(self) -> list[str]:
        """The spooled files' names (no stat: a backlog of thousands is listed per send)."""
        with os.scandir(self.directory) as entries:
            return [e.name for e in entries if e.name.endswith(".dcm") and e.name.count("~") == 3]

    def _entry(self, name: str) -> Spooled:
        path = self.directory / name
        _, consultation, flag, uid = path.stem.split("~")
        return Spooled(path, consultation, flag == "d", uid, path.stat().st_size)

    def _entries(self) -> list[Spooled]:
        return [self._entry(name) for name in sorted(self._names())]

    @property
    def pending(self) -> int:
        return self._files

    def put(
        self, consultation_id: str, part10: bytes, *, deidentified: bool, sop_instance_uid: str
    ) -> Spooled:
        """Keep one instance (durably); raises SpoolFull, ValueError for a bad identifier,
        OSError when the disk fails."""
        if not _ID.match(consultation_id):
            raise ValueError(f"consultation id {consultation_id!r} cannot name a spool file")
        if not _UID.match(sop_instance_uid):
            raise ValueError(f"SOP Instance UID {sop_instance_uid!r} is not a UID")
        with self._lock:
            if self._files + 1 > self.limits.max_files:
                raise SpoolFull(f"{self._files} instances already wait for the server")
            if self._bytes + len(part10) > self.limits.max_bytes:
                raise SpoolFull(f"{self._bytes} bytes already wait for the server")
            self._files += 1
            self._bytes += len(part10)
            sequence = f"{time.time_ns():020d}{next(self._counter) % 1000:03d}"
        flag = "d" if deidentified else "c"
        path = self.directory / f"{sequence}~{consultation_id}~{flag}~{sop_instance_uid}.dcm"
        temporary = path.with_suffix(".tmp")
        try:
            with temporary.open("wb") as f:
                f.write(part10)
                f.flush()
                os.fsync(f.fileno())
            temporary.rename(path)
        except OSError:
            temporary.unlink(missing_ok=True)
            with self._lock:
                self._files -= 1
                self._bytes -= len(part10)
            raise
        return Spooled(path, consultation_id, deidentified, sop_instance_uid, len(part10))

    def oldest(self) -> Spooled | None:
        names = self._names()
        return self._entry(min(names)) if names else None

    def read(self, item: Spooled) -> bytes:
        return item.path.read_bytes()

    def remove(self, item: Spooled) -> None:
        """The server has it."""
        item.path.unlink(missing_ok=True)
        self._forget(item)

    def set_aside(self, item: Spooled) -> Path:
        """The server refused it for good: kept in ``refused/``, out of the queue."""
        target = self.refused_dir / item.path.name
        item.path.rename(target)
        self._forget(item)
        return target

    def _forget(self, item: Spooled) -> None:
        with self._lock:
            self._files = max(0, self._files - 1)
            self._bytes = max(0, self._bytes - item.size)
