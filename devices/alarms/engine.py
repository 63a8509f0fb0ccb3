"""The gateway's alarm engine, sans-I/O: device events and a clock in, alarm records out.

One engine holds every alarm of one bedside, whoever raised it:

- **limit alarms**, computed here from each device's values against the limits in force
  (:mod:`devices.alarms.limits`: a delay before one starts, a hysteresis before it ends);
- **device alarms**, as the devices report them (:class:`~devices.model.DeviceAlarms`: a
  complete list each time, so one absent from it has ended);
- **disconnected**, a technical alarm of its own when the gateway loses a device
  (:class:`~devices.model.DeviceStatus` DISCONNECTED or SILENT). It ends that device's other
  alarms: what they said can no longer be known.

Every method that can change an alarm returns the records it changed, newest state, and
notifies :data:`EVT_ALARM` with each (:data:`EVT_LIMITS` when the limits change). Times are
the gateway's clock (s since the epoch): an observation's ``receive_time``, or ``now`` as
given. Call :meth:`AlarmEngine.tick` about twice a second: a limit alarm whose delay runs out
between two values starts then, and ended alarms are forgotten after ``keep_ended_s``.

An alarm's life: ACTIVE -> ENDED, once. Acknowledging (by a doctor) marks it at any time,
once; a device alarm whose priority rises is unacknowledged again (it asks for attention
anew). Ids are unique at this engine and stable over the alarm's life.
"""

from __future__ import annotations

import enum
import itertools
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from devices.alarms import conditions
from devices.alarms.limits import Limit, LimitChange, LimitSet, UnknownAlarm
from devices.alarms.notify import NotificationEvent, Notifier
from devices.model import (
    AlarmKind,
    AlarmPriority,
    DeviceAlarm,
    DeviceAlarms,
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    Observation,
    Quality,
)

#: A value with any of these is no evidence either way: it neither starts nor ends an alarm
#: (and a pending delay starts again after it).
UNTRUSTED = (
    Quality.INVALID
    | Quality.PROBE_OFF
    | Quality.SEARCHING
    | Quality.ARTIFACT
    | Quality.OUT_OF_TRACK
)
#: The device is gone: a technical alarm.
LOST_STATES = frozenset({DeviceState.DISCONNECTED, DeviceState.SILENT})
#: The device talks again (an oximeter searching or with its probe off talks).
TALKING_STATES = frozenset({DeviceState.CONNECTED, DeviceState.SEARCHING, DeviceState.PROBE_OFF})
DISCONNECTED_PRIORITY = AlarmPriority.MEDIUM


class AlarmSource(enum.StrEnum):
    """Who decided: the device itself, or the gateway's limit check."""

    DEVICE = "device"
    LIMIT = "limit"


