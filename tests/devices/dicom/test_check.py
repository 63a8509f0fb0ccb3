"""The instance check: verdicts on real files, broken ones, and mutated ones (fuzz)."""

from __future__ import annotations

import hashlib
from io import BytesIO

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.dicom.check import Accepted, Refused, check_instance
from devices.dicom.contexts import CANNOT_UNDERSTAND, DOES_NOT_MATCH
from devices.dicom.deidentify import Prepared, prepare
from tests.devices.dicom.dicom_helpers import SAMPLES, sample_bytes
from tests.fuzzing import budget


def test_every_sample_is_accepted_and_hashed() -> None:
    for name in SAMPLES:
        data = sample_bytes(name)
        verdict = check_instance(data)
        assert isinstance(verdict, Accepted), (name, verdict)
        assert verdict.sha256 == hashlib.sha256(data).hexdigest()


def test_refusals() -> None:
    assert check_instance(b"") == Refused(
        CANNOT_UNDERSTAND, "cannot parse the file meta: no DICM prefix: not a Part-10 file"
    )
    truncated = check_instance(sample_bytes("MR_truncated.dcm"))
    assert isinstance(truncated, Refused)
    assert truncated.status == DOES_NOT_MATCH
    ct = sample_bytes("ct")
    cut = check_instance(ct[: len(ct) // 2])
    assert isinstance(cut, Refused)
    assert cut.status in (CANNOT_UNDERSTAND, DOES_NOT_MATCH)
    rtplan = check_instance(sample_bytes("rtplan.dcm"))
    assert rtplan == Refused(DOES_NOT_MATCH, "SOP class 1.2.840.10008.5.1.4.1.1.481.5 not accepted")
    big_endian = check_instance(sample_bytes("MR_small_bigendian.dcm"))
    assert big_endian == Refused(
        CANNOT_UNDERSTAND, "transfer syntax 1.2.840.10008.1.2.2 not accepted"
    )
    assert check_instance(sample_bytes("mr"), sop_class_uid="1.2.840.10008.5.1.4.1.1.2") == Refused(
        DOES_NOT_MATCH, "SOP class 1.2.840.10008.5.1.4.1.1.4 is not the announced one"
    )


def test_encapsulated_pixel_data_needs_a_fragment_per_frame() -> None:
    ds = pydicom.dcmread(BytesIO(sample_bytes("us-multiframe-jpeg")))
    ds.NumberOfFrames = 31
    out = BytesIO()
    ds.save_as(out)
    assert check_instance(out.getvalue()) == Refused(
        DOES_NOT_MATCH, "encapsulated Pixel Data has 30 fragments for 31 frames"
    )


def test_a_refusals_comment_fits_an_error_comment() -> None:
    refused = Refused(DOES_NOT_MATCH, "x" * 200 + "\u00e9")
    assert len(refused.comment) == 64


_SEEDS = [sample_bytes(n) for n in ("ct", "mr-implicit", "rle", "us-multiframe-jpeg")]


@settings(max_examples=budget(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=8), st.integers(0, 8)),
        min_size=1,
        max_size=6,
    ),
    cut=st.none() | st.floats(0, 1),
)
def test_fuzz_mutated_files_get_a_verdict_never_an_exception(
    seed: bytes, edits: list[tuple[float, bytes, int]], cut: float | None
) -> None:
    data = bytearray(seed)
    for where, insert, remove in edits:
        at = int(where * len(data))
        data[at : at + remove] = insert
    if cut is not None:
        data = data[: int(cut * len(data))]
    verdict = check_instance(bytes(data))
    assert isinstance(verdict, Accepted | Refused)
    if isinstance(verdict, Refused):
        assert verdict.reason
        assert len(verdict.comment) <= 64


@settings(max_examples=budget(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=4)), min_size=1, max_size=4
    ),
)
def test_fuzz_what_the_check_accepts_is_deidentified_or_refused(
    seed: bytes, edits: list[tuple[float, bytes]]
) -> None:
    """Mutations the check lets through (values, not framing) reach de-identification:
    it answers a verdict too, never an exception."""
    data = bytearray(seed)
    for where, replacement in edits:
        at = int(where * len(data))
        data[at : at + len(replacement)] = replacement
    if not isinstance(check_instance(bytes(data)), Accepted):
        return
    result = prepare(bytes(data), consent=False, key=b"k")
    assert isinstance(result, Prepared | Refused)
    if isinstance(result, Prepared):
        assert pydicom.dcmread(BytesIO(result.part10)).PatientIdentityRemoved == "YES"
