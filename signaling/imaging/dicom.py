"""What the server reads from a DICOM Part 10 file, with pydicom: the index of an instance,
its DICOM JSON (PS3.18 annex F) and its native frames.

Pure and blocking (pydicom decodes the whole file): callers on an event loop run these in
a worker thread. Every fault of the file is an :class:`~signaling.errors.InvalidInstance`
with a DICOM failure reason and a sentence; nothing else escapes :func:`read_instance`.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_expected_length

from signaling.errors import InvalidInstance

#: DICOM failure reasons (PS3.18 table 10.5.3-1, PS3.4 annex B).
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH_SOP_CLASS = 0xA900
NOT_AUTHORISED = 0x0124
DUPLICATE_SOP_INSTANCE = 0x0111
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700

UID_PATTERN = r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"
_UID = re.compile(UID_PATTERN)
#: Transfer syntaxes whose pixel data is native (not encapsulated): frames can be cut out.
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
#: The media type a compressed frame is served as, by transfer syntax (PS3.18 Table 8.7.3-2).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "image/jpeg",  # JPEG Extended
    "1.2.840.10008.1.2.4.57": "image/jpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "image/jpeg",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80": "image/jls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "image/jls",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "image/jp2",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "image/jp2",  # JPEG 2000
    "1.2.840.10008.1.2.5": "image/dicom-rle",  # RLE Lossless
}
#: What DICOM JSON is always written in (PS3.18 F.2.1: UTF-8).
UTF8_CHARSET = "ISO_IR 192"


def valid_uid(value: str) -> bool:
    """True when ``value`` is a DICOM UID (PS3.5 9.1): at most 64 characters, numeric
    components without leading zeros. Only such strings ever name a file."""
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


@dataclass(frozen=True)
class InstanceInfo:
    """The index of one instance, as read from its file."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    frames: int
    rows: int | None
    columns: int | None
    #: Decoded with the file's character set; ``=`` separates the component groups.
    patient_name: str
    patient_id: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    #: Patient Identity Removed (0012,0062) is YES.
    deidentified: bool


def parse(data: bytes) -> Dataset:
    """The dataset of a Part 10 file; raises :class:`InvalidInstance` (cannot understand)."""
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types for bad bytes: each is a refusal
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"not a DICOM Part 10 file pydicom can read: {_short(exc)}"
        ) from None


def read_instance(data: bytes) -> InstanceInfo:
    """Read and check one Part 10 file: its UIDs present and well formed (the SOP Instance
    UID the same as the file meta's), native pixel data as long as its rows, columns and
    frames need. Raises :class:`InvalidInstance`."""
    ds = parse(data)
    try:
        return _info(ds)
    except InvalidInstance:
        raise
    except Exception as exc:  # a value pydicom cannot convert (a malformed IS, US...)
        raise InvalidInstance(CANNOT_UNDERSTAND, f"unreadable attribute: {_short(exc)}") from None


def _info(ds: Dataset) -> InstanceInfo:
    meta = ds.file_meta
    syntax = str(meta.get("TransferSyntaxUID", ""))
    uids = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = str(ds.get(keyword, "")).strip()
        if not valid_uid(value):
            raise InvalidInstance(
                DOES_NOT_MATCH_SOP_CLASS, f"{keyword} is missing or not a valid UID"
            )
        uids[keyword] = value
    if not valid_uid(syntax):
        raise InvalidInstance(CANNOT_UNDERSTAND, "the file meta has no valid transfer syntax")
    stored = str(meta.get("MediaStorageSOPInstanceUID", uids["SOPInstanceUID"])).strip()
    if stored != uids["SOPInstanceUID"]:
        raise InvalidInstance(
            DOES_NOT_MATCH_SOP_CLASS,
            "the file meta's Media Storage SOP Instance UID differs from the SOP Instance UID",
        )
    frames = _int(ds.get("NumberOfFrames")) or 1
    if "PixelData" in ds and syntax in NATIVE_SYNTAXES:
        expected = get_expected_length(ds, unit="bytes")
        actual = len(ds.PixelData)
        if actual < expected:
            raise InvalidInstance(
                CANNOT_UNDERSTAND,
                f"truncated: the pixel data has {actual} bytes, its {frames} frame(s) need "
                f"{expected}",
            )
    removed = str(ds.get("PatientIdentityRemoved", "")).strip().upper()
    return InstanceInfo(
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        transfer_syntax_uid=syntax,
        modality=_text(ds, "Modality", 16),
        frames=frames,
        rows=_int(ds.get("Rows")),
        columns=_int(ds.get("Columns")),
        patient_name=_text(ds, "PatientName", 512),
        patient_id=_text(ds, "PatientID", 128),
        study_date=_text(ds, "StudyDate", 8),
        study_time=_text(ds, "StudyTime", 32),
        study_description=_text(ds, "StudyDescription", 128),
        accession_number=_text(ds, "AccessionNumber", 32),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=_text(ds, "SeriesDescription", 128),
        instance_number=_int(ds.get("InstanceNumber")),
        deidentified=removed == "YES",
    )


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()[:limit]


