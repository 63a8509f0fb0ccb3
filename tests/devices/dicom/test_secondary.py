"""A frozen video frame as a Secondary Capture: pixels back byte for byte, the checks the
SCP applies pass, bad input refused with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
import pytest

from devices.dicom.check import Accepted, check_instance
from devices.dicom.secondary import (
    MAX_SIDE,
    SECONDARY_CAPTURE,
    ConversionType,
    Placement,
    build_secondary_capture,
)

SEOUL = timezone(timedelta(hours=9))
AT = datetime(2026, 12, 2, 10, 15, 30, 250000, tzinfo=SEOUL)


def _frame(shape: tuple[int, ...], seed: int = 7) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _build(frame: Any, **kwargs: Any) -> bytes:
    options: dict[str, Any] = {"source": "ultrasound", "device": "USB3 HDMI capture", "at": AT}
    return build_secondary_capture(frame, **(options | kwargs))


def test_a_bgr_frame_comes_back_as_rgb_pixels_byte_identical() -> None:
    bgr = _frame((48, 65, 3))  # an odd width: no row is a multiple of 4 bytes
    data = _build(bgr)
    ds = pydicom.dcmread(BytesIO(data))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == SECONDARY_CAPTURE
    assert (ds.PhotometricInterpretation, ds.PlanarConfiguration) == ("RGB", 0)
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (48, 65, 3)
    assert ds.PixelData == rgb.tobytes()
    assert ds.pixel_array.tobytes() == rgb.tobytes()
    assert ds.pixel_array[0, 0, 0] == bgr[0, 0, 2]  # red first
    assert (ds.ConversionType, ds.BurnedInAnnotation, ds.Modality) == ("DV", "YES", "US")
    assert (ds.ContentDate, ds.ContentTime, ds.TimezoneOffsetFromUTC) == (
        "20261202",
        "101530.250000",
        "+0900",
    )
    assert ds.SecondaryCaptureDeviceManufacturerModelName == "USB3 HDMI capture"


def test_a_frame_the_device_delivered_lossy_says_so() -> None:
    frame = _frame((24, 32, 3))
    as_captured = pydicom.dcmread(BytesIO(_build(frame)))
    assert as_captured.LossyImageCompression == "00"
    assert "LossyImageCompressionMethod" not in as_captured
    mjpeg = pydicom.dcmread(BytesIO(_build(frame, lossy_method="ISO_10918_1")))
    assert (mjpeg.LossyImageCompression, mjpeg.LossyImageCompressionMethod) == (
        "01",
        "ISO_10918_1",
    )
    assert isinstance(check_instance(_build(frame, lossy_method="ISO_10918_1")), Accepted)
    with pytest.raises(ValueError, match="CS term"):
        _build(frame, lossy_method="x" * 17)


def test_a_grey_frame_with_an_odd_size_is_monochrome2_and_padded() -> None:
    grey = _frame((5, 7))
    ds = pydicom.dcmread(BytesIO(_build(grey, source="endoscope", burned_in=False)))
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
    assert "PlanarConfiguration" not in ds
    assert ds.PixelData == grey.tobytes() + b"\x00"
    assert ds.pixel_array.tobytes() == grey.tobytes()
    assert (ds.Modality, ds.BurnedInAnnotation) == ("ES", "NO")
    single = pydicom.dcmread(BytesIO(_build(grey[:, :, np.newaxis])))
    assert single.pixel_array.tobytes() == grey.tobytes()


def test_the_check_the_scp_applies_accepts_it() -> None:
    placement = Placement(study_instance_uid="1.2.3.4", series_instance_uid="1.2.3.4.5")
    data = _build(_frame((480, 640, 3)), placement=placement, conversion=ConversionType.WSD)
    verdict = check_instance(data)
    assert isinstance(verdict, Accepted), verdict
    assert (verdict.study_instance_uid, verdict.series_instance_uid) == ("1.2.3.4", "1.2.3.4.5")
    assert verdict.burned_in_annotation is True
    assert pydicom.dcmread(BytesIO(data)).ConversionType == "WSD"
    grey = check_instance(_build(_frame((3, 3)), at=AT.astimezone(UTC)))
    assert isinstance(grey, Accepted), grey


def test_each_frame_gets_its_own_instance_uid_and_a_study_when_none_is_given() -> None:
    first, second = (pydicom.dcmread(BytesIO(_build(_frame((4, 4, 3))))) for _ in range(2))
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.StudyInstanceUID and first.SeriesInstanceUID


@pytest.mark.parametrize(
    ("frame", "kwargs", "reason"),
    [
        ([[1, 2], [3, 4]], {}, "must be a numpy array, not list"),
        (np.zeros((4, 4, 3), np.uint16), {}, "must be uint8"),
        (np.zeros((4, 4, 3), np.float32), {}, "must be uint8"),
        (np.zeros((4, 4, 4), np.uint8), {}, "has 4 channels"),
        (np.zeros((2, 4, 4, 3), np.uint8), {}, "not shape (2, 4, 4, 3)"),
        (np.zeros((16,), np.uint8), {}, "not shape (16,)"),
        (np.zeros((0, 4, 3), np.uint8), {}, "each side must be 1 to"),
        (np.zeros((MAX_SIDE + 1, 2), np.uint8), {}, "each side must be 1 to"),
        (np.zeros((4, 4, 3), np.uint8), {"at": datetime(2026, 12, 2)}, "timezone-aware"),
        (np.zeros((4, 4, 3), np.uint8), {"source": " "}, "source label is empty"),
        (np.zeros((4, 4, 3), np.uint8), {"conversion": "XX"}, "is not a valid"),
    ],
)
def test_bad_input_is_refused_with_its_reason(frame: Any, kwargs: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        _build(frame, **kwargs)
