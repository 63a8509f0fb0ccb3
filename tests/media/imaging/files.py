"""Test inputs for the renderer: pydicom's bundled test files (never downloaded), Part-10
files built here from known pixels, and the rendered output decoded back."""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def bundled(name: str) -> bytes:
    """The bytes of a test file shipped in the installed pydicom wheel; skip when absent
    (some of pydicom's test files are only downloaded, and tests use no network)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} does not ship in the installed pydicom wheel")
    with open(str(path), "rb") as f:
        return f.read()


def dataset(source: bytes) -> Dataset:
    return dcmread(io.BytesIO(source))


def to_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def changed(source: bytes, **attributes: Any) -> bytes:
    """`source` written again with some attributes set (None: removed)."""
    ds = dataset(source)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return to_bytes(ds)


def synthetic(pixels: NDArray[Any], photometric: str = "MONOCHROME2", **attributes: Any) -> bytes:
    """A Secondary Capture Part-10 file (explicit VR little endian) holding `pixels`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "OT"
    bits = pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)


def decoded(image: bytes) -> NDArray[np.uint8]:
    """A rendered PNG or JPEG decoded: grey (rows, columns) or RGB (rows, columns, 3)."""
    out = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out is not None, "the renderer's output does not decode"
    pixels = out[..., ::-1] if out.ndim == 3 else out
    return np.asarray(pixels, dtype=np.uint8)


def linear_window(x: NDArray[Any], centre: float, width: float) -> NDArray[np.int64]:
    """PS3.3 C.11.2.1.2.1 to 0..255, computed independently in float64 and rounded."""
    x = x.astype(np.float64)
    y = ((x - (centre - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= centre - 0.5 - (width - 1) / 2, 0, y)
    y = np.where(x > centre - 0.5 + (width - 1) / 2, 255, y)
    return np.floor(y + 0.5).astype(np.int64)
