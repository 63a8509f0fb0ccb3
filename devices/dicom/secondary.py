"""A frozen frame of a live imaging source (a bedside ultrasound's or endoscope's video
output through a USB capture device) as a DICOM Secondary Capture Image. Sans-I/O and pure:
a numpy frame and a few facts in, the Part-10 bytes out.

Which SOP class. Secondary Capture Image Storage (1.2.840.10008.5.1.4.1.1.7), not
Multi-frame True Color SC (…7.4): a kept frame is one still image, and the single-frame SC
IOD takes it in colour (RGB) and in grey (MONOCHROME2) under one class, where the
multi-frame family splits by pixel format (True Color is RGB only; grey would need the
Grayscale Byte class, …7.2) and requires the Multi-frame and Cine machinery (Frame
Increment Pointer, Number of Frames) for a single frame. It is also the class every PACS
and viewer has shown for decades.

Which Conversion Type (0008,0064), PS3.3 C.8.6.1: **DV**, Digitized Video. The pixels are
the modality's video output (its screen as sent down the HDMI/S-Video/composite cable)
digitized by the capture device; WSD (Workstation) is for an image the workstation
rendered itself (a screen grab of the modality's own software), which this is not. The
caller may say otherwise (:class:`ConversionType`).

Burned-in annotation. A captured ultrasound screen carries the patient's name, ID and the
date in its pixels, so Burned In Annotation (0028,0301) is YES unless the caller knows
better; :func:`devices.dicom.deidentify.prepare` then refuses it without the patient's
consent, as it does a modality's instance.

The output is explicit VR little endian, uncompressed (the pixels exactly as captured, BGR
turned into RGB), with a new SOP Instance UID and the file meta PS3.10 asks for; it passes
:func:`devices.dicom.check.check_instance`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: The largest side taken: 8K UHD is 7680 wide; Rows/Columns are US (65535 at most), and
#: 8192 x 8192 x 3 bytes (192 MiB) is as much as one frame should cost the gateway.
MAX_SIDE = 8192
#: Modality (0008,0060) of the series, by the source's label (OT otherwise).
MODALITY_BY_SOURCE = {"ultrasound": "US", "endoscope": "ES", "endoscopy": "ES"}


class ConversionType(enum.StrEnum):
    """PS3.3 C.8.6.1 Conversion Type, the values a frame kept at the bedside can have."""

    #: Digitized Video: a video output digitized by a capture device (the default).
    DV = "DV"
    #: Digital Interface: the frame came from the modality over a digital interface.
    DI = "DI"
    #: Workstation: rendered by the workstation itself (a screen grab of its own software).
    WSD = "WSD"


@dataclass(frozen=True)
class Placement:
    """Where the frame belongs in the consultation's imaging: the study and series it joins
    (generated when None), and the patient's fields when known (empty otherwise: type 2
    attributes, present and empty)."""

    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_id: str = ""
    series_number: int = 1
    instance_number: int = 1


def build_secondary_capture(
    frame: npt.NDArray[np.uint8],
    *,
    source: str,
    device: str,
    at: datetime,
    placement: Placement | None = None,
    conversion: ConversionType = ConversionType.DV,
    burned_in: bool = True,
    bgr: bool = True,
    lossy_method: str | None = None,
) -> bytes:
    """The Part-10 bytes of one Secondary Capture Image of ``frame``.

    ``frame``: uint8, H x W x 3 in BGR order (OpenCV's; ``bgr=False``: already RGB) or
    H x W (or H x W x 1) grey; 1 to :data:`MAX_SIDE` on each side. ``source``: the live
    source's label ("ultrasound"), which also gives the series' Modality; ``device``: the
    capture device's name; ``at``: when it was captured, timezone-aware. ``burned_in``:
    Burned In Annotation YES (the default: a captured screen shows text). A new SOP Instance
    UID each call. ``lossy_method``: the capture device delivered the frame lossy-compressed
    (an MJPEG capture card: ``ISO_10918_1``): Lossy Image Compression 01 with that method,
    so no reader takes it for the modality's own pixels. Raises ValueError, saying what is
    wrong, on any other input."""
    pixels, photometric = _pixels(frame, bgr)
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError("capture time must be a timezone-aware datetime")
    if not source.strip():
        raise ValueError("source label is empty")
    conversion = ConversionType(conversion)  # a plain "DV" is taken; anything else raises
    place = placement or Placement()
    rows, columns = pixels.shape[:2]
    samples = 1 if pixels.ndim == 2 else 3

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # device names in Japanese or Korean
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = generate_uid()
    date, time_ = at.strftime("%Y%m%d"), at.strftime("%H%M%S.%f")
    ds.StudyDate = ds.ContentDate = ds.InstanceCreationDate = ds.DateOfSecondaryCapture = date
    ds.StudyTime = ds.ContentTime = ds.InstanceCreationTime = ds.TimeOfSecondaryCapture = time_
    ds.TimezoneOffsetFromUTC = _offset(at)
    # Patient and General Study: type 2 (present, empty when unknown).
    ds.PatientName = place.patient_name
    ds.PatientID = place.patient_id
    ds.PatientBirthDate = place.patient_birth_date
    ds.PatientSex = place.patient_sex
    ds.StudyInstanceUID = place.study_instance_uid or generate_uid()
    ds.StudyID = place.study_id
    ds.AccessionNumber = place.accession_number
    ds.ReferringPhysicianName = ""
    # General Series.
    ds.Modality = MODALITY_BY_SOURCE.get(source.strip().lower(), "OT")
    ds.SeriesInstanceUID = place.series_instance_uid or generate_uid()
    ds.SeriesNumber = place.series_number
    ds.SeriesDescription = f"Kept frames: {source}"[:64]
    # General and SC Equipment.
    ds.ConversionType = conversion.value
    ds.SecondaryCaptureDeviceManufacturerModelName = device[:64]
    ds.SecondaryCaptureDeviceSoftwareVersions = "telemed"
    ds.Manufacturer = ""
    ds.StationName = device[:16]
    # General Image and SC Image.
    ds.InstanceNumber = place.instance_number
    ds.PatientOrientation = ""
    ds.ImageComments = f"Frame kept from {source} ({device})"[:10240]
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    if lossy_method is None:
        ds.LossyImageCompression = "00"  # as the capture device delivered it, not re-encoded
    else:
        if not lossy_method.strip() or len(lossy_method) > 16:
            raise ValueError(f"lossy compression method {lossy_method!r}: a DICOM CS term")
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = lossy_method
    # Image Pixel.
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0  # R G B R G B ..., as the array is laid out
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    data = pixels.tobytes()
    ds.PixelData = data + b"\x00" * (len(data) % 2)  # values are of even length (PS3.5 7.1)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = bytes(128)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _pixels(frame: object, bgr: bool) -> tuple[npt.NDArray[np.uint8], str]:
    """The frame's pixels, C-contiguous, in RGB or grey, and their photometric
    interpretation; ValueError on anything else."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, not {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 (8 bits per sample), not {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] != 3:
        raise ValueError(f"frame has {frame.shape[2]} channels: 3 (BGR) or 1 (grey) are taken")
    if frame.ndim not in (2, 3):
        raise ValueError(f"frame must be H x W or H x W x 3, not shape {frame.shape}")
    rows, columns = frame.shape[:2]
    if not (1 <= rows <= MAX_SIDE and 1 <= columns <= MAX_SIDE):
        raise ValueError(f"frame is {columns}x{rows}: each side must be 1 to {MAX_SIDE}")
    if frame.ndim == 2:
        return np.ascontiguousarray(frame), "MONOCHROME2"
    rgb = frame[:, :, ::-1] if bgr else frame
    return np.ascontiguousarray(rgb), "RGB"


def _offset(at: datetime) -> str:
    """Timezone Offset From UTC (0008,0201): ``+HHMM``/``-HHMM``."""
    offset = at.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
