"""The Datex ECG wave scale (issue 11): 0.001 mV a unit (the samples are microvolts), not
the 0.01 of the program that wrote the shared B650 captures. Settled on the captures' own
amplitudes: decoded at 0.001 they are an ECG's; at 0.01 they are ten times any."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from devices.model import WaveformChunk
from devices.protocols import datex

#: The scale the program that wrote the CSVs applied to the monitor's raw samples.
CSV_SCALE = 0.01


def _raw_samples(path: Path) -> list[int]:
    with path.open(newline="") as f:
        return [round(float(row[1]) / CSV_SCALE) for row in csv.reader(f) if len(row) > 1]


def _span_mv(values: np.ndarray) -> float:
    """The 1st-99th percentile span: the QRS amplitude, robust to a stray sample."""
    low, high = np.percentile(values, [1, 99])
    return float(high - low)


@pytest.mark.parametrize(
    "name", ["b650_2021-07-14_DRI_WF_ECG1.csv", "b650_2021-07-19_DRI_WF_ECG1.csv"]
)
def test_the_b650_ecg_decodes_to_an_ecg_amplitude(captures: Path, name: str) -> None:
    raw = _raw_samples(captures / "ge-datex-s5-dri" / name)
    assert len(raw) >= 3000
    decoder = datex.DatexDecoder("s5")
    waves = []
    for start in range(0, len(raw), 300):  # records of one second, as the monitor sends
        record = datex.encode_waves(start, {datex.WaveType.ECG1: raw[start : start + 300]})
        waves += [
            e
            for e in decoder.receive_data(datex.frame(record), float(start))
            if isinstance(e, WaveformChunk)
        ]
    assert decoder.stats.error_count == 0
    decoded = np.concatenate([w.samples for w in waves])
    assert waves[0].code.ucum == "mV" and waves[0].sample_rate == 300.0
    assert len(decoded) == len(raw)
    # A surface ECG spans 0.5-5 mV (the monitor's input range is +-5 mV): the decoded one
    # does, the captures as written (0.01 a unit) are ten times that.
    assert 0.5 <= _span_mv(decoded) <= 5.0
    assert _span_mv(np.asarray(raw) * CSV_SCALE) > 10.0
