"""STOW-RS (PS3.18 10.5) without the I/O: the checks of an upload's parts and the answer.

:func:`check_upload` runs in a worker thread: the multipart framing
(:mod:`signaling.imaging.multipart`), then per part its media type, its ``Content-Digest``
(RFC 9530, ``sha-256`` checked when given), the file read by pydicom and its SHA-256. A
broken framing refuses the whole body (:class:`~signaling.errors.InvalidMultipart`); a bad
part fails alone (:class:`Failed`, with its DICOM failure reason) and the others go on.
:func:`answer` builds the ``application/dicom+json`` body: ReferencedSOPSequence
(0008,1199) and FailedSOPSequence (0008,1198) with FailureReason (0008,1197) and, for
people, the reason in Error Comment (0000,0902).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from signaling.errors import InvalidInstance, InvalidMultipart
from signaling.imaging.dicom import CANNOT_UNDERSTAND, InstanceInfo, read_instance
from signaling.imaging.multipart import MultipartLimits, Part, parse_media_type, parse_related

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
# One member of a Content-Digest dictionary: an algorithm and its byte sequence.
_DIGEST_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*")
#: Error Comment holds at most 64 characters (LO).
_COMMENT_MAX = 64


@dataclass(frozen=True)
class Checked:
    """A part that is a readable instance: its index, bytes and SHA-256 (hex)."""

    info: InstanceInfo
    data: bytes
    sha256: str


@dataclass(frozen=True)
class Failed:
    """A part that is not stored: the DICOM failure reason, a sentence, and what is known
    of the instance (its UIDs, when the file was readable)."""

    status: int
    reason: str
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None


def check_upload(body: bytes, boundary: str, limits: MultipartLimits) -> list[Checked | Failed]:
    """Every part of the body, checked. Raises :class:`InvalidMultipart` when the framing
    breaks (nothing is stored then)."""
    return [
        check_part(part, number)
        for number, part in enumerate(parse_related(body, boundary, limits), 1)
    ]


def check_part(part: Part, number: int) -> Checked | Failed:
    declared = part.header("content-type")
    try:
        media = parse_media_type(declared or "").type
    except InvalidMultipart:
        media = "malformed"
    if media != DICOM:
        return Failed(CANNOT_UNDERSTAND, f"part {number} is {media or 'untyped'}, not {DICOM}")
    digest = hashlib.sha256(part.body).digest()
    try:
        claimed = sha256_of_digest_header(part.header("content-digest"))
    except InvalidInstance as exc:
        return Failed(exc.status, f"part {number}: {exc.reason}")
    if claimed is not None and not hmac.compare_digest(claimed, digest):
        return Failed(
            CANNOT_UNDERSTAND, f"part {number}: the SHA-256 does not match its Content-Digest"
        )
    try:
        info = read_instance(part.body)
    except InvalidInstance as exc:
        return Failed(exc.status, f"part {number}: {exc.reason}")
    return Checked(info, part.body, digest.hex())


def sha256_of_digest_header(value: str | None) -> bytes | None:
    """The ``sha-256`` of a ``Content-Digest`` field (RFC 9530), or None when the field is
    absent or names other algorithms only. Raises :class:`InvalidInstance` when it is not a
    well-formed dictionary of byte sequences, or its sha-256 is not 32 bytes."""
    if value is None:
        return None
    found: bytes | None = None
    for member in value.split(","):
        match = _DIGEST_MEMBER.fullmatch(member)
        if match is None:
            raise InvalidInstance(CANNOT_UNDERSTAND, "its Content-Digest is malformed")
        if match.group(1) == "sha-256":
            try:
                found = base64.b64decode(match.group(2), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInstance(
                    CANNOT_UNDERSTAND, "its Content-Digest is not base64"
                ) from None
            if len(found) != 32:
                raise InvalidInstance(
                    CANNOT_UNDERSTAND, "its Content-Digest sha-256 is not 32 bytes"
                )
    return found


def content_digest(data: bytes) -> str:
    """The ``Content-Digest`` field value of ``data`` (sha-256)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode('ascii')}:"


@dataclass(frozen=True)
class Referenced:
    """A stored (or already stored, the same) instance, for the answer."""

    sop_class_uid: str
    sop_instance_uid: str
    retrieve_url: str


def answer(referenced: list[Referenced], failed: list[Failed]) -> tuple[int, dict[str, Any]]:
    """The status (200 all stored, 202 some, 409 none) and the dicom+json body."""
    body: dict[str, Any] = {}
    if referenced:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": _ui(r.sop_class_uid),
                    "00081155": _ui(r.sop_instance_uid),
                    "00081190": {"vr": "UR", "Value": [r.retrieve_url]},
                }
                for r in referenced
            ],
        }
    if failed:
        items = []
        for f in failed:
            item: dict[str, Any] = {}
            if f.sop_class_uid:
                item["00081150"] = _ui(f.sop_class_uid)
            if f.sop_instance_uid:
                item["00081155"] = _ui(f.sop_instance_uid)
            item["00081197"] = {"vr": "US", "Value": [f.status]}
            item["00000902"] = {"vr": "LO", "Value": [_comment(f.reason)]}
            items.append(item)
        body["00081198"] = {"vr": "SQ", "Value": items}
    status = 200 if not failed else 202 if referenced else 409
    return status, body


def _ui(uid: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [uid]}


def _comment(reason: str) -> str:
    # LO: no backslash (the value separator), no control characters, 64 characters.
    text = "".join(c if c.isprintable() and c != "\\" else " " for c in reason)
    return text[: _COMMENT_MAX - 1] + "…" if len(text) > _COMMENT_MAX else text
