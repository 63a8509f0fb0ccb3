"""Clocks, injected so that code measuring time can be tested without sleeping.

Two kinds of time and never one for the other: :meth:`Clock.monotonic` for how long
something took or how long ago it was heard (a wall-clock step must not declare a live peer
dead), :meth:`Clock.time` for when something happened (seconds since the Unix epoch).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told to (tests). ``step_wall`` moves the wall clock alone,
    as an NTP correction does."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self._monotonic = monotonic
        self._wall = wall

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += seconds

    def step_wall(self, seconds: float) -> None:
        self._wall += seconds
