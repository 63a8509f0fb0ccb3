"""The synthetic patient: plausible numbers, and ECG and pleth from the same beats."""

from __future__ import annotations

import numpy as np
import pytest

from devices.simulation.patient import Patient, PatientParameters


def test_ecg_r_peaks_match_the_heart_rate_and_lead_the_pulse() -> None:
    patient = Patient(PatientParameters(heart_rate=75, rsa_bpm=0, seed=3))
    t = np.arange(0, 20, 1 / 500)
    ecg = patient.ecg_at(t)
    pleth = patient.pleth_at(t)
    r_peaks = [
        i
        for i in range(1, len(t) - 1)
        if ecg[i] > 0.8 and ecg[i] >= ecg[i - 1] and ecg[i] > ecg[i + 1]
    ]
    rr = np.diff(t[r_peaks])
    assert 60 / rr.mean() == pytest.approx(75, abs=6)
    # Each pleth upstroke peak follows its R peak by the transit time plus the rise.
    for r in r_peaks[2:-2]:
        window = slice(r, r + 250)
        lag = np.argmax(pleth[window]) / 500
        assert 0.25 < lag < 0.45
    assert 0.5 < ecg.max() < 1.6
    assert pleth.min() >= 0 and pleth.max() <= 1


def test_numerics_drift_but_stay_plausible() -> None:
    patient = Patient(PatientParameters(heart_rate=70, spo2=96))
    rates, sats = [], []
    for second in range(600):
        patient.advance_to(float(second))
        rates.append(patient.heart_rate)
        sats.append(patient.spo2)
    assert np.std(rates) > 0.5  # it varies...
    assert min(rates) > 50 and max(rates) < 90  # ...as a resting patient does
    assert min(sats) > 90 and max(sats) <= 100
    again = Patient(PatientParameters(heart_rate=70, spo2=96))
    again.advance_to(599.0)
    assert again.heart_rate == rates[-1]  # deterministic for a seed


def test_an_empty_window_is_empty() -> None:
    patient = Patient()
    nothing = np.arange(0.0)
    assert len(patient.ecg_at(nothing)) == 0
    assert len(patient.pleth_at(nothing)) == 0


@pytest.mark.parametrize("rate", [45.0, 72.0, 140.0])
def test_dynamical_ecg_beats_at_the_set_rate_within_its_range(rate: float) -> None:
    patient = Patient(PatientParameters(heart_rate=rate, rsa_bpm=0, seed=1))
    t = np.arange(0, 30, 1 / 500)
    ecg = patient.ecg_at(t)
    peaks = np.array([r for r in patient._ecg.r_peaks if 2 < r < 30])
    assert 60 / np.diff(peaks).mean() == pytest.approx(rate, rel=0.08)
    steady = ecg[1000:]
    assert -0.7 < steady.min() < -0.2  # S/Q troughs
    assert 0.9 < steady.max() < 1.5  # R peaks, in millivolts
    # Every detected R peak is a local maximum of the trace.
    for r in peaks:
        i = round(float(r) * 500)
        window = ecg[max(0, i - 15) : i + 15]
        assert ecg[i] >= window.max() - 0.05


def test_the_same_patient_whatever_the_query_pattern() -> None:
    t = np.arange(0, 6, 1 / 500)
    whole = Patient(PatientParameters(seed=5)).ecg_at(t)
    pieces = Patient(PatientParameters(seed=5))
    parts = np.concatenate([pieces.ecg_at(chunk) for chunk in np.array_split(t, 17)])
    assert np.array_equal(whole, parts)
