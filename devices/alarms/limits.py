"""Alarm limits: what the gateway checks each device's values against.

Adult defaults (what a Philips or GE monitor ships with, rounded to the values most ICUs
keep; the consulting doctor changes them from the room):

=============== ======= ======= ======== ======= ==========
limit           low     high    priority delay   hysteresis
=============== ======= ======= ======== ======= ==========
heart_rate      50      120     medium   10 s    2 /min
pulse_rate      50      120     medium   10 s    2 /min
spo2            90      --      medium   10 s    1 %
spo2_desat      85      --      high     10 s    1 %
resp_rate       8       30      medium   10 s    1 /min
nibp_sys        90      160     medium   0 s     3 mmHg
nibp_dia        50      90      medium   0 s     3 mmHg
nibp_mean       60      110     medium   0 s     3 mmHg
temperature     35.0    38.5    medium   10 s    0.2 Cel
=============== ======= ======= ======== ======= ==========

- **Delay**: a value must stay beyond the limit that long, every value of it, before the
  alarm starts: one noisy value does not alarm. NIBP has none: each value is one cuff
  measurement (a monitor repeats it until the next), so a single one beyond the limit alarms.
- **Hysteresis**: an alarm ends only when the value is back inside the limit by this much,
  so a value hovering at the limit does not start and end the alarm over and over.
- ``spo2_desat`` watches SpO2 too: a second, lower limit of high priority (Philips' "Desat").

Only the bounds and the delay of a limit can be changed; its priority and hysteresis are
the engine's. A change is checked against the parameter's plausible range and refused whole
(:class:`LimitError`) if any part of it is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from devices import codes
from devices.alarms import conditions
from devices.codes import VitalCode
from devices.errors import DeviceError
from devices.model import AlarmPriority

#: The longest delay a limit may have (the signaling schema allows the same).
MAX_DELAY_S = 120.0


class AlarmError(DeviceError):
    """A request about alarms (a limit change, an acknowledgement) that cannot be met: in
    the package's tree under :class:`~devices.errors.DeviceError`."""


class LimitError(AlarmError, ValueError):
    """A limit change that cannot be applied; the text says why."""


class UnknownAlarm(AlarmError, KeyError):
    """No alarm goes by this id (never raised, or forgotten long since)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: ``name`` is how it is called on the wire (the parameter's key, or
    ``spo2_desat``); ``parameter`` what values it watches; ``low``/``high`` None: no limit on
    that side."""

    name: str
    parameter: VitalCode
    low: float | None
    high: float | None
    delay_s: float
    priority: AlarmPriority
    hysteresis: float
    #: The range a doctor may set the bounds in.
    plausible: tuple[float, float]
    low_condition: str
    high_condition: str

    @property
    def unit(self) -> str:
        return self.parameter.ucum

    def beyond_low(self, value: float) -> bool:
        return self.low is not None and value < self.low

    def beyond_high(self, value: float) -> bool:
        return self.high is not None and value > self.high

    def back_from_low(self, value: float) -> bool:
        """Inside again by the hysteresis (or the low side is no longer limited)."""
        return self.low is None or value >= self.low + self.hysteresis

    def back_from_high(self, value: float) -> bool:
        return self.high is None or value <= self.high - self.hysteresis


def _limit(
    parameter: VitalCode,
    low: float | None,
    high: float | None,
    *,
    delay_s: float = 10.0,
    hysteresis: float,
    plausible: tuple[float, float],
    priority: AlarmPriority = AlarmPriority.MEDIUM,
    name: str | None = None,
) -> Limit:
    return Limit(
        name=name or parameter.key,
        parameter=parameter,
        low=low,
        high=high,
        delay_s=delay_s,
        priority=priority,
        hysteresis=hysteresis,
        plausible=plausible,
        low_condition=name or conditions.low(parameter),
        high_condition=name or conditions.high(parameter),
    )


ADULT_DEFAULTS: tuple[Limit, ...] = (
    _limit(codes.HEART_RATE, 50, 120, hysteresis=2, plausible=(15, 300)),
    _limit(codes.PULSE_RATE, 50, 120, hysteresis=2, plausible=(15, 300)),
    _limit(codes.SPO2, 90, None, hysteresis=1, plausible=(50, 100)),
    _limit(
        codes.SPO2,
        85,
        None,
        hysteresis=1,
        plausible=(50, 100),
        priority=AlarmPriority.HIGH,
        name=conditions.SPO2_DESAT,
    ),
    _limit(codes.RESP_RATE, 8, 30, hysteresis=1, plausible=(2, 150)),
    _limit(codes.NIBP_SYS, 90, 160, delay_s=0, hysteresis=3, plausible=(10, 300)),
    _limit(codes.NIBP_DIA, 50, 90, delay_s=0, hysteresis=3, plausible=(10, 300)),
    _limit(codes.NIBP_MEAN, 60, 110, delay_s=0, hysteresis=3, plausible=(10, 300)),
    _limit(codes.TEMPERATURE, 35.0, 38.5, hysteresis=0.2, plausible=(25, 45)),
)


@dataclass(frozen=True, slots=True)
class LimitChange:
    """What a doctor asks for one limit: both bounds and the delay (None: no bound)."""

    name: str
    low: float | None
    high: float | None
    delay_s: float


class LimitSet:
    """The limits in force, by name. Immutable: :meth:`changed` gives a new set."""

    def __init__(self, limits: Iterable[Limit] = ADULT_DEFAULTS) -> None:
        self._by_name = {limit.name: limit for limit in limits}

    def __iter__(self) -> Iterator[Limit]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str) -> Limit:
        return self._by_name[name]

    def watching(self, parameter: VitalCode) -> list[Limit]:
        """The limits on ``parameter``'s values."""
        return [limit for limit in self._by_name.values() if limit.parameter is parameter]

    def changed(self, changes: Iterable[LimitChange]) -> LimitSet:
        """A new set with ``changes`` applied; raises :class:`LimitError` naming the first
        change that cannot be (none is applied then)."""
        updated = dict(self._by_name)
        for change in changes:
            current = updated.get(change.name)
            if current is None:
                known = ", ".join(sorted(self._by_name))
                raise LimitError(f"{change.name!r} is not a limit here (known: {known})")
            updated[change.name] = _checked(current, change)
        return LimitSet(updated.values())


def _checked(current: Limit, change: LimitChange) -> Limit:
    lo, hi = current.plausible
    for side, bound in (("low", change.low), ("high", change.high)):
        if bound is None:
            continue
        if not math.isfinite(bound) or not lo <= bound <= hi:
            raise LimitError(
                f"{change.name}: {side} limit {bound:g} is outside {lo:g}..{hi:g} {current.unit}"
            )
    if change.low is not None and change.high is not None and change.low >= change.high:
        raise LimitError(
            f"{change.name}: the low limit {change.low:g} is not below the high {change.high:g}"
        )
    if not 0.0 <= change.delay_s <= MAX_DELAY_S:
        raise LimitError(
            f"{change.name}: a delay of {change.delay_s:g} s is not 0..{MAX_DELAY_S:g}"
        )
    return replace(current, low=change.low, high=change.high, delay_s=change.delay_s)
