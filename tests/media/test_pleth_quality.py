"""The pleth pulse detector and the signal-quality index."""

from __future__ import annotations

import numpy as np
import pytest

from devices.simulation.patient import Patient, PatientParameters
from media.waveform.pleth import PulseDetector
from media.waveform.qrs import QrsDetector
from media.waveform.quality import Kind, SignalQuality, score_window
from tests.helpers import SHARED

V102S = SHARED / "ecg-records" / "wfdb-python" / "v102s"


@pytest.mark.parametrize("rate", [50.0, 75.0, 120.0])
def test_pulse_rate_follows_the_patient(rate: float) -> None:
    patient = Patient(PatientParameters(heart_rate=rate, rsa_bpm=0, seed=3))
    pleth = patient.pleth_at(np.arange(0, 40, 1 / 125))
    detector = PulseDetector(125.0)
    detector.process(pleth)
    assert detector.pulse_rate() == pytest.approx(rate, rel=0.05)
    expected = rate / 60 * 40  # the early pulses are judged once the levels are learnt
    assert len(detector.pulses) == pytest.approx(expected, rel=0.06)


def test_pulses_do_not_depend_on_chunking() -> None:
    pleth = Patient(PatientParameters(seed=9)).pleth_at(np.arange(0, 20, 1 / 125))
    whole = PulseDetector(125.0)
    whole.process(pleth)
    pieces = PulseDetector(125.0)
    for k in range(0, len(pleth), 7):
        pieces.process(pleth[k : k + 7])
    single = PulseDetector(125.0)
    for sample in pleth:
        single.process(np.array([sample]))
    assert pieces.pulses == whole.pulses == single.pulses


def test_one_pulse_per_heartbeat_on_a_real_record() -> None:
    from devices.recordings import read_record

    if not V102S.with_suffix(".hea").exists():
        pytest.skip("../shared/ecg-records is not here")
    record = read_record(V102S)
    ecg, pleth = (
        record.physical(record.index("II") or 0),
        record.physical(record.index("PLETH") or 2),
    )
    beats = QrsDetector(record.fs)
    beats.process(ecg)
    pulses = PulseDetector(record.fs)
    pulses.process(pleth)
    assert len(pulses.pulses) == pytest.approx(len(beats.beats), rel=0.05)


def test_quality_scores() -> None:
    patient = Patient(PatientParameters(seed=4))
    ecg = patient.ecg_at(np.arange(0, 5, 1 / 500))
    pleth = patient.pleth_at(np.arange(0, 5, 1 / 125))
    noise = np.random.default_rng(0).normal(size=2500)
    assert score_window(ecg, Kind.ECG) > 0.7
    assert score_window(pleth, Kind.PLETH) > 0.7
    assert score_window(noise, Kind.ECG) < 0.2
    assert score_window(np.zeros(2500), Kind.ECG) == 0.0
    clipped = np.clip(ecg * 5, -0.5, 0.5)  # saturated amplifier
    assert score_window(clipped, Kind.ECG) < 0.5 * score_window(ecg, Kind.ECG)
    with_gaps = ecg.copy()
    with_gaps[100:400] = np.nan
    assert score_window(with_gaps, Kind.ECG) > 0.7  # gaps are not noise


def test_quality_windows_are_fixed_on_the_stream() -> None:
    x = Patient(PatientParameters(seed=5)).ecg_at(np.arange(0, 12, 1 / 250))
    whole = SignalQuality(250.0, Kind.ECG).process(x)
    chunked = SignalQuality(250.0, Kind.ECG)
    pieces = [s for k in range(0, len(x), 33) for s in chunked.process(x[k : k + 33])]
    assert [s.end for s in whole] == [1250 + 250 * k for k in range(8)]
    assert pieces == whole
