"""How a decoder reports its device's own alarms: the complete list whenever it changes, and
again every so often (a report the gateway's queue dropped is made good by the next one).

Counting frames rather than seconds keeps decoding independent of how the bytes were split
into reads, as :class:`~devices.protocols.common.NumericThrottle` does for values.
"""

from __future__ import annotations

from collections.abc import Iterable

from devices.model import DeviceAlarm, DeviceAlarms, DeviceEvent


class AlarmReporter:
    """``every``: repeat an unchanged list after this many frames (0: never repeat)."""

    def __init__(self, device_id: str, every: int) -> None:
        self.device_id = device_id
        self.every = every
        self._last: tuple[DeviceAlarm, ...] = ()
        self._frame: int | None = None

    @property
    def current(self) -> tuple[DeviceAlarm, ...]:
        return self._last

    def offer(
        self, events: list[DeviceEvent], alarms: Iterable[DeviceAlarm], frame: int, now: float
    ) -> None:
        """The device's alarms as of frame number ``frame``; appends a
        :class:`~devices.model.DeviceAlarms` to ``events`` when they changed (the first
        report of none at all is not sent: there is nothing to end) or are due again."""
        listed = tuple(sorted(set(alarms), key=lambda a: a.key))
        changed = listed != self._last
        if self._frame is None and not listed:
            self._frame = frame
            return
        due = (
            self._frame is None
            or (self.every > 0 and frame - self._frame >= self.every)
            or frame < self._frame  # the frame count started again
        )
        if changed or due:
            self._last, self._frame = listed, frame
            events.append(DeviceAlarms(self.device_id, listed, now))
