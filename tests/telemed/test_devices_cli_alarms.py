"""`telemed devices simulate --alarm`: a technician raises an alarm on demand and the device
reports it, as a reader of the device sees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_telemed


def test_simulate_an_alarm_on_demand_then_read_it(tmp_path: Path) -> None:
    link = tmp_path / "ttyIntelliVue"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telemed",
            "devices",
            "simulate",
            "intellivue",
            "--link",
            str(link),
            "--alarm",
            "probe-off:60",
            "--alarm-in",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    try:
        assert sim.stdout is not None
        assert sim.stdout.readline().strip() == str(link)
        result = run_telemed(
            "devices", "read", "intellivue", str(link), "--json", "--seconds", "5", timeout=60
        )
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        alarms = [r for r in rows if r["kind"] == "alarms"]
        assert alarms, result.stdout[-2000:]
        assert alarms[0]["alarms"] == [
            {
                "condition": "probe_off",
                "priority": "low",
                "kind": "technical",
                "code": "spo2",
                "text": "SpO2 SENSOR OFF",
                "device_time": None,
            }
        ]
        spo2 = [r for r in rows if r["kind"] == "observation" and r["code"] == "spo2"]
        assert spo2 and all(r["value"] is None for r in spo2)
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=10)


def test_an_unknown_scenario_is_refused_naming_the_known_ones() -> None:
    result = run_telemed("devices", "simulate", "cms50", "--alarm", "asystole", timeout=60)
    assert result.returncode == 2
    assert "unknown alarm scenario 'asystole'" in result.stderr
    assert "spo2-low" in result.stderr
