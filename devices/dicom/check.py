"""The checks an instance passes before anything is forwarded. Sans-I/O and pure: the bytes
of a Part-10 file in, a verdict out; nothing raises.

An instance is refused (:class:`Refused`, with the DIMSE status to answer and the reason to
log) when pydicom cannot parse it, when its transfer syntax or storage class is not one the
SCP accepts (or not the one its presentation context and command named), when it lacks the
identifiers the consultation indexes it by, or when its Pixel Data is missing or does not
fit: every accepted class requires Pixel Data; native syntaxes must carry exactly rows x
columns x samples x frames x bits allocated of it (one pad byte allowed), encapsulated ones
an encapsulated element with at least one fragment per frame.

An accepted instance (:class:`Accepted`) carries the SHA-256 of the Part-10 file as it will
be stored (file meta included), so the server can check it again when it lands.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID
from pydicom.valuerep import VR

from devices.dicom.contexts import (
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH,
    ENCAPSULATED_SYNTAXES,
    NATIVE_SYNTAXES,
    STORAGE_CLASSES,
)

#: A DIMSE Error Comment (0000,0902) is an LO: 64 characters at most.
COMMENT_MAX = 64


@dataclass(frozen=True)
class Accepted:
    """An instance that may be forwarded."""

    sha256: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str
    frames: int
    #: Burned In Annotation (0028,0301) is YES: identifying text may be in the pixels.
    burned_in_annotation: bool


@dataclass(frozen=True)
class Refused:
    """An instance that is not forwarded: ``status`` answers the C-STORE, ``reason`` is
    logged in full and, cut to 64 characters, is the Error Comment."""

    status: int
    reason: str
    #: The Error Comment when the reason's first 64 characters would not say it.
    summary: str | None = None

    @property
    def comment(self) -> str:
        text = (self.summary or self.reason).encode("ascii", "replace").decode()
        return text if len(text) <= COMMENT_MAX else text[: COMMENT_MAX - 3] + "..."


Verdict = Accepted | Refused

_VRS = frozenset(v.value for v in VR)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_instance(
    part10: bytes, *, sop_class_uid: str | None = None, sop_instance_uid: str | None = None
) -> Verdict:
    """The verdict on one Part-10 file. ``sop_class_uid``/``sop_instance_uid``: what the
    C-STORE command announced (the dataset must say the same). Never raises."""
    try:
        return _check(part10, sop_class_uid, sop_instance_uid)
    except Exception as exc:  # hostile input: whatever pydicom trips on is a refusal
        return Refused(CANNOT_UNDERSTAND, f"cannot parse: {type(exc).__name__}: {exc}")


def _check(part10: bytes, sop_class: str | None, sop_instance: str | None) -> Verdict:
    try:
        syntax, explicit = _meta(part10)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        return Refused(CANNOT_UNDERSTAND, f"cannot parse the file meta: {exc}")
    if syntax not in NATIVE_SYNTAXES and syntax not in ENCAPSULATED_SYNTAXES:
        return Refused(CANNOT_UNDERSTAND, f"transfer syntax {syntax or 'missing'} not accepted")
    # pydicom reads on when a data set's VR encoding is not its syntax's (a guess, with a
    # warning): the file would say one thing and hold another. Checked before it reads.
    declared = UID(syntax)
    if explicit is declared.is_implicit_VR:
        return Refused(CANNOT_UNDERSTAND, f"data set not encoded as {declared.name}")
    try:
        ds = dcmread(BytesIO(part10))
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        return Refused(CANNOT_UNDERSTAND, f"cannot parse: {exc}")
    # dcmread has walked the whole structure (every tag and length, sequences included);
    # values are converted when read, and only the ones used here are read: converting
    # all of them cost five times the parse (CT_small: 265 elements).
    found_class = str(ds.get("SOPClassUID", ""))
    if found_class not in STORAGE_CLASSES:
        return Refused(DOES_NOT_MATCH, f"SOP class {found_class or 'missing'} not accepted")
    if sop_class is not None and found_class != sop_class:
        return Refused(DOES_NOT_MATCH, f"SOP class {found_class} is not the announced one")
    found_instance = str(ds.get("SOPInstanceUID", ""))
    if not found_instance:
        return Refused(DOES_NOT_MATCH, "no SOP Instance UID")
    if sop_instance is not None and found_instance != sop_instance:
        return Refused(DOES_NOT_MATCH, "SOP Instance UID is not the announced one")
    study = str(ds.get("StudyInstanceUID", ""))
    series = str(ds.get("SeriesInstanceUID", ""))
    if not study or not series:
        return Refused(DOES_NOT_MATCH, "no Study or Series Instance UID")
    pixels = _check_pixels(ds, syntax, STORAGE_CLASSES[found_class])
    if isinstance(pixels, Refused):
        return pixels
    return Accepted(
        sha256=sha256_hex(part10),
        sop_class_uid=found_class,
        sop_instance_uid=found_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        transfer_syntax_uid=syntax,
        modality=str(ds.get("Modality", "")),
        frames=pixels,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES",
    )


def _meta(part10: bytes) -> tuple[str, bool | None]:
    """The file meta's transfer syntax, and whether the data set after it starts with an
    explicit VR (None: an empty data set)."""
    if part10[128:132] != b"DICM":
        raise InvalidDicomError("no DICM prefix: not a Part-10 file")
    stream = BytesIO(part10)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    head = stream.read(6)
    explicit = None if len(head) < 6 else head[4:6].decode("latin-1") in _VRS
    return str(meta.get("TransferSyntaxUID", "")), explicit


def _positive(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        number = int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and number > 0 else None


def _check_pixels(ds: Dataset, syntax: str, class_name: str) -> int | Refused:
    """The number of frames, or why the pixel data does not fit."""
    if "PixelData" not in ds:
        return Refused(DOES_NOT_MATCH, f"no Pixel Data: {class_name} requires it")
    geometry = {k: _positive(ds, k) for k in ("Rows", "Columns", "BitsAllocated")}
    geometry["SamplesPerPixel"] = _positive(ds, "SamplesPerPixel") or 1
    missing = [k for k, v in geometry.items() if v is None]
    if missing:
        return Refused(DOES_NOT_MATCH, f"no valid {', '.join(missing)} for Pixel Data")
    raw_frames = ds.get("NumberOfFrames")
    frames = 1 if raw_frames in (None, "") else _positive(ds, "NumberOfFrames")
    if frames is None:
        return Refused(DOES_NOT_MATCH, f"Number of Frames {raw_frames!r} is not valid")
    element = ds["PixelData"]
    data = element.value
    if not isinstance(data, bytes) or not data:
        return Refused(DOES_NOT_MATCH, "Pixel Data is empty")
    rows, cols = geometry["Rows"], geometry["Columns"]
    bits, samples = geometry["BitsAllocated"], geometry["SamplesPerPixel"]
    if not (rows and cols and bits and samples):  # checked above; narrows the types
        return Refused(DOES_NOT_MATCH, "no image geometry")
    if syntax in NATIVE_SYNTAXES:
        if element.is_undefined_length:
            return Refused(DOES_NOT_MATCH, "encapsulated Pixel Data in a native syntax")
        pixel_count = rows * cols * samples * frames
        if samples == 3 and str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            pixel_count = rows * cols * 2 * frames  # two chroma samples per pixel pair
        expected = (pixel_count * bits + 7) // 8
        if len(data) not in (expected, expected + (expected % 2)):
            return Refused(
                DOES_NOT_MATCH,
                f"Pixel Data is {len(data)} bytes, {rows}x{cols}x{samples}x{frames} "
                f"at {bits} bits needs {expected}",
            )
        return frames
    if not element.is_undefined_length:
        return Refused(DOES_NOT_MATCH, "native Pixel Data in an encapsulated syntax")
    # The first item is the basic offset table; each frame has at least one fragment.
    fragments = sum(1 for _ in generate_fragments(data)) - 1
    if fragments < frames:
        return Refused(
            DOES_NOT_MATCH, f"encapsulated Pixel Data has {fragments} fragments for {frames} frames"
        )
    return frames