def _int(value: object) -> int | None:
    if value is None or value == "":
        return None
    number = int(value)  # type: ignore[call-overload]
    return number if -(2**31) <= number < 2**31 else None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def metadata(data: bytes, bulk_uri: Callable[[str], str]) -> dict[str, Any]:
    """The instance's DICOM JSON (WADO-RS metadata): every attribute but the file meta, text
    decoded with the file's character set (so SpecificCharacterSet says ISO_IR 192), binary
    values over 1 KiB replaced by a ``BulkDataURI`` from ``bulk_uri(tag)`` (tag as 8 hex
    digits). Raises :class:`InvalidInstance` for a file pydicom cannot read."""
    ds = parse(data)

    def handler(element: Any) -> str:
        return bulk_uri(f"{int(element.tag):08X}")

    try:
        out: dict[str, Any] = ds.to_json_dict(
            bulk_data_threshold=1024, bulk_data_element_handler=handler, suppress_invalid_tags=True
        )
    except Exception as exc:
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"cannot write DICOM JSON: {_short(exc)}"
        ) from None
    out["00080005"] = {"vr": "CS", "Value": [UTF8_CHARSET]}
    return out


def bulk_value(data: bytes, tag: int) -> bytes | None:
    """The raw value of top-level binary attribute ``tag`` (None: absent or not binary)."""
    ds = parse(data)
    if tag not in ds:
        return None
    value = ds[tag].value
    return bytes(value) if isinstance(value, bytes | bytearray) else None


def native_frames(data: bytes, numbers: list[int]) -> list[bytes]:
    """Frames ``numbers`` (1-based) of an instance whose pixel data is native, each as the
    bytes it holds in the file. Raises :class:`InvalidInstance` (no pixel data, compressed,
    1-bit) and :class:`IndexError` naming a frame out of range."""
    ds = parse(data)
    if "PixelData" not in ds:
        raise InvalidInstance(DOES_NOT_MATCH_SOP_CLASS, "the instance has no pixel data")
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax not in NATIVE_SYNTAXES:
        raise InvalidInstance(
            CANNOT_UNDERSTAND,
            f"the pixel data is compressed ({syntax}); ask for the rendered frame instead",
        )
    if int(ds.get("BitsAllocated", 8)) == 1:
        raise InvalidInstance(CANNOT_UNDERSTAND, "1-bit frames are not byte-aligned")
    count = _int(ds.get("NumberOfFrames")) or 1
    size = get_expected_length(ds, unit="bytes") // count
    pixels = ds.PixelData
    out = []
    for number in numbers:
        if not 1 <= number <= count:
            raise IndexError(f"frame {number} is out of range: the instance has {count}")
        out.append(bytes(pixels[(number - 1) * size : number * size]))
    return out


@dataclass(frozen=True)
class Frames:
    """Frames as the file holds them: native (``application/octet-stream``) or each one
    compressed frame in ``media_type`` of ``transfer_syntax``."""

    media_type: str
    transfer_syntax: str
    frames: list[bytes]


def compressed_frames(data: bytes, numbers: list[int]) -> Frames:
    """Frames ``numbers`` (1-based) of an instance whose pixel data is encapsulated, each
    its compressed bytes as stored (no decoding: served as the modality encoded them).
    Raises :class:`InvalidInstance` (no pixel data, native, a syntax with no frame media
    type) and :class:`IndexError` naming a frame out of range."""
    ds = parse(data)
    if "PixelData" not in ds:
        raise InvalidInstance(DOES_NOT_MATCH_SOP_CLASS, "the instance has no pixel data")
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    media_type = FRAME_MEDIA_TYPES.get(syntax)
    if media_type is None:
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"frames of {syntax or 'this transfer syntax'} cannot be served"
        )
    count = _int(ds.get("NumberOfFrames")) or 1
    for number in numbers:
        if not 1 <= number <= count:
            raise IndexError(f"frame {number} is out of range: the instance has {count}")
    try:
        frames = list(
            itertools.islice(generate_frames(ds.PixelData, number_of_frames=count), count)
        )
    except (ValueError, TypeError) as exc:
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"the encapsulated pixel data cannot be read: {_short(exc)}"
        ) from None
    if len(frames) < count:
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"the pixel data holds {len(frames)} frames, not {count}"
        )
    return Frames(media_type, syntax, [frames[n - 1] for n in numbers])
