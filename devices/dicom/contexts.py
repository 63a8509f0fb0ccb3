"""What the bedside Storage SCP accepts: storage classes, transfer syntaxes, and the DIMSE
statuses it answers with (PS3.4 Annex B, PS3.7 Annex C).

Every class accepted here is an image storage class whose IOD requires Pixel Data
(7FE0,0010), so the check refuses any instance without it.
"""

from __future__ import annotations

from typing import Final

from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

#: Storage SOP classes (UID -> name). CT, MR, US single and multi-frame, CR, DX, XA, SC
#: (single and multi-frame), VL (endoscopic, microscopic, photographic).
STORAGE_CLASSES: Final[dict[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL Microscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
}

#: Native (uncompressed) transfer syntaxes: Pixel Data's length is checked against the
#: image's geometry.
NATIVE_SYNTAXES: Final[tuple[str, ...]] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

#: Encapsulated syntaxes: RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000.
ENCAPSULATED_SYNTAXES: Final[tuple[str, ...]] = (
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
)

TRANSFER_SYNTAXES: Final[tuple[str, ...]] = (*NATIVE_SYNTAXES, *ENCAPSULATED_SYNTAXES)

#: The statuses answered to a C-STORE (PS3.4 B.2.3, PS3.7 C.4).
SUCCESS: Final = 0x0000
#: Refused: not authorised (PS3.7 C.5.x): a policy refuses it (burned-in annotation
#: without the patient's consent).
NOT_AUTHORISED: Final = 0x0124
#: Refused: out of resources: nowhere to put it now (no active consultation, a full
#: spool, the gateway too busy to answer in time). Sending it again later may succeed.
OUT_OF_RESOURCES: Final = 0xA700
#: Error: data set does not match SOP class (no pixel data, a size that does not match).
DOES_NOT_MATCH: Final = 0xA900
#: Error: cannot understand (pydicom cannot parse it).
CANNOT_UNDERSTAND: Final = 0xC000
