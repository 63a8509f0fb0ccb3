"""DICOM files for the imaging tests: pydicom's own test files (read from the installed
package, never downloaded) and instances built here (a multi-frame ultrasound, names in
Japanese and Korean character sets)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

_DATA = Path(pydicom.data.__file__).parent
US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")


def pydicom_file(name: str) -> bytes:
    """One of pydicom's test files (``test_files`` or ``charset_files``), as bytes."""
    for folder in ("test_files", "charset_files"):
        path = _DATA / folder / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


def encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def renamed(data: bytes, *, deidentified: bool | None = True, fresh_uids: bool = True) -> bytes:
    """``data`` with new UIDs (a new instance of a new series and study) and Patient
    Identity Removed set to YES (``deidentified``), absent (None) or NO."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if fresh_uids:
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if deidentified is None:
        if "PatientIdentityRemoved" in ds:
            del ds.PatientIdentityRemoved
    else:
        ds.PatientIdentityRemoved = "YES" if deidentified else "NO"
    return encode(ds)


def ct(*, deidentified: bool | None = True) -> bytes:
    """pydicom's 128x128 CT slice as a new instance."""
    return renamed(pydicom_file("CT_small.dcm"), deidentified=deidentified)


def ultrasound(
    frames: int = 4,
    rows: int = 24,
    columns: int = 32,
    *,
    study: str | None = None,
    series: str | None = None,
    name: str = "",
    charset: str | None = None,
    deidentified: bool = True,
    seed: int = 0,
) -> bytes:
    """A multi-frame ultrasound (8-bit MONOCHROME2, native), its pixels random."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = "" if deidentified else "P-123"
    ds.PatientIdentityRemoved = "YES" if deidentified else "NO"
    ds.Modality = "US"
    ds.StudyDate = "20261201"
    ds.StudyTime = "093000"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 256, frames * rows * columns, dtype=np.uint8).tobytes()
    return encode(ds)


def pixel_data(data: bytes) -> bytes:
    return bytes(pydicom.dcmread(io.BytesIO(data)).PixelData)


def uids(data: bytes) -> tuple[str, str, str]:
    """(study, series, sop) of a file."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
