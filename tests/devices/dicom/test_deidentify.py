"""De-identification: the profile's attributes gone, UIDs remapped per consultation, pixels
untouched and still decoding, burned-in annotation refused without consent."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from devices.dicom.check import Accepted, Refused, check_instance
from devices.dicom.contexts import NOT_AUTHORISED
from devices.dicom.deidentify import (
    BURNED_IN_COMMENT,
    BURNED_IN_REASON,
    METHOD,
    Prepared,
    consultation_key,
    prepare,
)
from tests.devices.dicom.dicom_helpers import sample_bytes

SECRET = b"gateway-secret"


def _identified(name: str, sop_instance: str | None = None) -> bytes:
    ds = pydicom.dcmread(BytesIO(sample_bytes(name)))
    ds.PatientName = "Yamada^Taro"
    ds.PatientID = "JP-0012345"
    ds.PatientBirthDate = "19500101"
    ds.InstitutionName = "Wonju Hospital"
    ds.ReferringPhysicianName = "Kim^Minsoo"
    ds.AccessionNumber = "ACC42"
    ds.StudyDate = "20261202"
    if sop_instance is not None:
        ds.SOPInstanceUID = pydicom.uid.UID(sop_instance)
        ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(sop_instance)
    reference = Dataset()
    reference.ReferencedSOPClassUID = ds.SOPClassUID
    reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.ReferencedImageSequence = [reference]
    ds.add_new(0x00091010, "LO", "private: the patient's phone number")
    block = ds.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "LO", "secret")
    icon = Dataset()
    icon.Rows = 1
    ds.IconImageSequence = [icon]
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60003000, "OW", b"\0" * 8)
    ds.add_new(0x50000005, "US", 1)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _deidentified(part10: bytes, consultation: str) -> Dataset:
    result = prepare(part10, consent=False, key=consultation_key(SECRET, consultation))
    assert isinstance(result, Prepared)
    assert result.deidentified
    return pydicom.dcmread(BytesIO(result.part10))


def test_identities_removed_and_markers_set() -> None:
    source = pydicom.dcmread(BytesIO(_identified("ct")))
    ds = _deidentified(_identified("ct"), "c-1")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == METHOD
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "ReferringPhysicianName"):
        assert str(ds.get(keyword, "")) in ("", "ANONYMIZED", "00010101"), keyword
    assert "Yamada" not in str(ds)
    assert "Wonju" not in str(ds)
    assert "ACC42" not in str(ds)
    assert not [e for e in ds if e.tag.is_private]
    assert not [e for e in ds if e.tag.group & 0xFF00 in (0x6000, 0x5000)]
    assert "IconImageSequence" not in ds
    # Identity removed, image kept: the same pixels, still decoding.
    assert ds.PixelData == source.PixelData
    assert np.array_equal(ds.pixel_array, source.pixel_array)
    assert isinstance(check_instance(_reencoded(ds)), Accepted)


def _reencoded(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_uids_consistent_within_a_consultation_and_not_across() -> None:
    first = _identified("ct", "1.2.826.0.1.3680043.8.498.101")
    second = _identified("ct", "1.2.826.0.1.3680043.8.498.102")
    a, b = _deidentified(first, "c-1"), _deidentified(second, "c-1")
    original = pydicom.dcmread(BytesIO(first))
    assert a.StudyInstanceUID == b.StudyInstanceUID != original.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID != original.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == original.SOPClassUID  # classes are not identities
    reference = a.ReferencedImageSequence[0]
    assert reference.ReferencedSOPClassUID == original.SOPClassUID
    assert reference.ReferencedSOPInstanceUID.startswith("2.25.")
    assert (
        reference.ReferencedSOPInstanceUID == b.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    )
    # Again, the same bytes: a resend is the same instance to the server.
    assert _reencoded(_deidentified(first, "c-1")) == _reencoded(a)
    other = _deidentified(first, "c-2")
    assert other.StudyInstanceUID != a.StudyInstanceUID
    assert other.SOPInstanceUID != a.SOPInstanceUID


def test_compressed_and_multiframe_still_decode() -> None:
    for name in ("us-multiframe-jpeg", "rle", "jpeg-ls", "jpeg2000-lossless"):
        source = pydicom.dcmread(BytesIO(sample_bytes(name)))
        ds = _deidentified(sample_bytes(name), "c-1")
        assert ds.PixelData == source.PixelData, name
        assert ds.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
        assert ds.pixel_array.shape == source.pixel_array.shape


def test_consent_sends_the_bytes_as_received() -> None:
    data = _identified("mr")
    assert prepare(data, consent=True, key=b"k") == Prepared(data, deidentified=False)


def test_burned_in_annotation_is_refused_without_consent_only() -> None:
    ds = pydicom.dcmread(BytesIO(sample_bytes("us-rgb")))
    ds.BurnedInAnnotation = "YES"
    data = _reencoded(ds)
    refused = prepare(data, consent=False, key=b"k")
    assert refused == Refused(NOT_AUTHORISED, BURNED_IN_REASON, BURNED_IN_COMMENT)
    assert isinstance(refused, Refused)
    assert "consent" in refused.comment
    assert prepare(data, consent=True, key=b"k") == Prepared(data, deidentified=False)


def test_none_of_the_tables_attributes_is_left() -> None:
    """Every attribute of Table E.1-1 with a text, date or UID value, filled with something
    recognisable: none of it is found in the output's bytes."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
    from pydicom.datadict import dictionary_VR

    from devices.dicom.deidentify import TABLE_EDITION

    table = dicom_anonymization_database_selector(TABLE_EDITION)
    ds = pydicom.dcmread(BytesIO(sample_bytes("ct")))
    filled = 0
    # Values a remapped 2.25 UID (digits) is unlikely to hold by chance; the remapping is
    # deterministic, so a pass is not luck that changes between runs.
    values = {"DA": "18881231", "TM": "234517", "DT": "18881231234517", "AS": "087Y"}
    for category in ("D_TAGS", "Z_TAGS", "X_TAGS", "U_TAGS", "Z_D_TAGS", "X_Z_TAGS"):
        for tag in table[category]:
            if len(tag) != 2 or tag[0] in (0x0000, 0x0002):  # command and file meta groups
                continue
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
            if vr in ("LO", "SH", "PN", "LT", "ST", "UT", "UC", "AE"):
                ds.add_new(tag, vr, "SECRET")
            elif vr in values:
                ds.add_new(tag, vr, values[vr])
            elif vr == "UI":
                ds.add_new(tag, vr, f"1.999.424242.{filled}")
            else:
                continue
            filled += 1
    assert filled > 200
    # The instance's own UIDs are in the table too: keep the meta consistent with them.
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    result = prepare(_reencoded(ds), consent=False, key=consultation_key(SECRET, "c-1"))
    assert isinstance(result, Prepared)
    for needle in (b"SECRET", b"18881231", b"234517", b"087Y", b"1.999.424242"):
        assert needle not in result.part10, needle
    assert pydicom.dcmread(BytesIO(result.part10)).PatientIdentityRemoved == "YES"
    assert sample_bytes("ct")[:4] == b"II*\x00"  # CT_small's preamble is a TIFF header
    assert result.part10[:128] == bytes(128)
