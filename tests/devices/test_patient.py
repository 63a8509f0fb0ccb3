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