class AlarmState(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """One alarm as the gateway knows it (what the events channel's ``alarm`` carries).
    ``value``/``limit``/``unit``: for limit alarms, the value that crossed and the limit."""

    id: str
    device_id: str
    code: str | None
    condition: str
    priority: AlarmPriority
    kind: AlarmKind
    source: AlarmSource
    state: AlarmState
    started: float
    text: str = ""
    ended: float | None = None
    value: float | None = None
    limit: float | None = None
    unit: str = ""
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state is AlarmState.ACTIVE


@dataclass(frozen=True, slots=True)
class LimitsInForce:
    """The limits in force, who set them last (None: the defaults) and when."""

    limits: LimitSet
    changed_by: str | None
    time: float


EVT_ALARM: NotificationEvent[AlarmRecord] = NotificationEvent(
    "EVT_ALARM", "an alarm started, changed (acknowledged, escalated) or ended"
)
EVT_LIMITS: NotificationEvent[LimitsInForce] = NotificationEvent(
    "EVT_LIMITS", "the alarm limits in force changed"
)


@dataclass
class _Watch:
    """One side of one limit on one device's values."""

    beyond_since: float | None = None
    last_value: float | None = None
    last_time: float = -math.inf
    alarm_id: str | None = None


def _ids() -> Callable[[], str]:
    # A random prefix per engine keeps ids unique across gateway restarts too.
    prefix = secrets.token_hex(4)
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


@dataclass
class _DeviceAlarms:
    """A device's alarms the engine tracks: its own (by report key) and "disconnected"."""

    reported: dict[tuple[str, str, str], str] = field(default_factory=dict)
    disconnected: str | None = None


class AlarmEngine:
    """``limits``: the limits in force at start (the adult defaults); ``new_id``: makes the
    unique part of alarm ids (tests pass a counter); ``stale_s``: a value older than this no
    longer starts an alarm on :meth:`tick` (the device stopped sending); ``keep_ended_s``:
    how long an ended alarm is kept (and listed by :meth:`alarms`)."""

    def __init__(
        self,
        limits: Iterable[Limit] | None = None,
        *,
        new_id: Callable[[], str] | None = None,
        stale_s: float = 5.0,
        keep_ended_s: float = 600.0,
    ) -> None:
        self.notifier = Notifier()
        self._limits = LimitsInForce(LimitSet() if limits is None else LimitSet(limits), None, 0.0)
        self._new_id = new_id or _ids()
        self.stale_s = stale_s
        self.keep_ended_s = keep_ended_s
        self._records: dict[str, AlarmRecord] = {}
        self._watches: dict[tuple[str, str, str], _Watch] = {}
        self._devices: dict[str, _DeviceAlarms] = {}

    # -- reading ---------------------------------------------------------------------------

    @property
    def limits(self) -> LimitsInForce:
        return self._limits

    def alarms(self) -> list[AlarmRecord]:
        """Every alarm kept: the active ones and those ended within ``keep_ended_s``, oldest
        first."""
        return sorted(self._records.values(), key=lambda r: (r.started, r.id))

    def active(self) -> list[AlarmRecord]:
        return [r for r in self.alarms() if r.active]

    def get(self, alarm_id: str) -> AlarmRecord:
        try:
            return self._records[alarm_id]
        except KeyError:
            raise UnknownAlarm(f"no alarm {alarm_id!r} here") from None

    # -- device events -----------------------------------------------------------------------

    def handle(self, event: DeviceEvent) -> list[AlarmRecord]:
        """Any device event: values, alarm lists and states change alarms; others do not."""
        match event:
            case Observation():
                return self.observe(event)
            case DeviceAlarms():
                return self.device_alarms(event)
            case DeviceStatus():
                return self.device_status(event)
        return []

    def observe(self, observation: Observation) -> list[AlarmRecord]:
        """A device's value, checked against every limit on its parameter."""
        now = observation.receive_time
        value = observation.value
        if value is not None and observation.quality & UNTRUSTED:
            value = None
        changes: list[AlarmRecord] = []
        for limit in self._limits.limits.watching(observation.code):
            for side in ("low", "high"):
                watch = self._watches.setdefault(
                    (observation.device_id, limit.name, side), _Watch()
                )
                changes += self._evaluate(observation.device_id, limit, side, watch, value, now)
        return self._publish(changes)

    def _evaluate(
        self, device: str, limit: Limit, side: str, watch: _Watch, value: float | None, now: float
    ) -> list[AlarmRecord]:
        watch.last_value, watch.last_time = value, now
        if value is None:
            watch.beyond_since = None  # no evidence: a delay runs only over valid values
            return []
        low = side == "low"
        if watch.alarm_id is not None:
            back = limit.back_from_low(value) if low else limit.back_from_high(value)
            if not back:
                return []
            watch.beyond_since = None
            return self._end_watch(watch, now)
        beyond = limit.beyond_low(value) if low else limit.beyond_high(value)
        if not beyond:
            watch.beyond_since = None
            return []
        if watch.beyond_since is None:
            watch.beyond_since = now
        if now - watch.beyond_since < limit.delay_s:
            return []
        return [self._start_limit_alarm(device, limit, side, watch, value, now)]

    def _start_limit_alarm(
        self, device: str, limit: Limit, side: str, watch: _Watch, value: float, now: float
    ) -> AlarmRecord:
        low = side == "low"
        record = AlarmRecord(
            id=self._id(device, limit.low_condition if low else limit.high_condition),
            device_id=device,
            code=limit.parameter.key,
            condition=limit.low_condition if low else limit.high_condition,
            priority=limit.priority,
            kind=AlarmKind.PHYSIOLOGICAL,
            source=AlarmSource.LIMIT,
            state=AlarmState.ACTIVE,
            started=now,
            value=value,
            limit=limit.low if low else limit.high,
            unit=limit.unit,
        )
        self._records[record.id] = record
        watch.alarm_id = record.id
        return record

    def _end_watch(self, watch: _Watch, now: float) -> list[AlarmRecord]:
        alarm_id, watch.alarm_id = watch.alarm_id, None
        return self._end(alarm_id, now)

    def device_alarms(self, report: DeviceAlarms) -> list[AlarmRecord]:
        """A device's complete list of its own alarms: new ones start, missing ones end,
        changed ones (priority, words) change."""
        now = report.receive_time
        tracked = self._devices.setdefault(report.device_id, _DeviceAlarms())
        current = {alarm.key: alarm for alarm in report.alarms}
        changes: list[AlarmRecord] = []
        for key in [k for k in tracked.reported if k not in current]:
            changes += self._end(tracked.reported.pop(key), now)
        for key, alarm in current.items():
            known = tracked.reported.get(key)
            if known is None:
                record = self._device_record(report.device_id, alarm, now)
                tracked.reported[key] = record.id
                changes.append(record)
            else:
                changes += self._revise(self._records[known], alarm)
        return self._publish(changes)

    def _device_record(self, device: str, alarm: DeviceAlarm, now: float) -> AlarmRecord:
        record = AlarmRecord(
            id=self._id(device, alarm.condition),
            device_id=device,
            code=alarm.code.key if alarm.code else None,
            condition=alarm.condition,
            priority=alarm.priority,
            kind=alarm.kind,
            source=AlarmSource.DEVICE,
            state=AlarmState.ACTIVE,
            started=now,
            text=alarm.text,
            unit=alarm.code.ucum if alarm.code else "",
        )
        self._records[record.id] = record
        return record

    def _revise(self, record: AlarmRecord, alarm: DeviceAlarm) -> list[AlarmRecord]:
        if (record.priority, record.text) == (alarm.priority, alarm.text):
            return []
        revised = replace(record, priority=alarm.priority, text=alarm.text)
        if alarm.priority.rank > record.priority.rank:
            revised = replace(revised, acknowledged_by=None, acknowledged_at=None)
        self._records[record.id] = revised
        return [revised]

    def device_status(self, status: DeviceStatus) -> list[AlarmRecord]:
        """A device's link state: lost starts "disconnected" (and ends what the device's
        alarms and values said); talking again ends it."""
        device, now = status.device_id, status.receive_time
        tracked = self._devices.setdefault(device, _DeviceAlarms())
        changes: list[AlarmRecord] = []
        if status.state in LOST_STATES:
            for alarm_id in tracked.reported.values():
                changes += self._end(alarm_id, now)
            tracked.reported.clear()
            for (watched, _, _), watch in self._watches.items():
                if watched == device:
                    watch.beyond_since = watch.last_value = None
                    if watch.alarm_id is not None:
                        changes += self._end_watch(watch, now)
            if tracked.disconnected is None:
                record = AlarmRecord(
                    id=self._id(device, conditions.DISCONNECTED),
                    device_id=device,
                    code=None,
                    condition=conditions.DISCONNECTED,
                    priority=DISCONNECTED_PRIORITY,
                    kind=AlarmKind.TECHNICAL,
                    source=AlarmSource.DEVICE,
                    state=AlarmState.ACTIVE,
                    started=now,
                    text=status.detail[:256],
                )
                self._records[record.id] = record
                tracked.disconnected = record.id
                changes.append(record)
        elif status.state in TALKING_STATES and tracked.disconnected is not None:
            alarm_id, tracked.disconnected = tracked.disconnected, None
            changes += self._end(alarm_id, now)
        return self._publish(changes)

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[AlarmRecord]:
        """Start limit alarms whose delay ran out since the last value (if that value is
        recent), and forget ended alarms past ``keep_ended_s``."""
        changes: list[AlarmRecord] = []
        for (device, name, side), watch in self._watches.items():
            value = watch.last_value
            if watch.alarm_id is not None or watch.beyond_since is None or value is None:
                continue
            if now - watch.last_time > self.stale_s:
                continue
            limit = self._limits.limits[name]
            still = limit.beyond_low(value) if side == "low" else limit.beyond_high(value)
            if still and now - watch.beyond_since >= limit.delay_s:
                changes.append(self._start_limit_alarm(device, limit, side, watch, value, now))
        for record in list(self._records.values()):
            if record.ended is not None and now - record.ended > self.keep_ended_s:
                del self._records[record.id]
        return self._publish(changes)

    # -- doctors ---------------------------------------------------------------------------

    def acknowledge(self, alarm_id: str, by: str, now: float) -> AlarmRecord | None:
        """``by`` acknowledged the alarm: the record changed, or None when it already was
        acknowledged (the first acknowledgement stands). Raises
        :class:`~devices.alarms.limits.UnknownAlarm`."""
        record = self.get(alarm_id)
        if record.acknowledged_by is not None:
            return None
        record = replace(record, acknowledged_by=by, acknowledged_at=now)
        self._records[alarm_id] = record
        self._publish([record])
        return record

    def change_limits(
        self, changes: Iterable[LimitChange], by: str, now: float
    ) -> tuple[LimitsInForce, list[AlarmRecord]]:
        """``by`` changed limits: the limits now in force and the alarms that changed with
        them (an active alarm whose value is inside the new limit ends at once; one still
        beyond shows the new limit; a value now beyond starts its delay now). Raises
        :class:`~devices.alarms.limits.LimitError` and changes nothing when a change is refused."""
        requested = list(changes)
        limits = self._limits.limits.changed(requested)
        names = {change.name for change in requested}
        self._limits = LimitsInForce(limits, by, now)
        records: list[AlarmRecord] = []
        for (_, name, side), watch in self._watches.items():
            if name not in names:
                continue
            limit = limits[name]
            bound = limit.low if side == "low" else limit.high
            value = watch.last_value
            beyond = value is not None and (
                limit.beyond_low(value) if side == "low" else limit.beyond_high(value)
            )
            if watch.alarm_id is not None:
                if value is not None and not beyond:
                    records += self._end_watch(watch, now)
                elif self._records[watch.alarm_id].limit != bound:
                    revised = replace(self._records[watch.alarm_id], limit=bound)
                    self._records[revised.id] = revised
                    records.append(revised)
            elif beyond:
                watch.beyond_since = watch.beyond_since if watch.beyond_since is not None else now
            else:
                watch.beyond_since = None
        self.notifier.notify(EVT_LIMITS, self._limits)
        return self._limits, self._publish(records)

    # -- helpers -----------------------------------------------------------------------------

    def _id(self, device: str, condition: str) -> str:
        return f"{device[:48]}:{condition[:48]}:{self._new_id()}"

    def _end(self, alarm_id: str | None, now: float) -> list[AlarmRecord]:
        record = self._records.get(alarm_id or "")
        if record is None or not record.active:
            return []
        ended = replace(record, state=AlarmState.ENDED, ended=now)
        self._records[ended.id] = ended
        return [ended]

    def _publish(self, changes: list[AlarmRecord]) -> list[AlarmRecord]:
        for record in changes:
            self.notifier.notify(EVT_ALARM, record)
        return changes
