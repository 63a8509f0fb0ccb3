"""`telemed devices ...` as a technician runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devices.protocols.cms50 import LiveSample, encode_live
from tests.helpers import SHARED, run_telemed

CAPTURES = SHARED / "device-captures"


def _telemed(*args: str) -> subprocess.CompletedProcess[str]:
    return run_telemed("devices", *args, timeout=60)


def test_decode_real_capture_to_json_lines() -> None:
    capture = CAPTURES / "contec-cms50" / "titinho11_cms50e_raw_stream.hex.txt"
    if not capture.exists():
        pytest.skip("../shared/device-captures is not here")
    result = _telemed("decode", "cms50", str(capture), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    first = next(r for r in rows if r["kind"] == "observation")
    assert first["mdc"] == 150456
    assert first["refid"] == "MDC_PULS_OXIM_SAT_O2"
    assert first["loinc"] == "59408-5"
    assert (first["value"], first["unit"]) == (99.0, "%")
    pleth = [r for r in rows if r["kind"] == "waveform"]
    assert sum(len(r["samples"]) for r in pleth) == 102
    assert pleth[0]["samples"][0] == 19.0
    assert "0 frame errors" in result.stderr


def test_decode_counts_frame_errors_in_a_raw_file(tmp_path: Path) -> None:
    capture = tmp_path / "broken.bin"
    good = encode_live(LiveSample(10, 70, 98, None))
    capture.write_bytes(good + b"\xff\xfe" + good[:4] + good)
    result = _telemed("decode", "cms50", str(capture))
    assert result.returncode == 1
    assert "2 frames" in result.stderr
    assert "2 frame errors" in result.stderr
    assert "MDC_PULS_OXIM_SAT_O2" in result.stdout


def test_simulate_then_read(tmp_path: Path) -> None:
    link = tmp_path / "ttyCMS50"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telemed",
            "devices",
            "simulate",
            "cms50",
            "--link",
            str(link),
            "--heart-rate",
            "66",
            "--spo2",
            "95",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    try:
        assert sim.stdout is not None
        assert sim.stdout.readline().strip() == str(link)
        result = _telemed("read", "cms50", str(link), "--json", "--seconds", "3")
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        spo2 = [r["value"] for r in rows if r["kind"] == "observation" and r["code"] == "spo2"]
        assert spo2
        assert all(v is not None and abs(v - 95) <= 2 for v in spo2)
        assert any(r["kind"] == "waveform" for r in rows)
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=10)
    assert not link.exists()  # unplugged on exit
