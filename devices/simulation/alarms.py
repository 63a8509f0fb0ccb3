"""Alarms on demand: scenarios that take a simulated patient (or the sensor on them) into an
alarm condition for a while, from the command line (``telemed devices simulate intellivue
--alarm spo2-low``) or from a test (``patient.scenarios.start("spo2-low")``).

A scenario holds values: while it runs, the patient's SpO2 (say) *is* 86 %, whatever the
drift would have made it, so every simulator of that patient reports it, and each device's
own alarms follow from what it measures (the IntelliVue monitor's limits, the CMS50's "low
SpO2" bit), as a real one's would. ``probe-off`` takes the SpO2 sensor off the patient.

=============== ============================================== ========
scenario        what happens                                    for
=============== ============================================== ========
spo2-low        SpO2 86 %                                       15 s
spo2-desat      SpO2 80 %                                       20 s
hr-high         heart rate 140 /min                             20 s
hr-low          heart rate 40 /min                              20 s
rr-high         respiration 36 /min                             20 s
nibp-high       NIBP 182/104 (128) mmHg                         30 s
temp-high       temperature 39.2 Cel                            30 s
probe-off       the SpO2 probe off the finger                   15 s
=============== ============================================== ========

Times are the scenarios' clock (monotonic seconds; tests drive it).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


class Scenario(enum.StrEnum):
    SPO2_LOW = "spo2-low"
    SPO2_DESAT = "spo2-desat"
    HR_HIGH = "hr-high"
    HR_LOW = "hr-low"
    RR_HIGH = "rr-high"
    NIBP_HIGH = "nibp-high"
    TEMP_HIGH = "temp-high"
    PROBE_OFF = "probe-off"


@dataclass(frozen=True)
class Episode:
    """What a scenario does: parameter values held (by the parameter's key), whether the
    probe is off, and for how long by default."""

    values: Mapping[str, float] = field(default_factory=dict)
    probe_off: bool = False
    duration_s: float = 15.0


EPISODES: dict[Scenario, Episode] = {
    Scenario.SPO2_LOW: Episode({"spo2": 86.0}, duration_s=15.0),
    Scenario.SPO2_DESAT: Episode({"spo2": 80.0}, duration_s=20.0),
    Scenario.HR_HIGH: Episode({"heart_rate": 140.0}, duration_s=20.0),
    Scenario.HR_LOW: Episode({"heart_rate": 40.0}, duration_s=20.0),
    Scenario.RR_HIGH: Episode({"resp_rate": 36.0}, duration_s=20.0),
    Scenario.NIBP_HIGH: Episode(
        {"nibp_sys": 182.0, "nibp_dia": 104.0, "nibp_mean": 128.0}, duration_s=30.0
    ),
    Scenario.TEMP_HIGH: Episode({"temperature": 39.2}, duration_s=30.0),
    Scenario.PROBE_OFF: Episode(probe_off=True, duration_s=15.0),
}


def parse(text: str) -> tuple[Scenario, float | None]:
    """``NAME`` or ``NAME:SECONDS`` (a command-line ``--alarm``); raises ValueError naming
    the scenarios there are."""
    name, _, seconds = text.partition(":")
    try:
        scenario = Scenario(name)
    except ValueError:
        known = ", ".join(s.value for s in Scenario)
        raise ValueError(f"unknown alarm scenario {name!r} (known: {known})") from None
    if not seconds:
        return scenario, None
    duration = float(seconds)
    if not duration > 0:
        raise ValueError(f"{text!r}: a scenario lasts a positive number of seconds")
    return scenario, duration


@dataclass
class _Running:
    scenario: Scenario
    episode: Episode
    until: float | None


class AlarmScenarios:
    """The scenarios running on one patient. ``clock``: monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._running: list[_Running] = []

    def start(self, scenario: Scenario | str, duration_s: float | None = None) -> None:
        """Run ``scenario`` now for ``duration_s`` (its default when None; ``math.inf``:
        until stopped). Started again while running, it runs for the new duration from now."""
        chosen = Scenario(scenario)
        episode = EPISODES[chosen]
        length = episode.duration_s if duration_s is None else duration_s
        self.stop(chosen)
        self._running.append(_Running(chosen, episode, self._clock() + length))

    def stop(self, scenario: Scenario | str | None = None) -> None:
        """Stop ``scenario`` (every one when None)."""
        self._running = [
            r for r in self._running if scenario is not None and r.scenario != Scenario(scenario)
        ]

    def running(self) -> list[Scenario]:
        now = self._clock()
        self._running = [r for r in self._running if r.until is None or now < r.until]
        return [r.scenario for r in self._running]

    def value(self, key: str) -> float | None:
        """The value a running scenario holds ``key`` at (the latest started wins), or None."""
        running = set(self.running())
        for r in reversed(self._running):
            if r.scenario in running and key in r.episode.values:
                return r.episode.values[key]
        return None

    @property
    def probe_off(self) -> bool:
        running = set(self.running())
        return any(r.episode.probe_off for r in self._running if r.scenario in running)
