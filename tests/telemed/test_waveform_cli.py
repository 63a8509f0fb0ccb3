"""`telemed waveform qrs RECORD`: the streaming detector over a WFDB record."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.qrs_accuracy import match
from devices.recordings import BEAT_SYMBOLS, read_annotations
from tests.helpers import SHARED, run_telemed

RECORD = SHARED / "ecg-records" / "tpcp-mitdb" / "119"


def _telemed(*args: str) -> subprocess.CompletedProcess[str]:
    return run_telemed("waveform", *args)


def test_qrs_prints_r_peak_indices() -> None:
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip("../shared/ecg-records is not here")
    result = _telemed("qrs", str(RECORD), "--chunk-s", "0.1")
    assert result.returncode == 0, result.stderr
    detected = np.array([int(line) for line in result.stdout.split()])
    samples, symbols = read_annotations(RECORD)
    ref = np.array([s for s, y in zip(samples, symbols, strict=True) if y in BEAT_SYMBOLS])
    tp, fn, fp = match(ref[ref > 3600], detected[detected > 3600], 54)
    assert fn <= 2
    assert fp <= 2
    assert tp > 1900


def test_qrs_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    missing = _telemed("qrs", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
