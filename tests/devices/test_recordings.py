"""WFDB records and annotations from ../shared/ecg-records, and replaying them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from devices.errors import RecordError
from devices.model import WaveformChunk
from devices.protocols.cms50 import Cms50Decoder
from devices.recordings import BEAT_SYMBOLS, read_annotations, read_record
from devices.simulation.pty_link import PtyLink
from devices.simulation.recorded import RecordedPatient
from devices.simulation.simulators import Cms50Simulator
from tests.helpers import SHARED

RECORDS = SHARED / "ecg-records"


@pytest.fixture
def records() -> Path:
    if not RECORDS.is_dir():
        pytest.skip("../shared/ecg-records is not here (only CI and developers have it)")
    return RECORDS


def test_every_record_matches_its_header_checksums(records: Path) -> None:
    headers = sorted(records.glob("*/*.hea"))
    assert len(headers) == 14  # 11 MIT-BIH records from tpcp, 3 from wfdb-python
    for header in headers:
        record = read_record(header.with_suffix(""))  # raises on any checksum mismatch
        assert record.adc.shape[1] == len(record.signals)
        assert record.fs in (250.0, 360.0)


def test_mitdb_100(records: Path) -> None:
    record = read_record(records / "wfdb-python" / "100")
    assert [s.name for s in record.signals] == ["MLII", "V5"]
    assert record.adc.shape == (650000, 2)
    mlii = record.physical(0)
    assert np.nanmin(mlii) > -5 and np.nanmax(mlii) < 5  # millivolts
    samples, symbols = read_annotations(records / "wfdb-python" / "100")
    beats = [s for s in symbols if s in BEAT_SYMBOLS]
    assert len(beats) == 2273
    assert (np.diff(samples) >= 0).all()


def test_a_corrupted_signal_file_is_refused(records: Path, tmp_path: Path) -> None:
    for suffix in (".hea", ".dat"):
        shutil.copy(records / "tpcp-mitdb" / f"102{suffix}", tmp_path / f"102{suffix}")
    data = bytearray((tmp_path / "102.dat").read_bytes())
    data[300_000] ^= 0x40
    (tmp_path / "102.dat").write_bytes(bytes(data))
    with pytest.raises(RecordError, match="checksum"):
        read_record(tmp_path / "102")


def test_replayed_heart_rate_follows_the_annotations(records: Path) -> None:
    patient = RecordedPatient.from_path(records / "wfdb-python" / "100")
    samples, symbols = read_annotations(records / "wfdb-python" / "100")
    beat_s = np.array([s for s, y in zip(samples, symbols, strict=True) if y in BEAT_SYMBOLS]) / 360
    for t in (60.0, 300.0, 900.0):
        patient.advance_to(t)
        near = beat_s[(beat_s > t - 5) & (beat_s < t + 5)]
        assert patient.heart_rate == pytest.approx(60 / np.median(np.diff(near)), rel=0.15)


def test_cms50_simulator_replays_the_recorded_pleth(records: Path) -> None:
    patient = RecordedPatient.from_path(records / "wfdb-python" / "v102s")
    sent = Cms50Simulator(PtyLink(), patient).frames(600)  # 10 s at 60 packets/s
    events = Cms50Decoder("replay").receive_data(sent, 0.0)
    decoded = np.concatenate([e.samples for e in events if isinstance(e, WaveformChunk)])
    expected = RecordedPatient.from_path(records / "wfdb-python" / "v102s").pleth(600, 60.0)
    assert decoded.tolist() == (expected * 120).astype(int).tolist()


def test_annotation_skips_are_signed(records: Path) -> None:
    # tpcp's files begin with a SKIP of -1: beats must still land inside the record.
    samples, symbols = read_annotations(records / "tpcp-mitdb" / "102")
    beats = [s for s, y in zip(samples, symbols, strict=True) if y in BEAT_SYMBOLS]
    assert len(beats) == 2188
    assert min(beats) >= 0
    assert max(beats) < 650000
