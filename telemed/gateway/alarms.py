"""The bedside's alarms, wired: device events into the alarm engine
(:mod:`devices.alarms.engine`), its changes out to every viewer (the events channel's
``alarm`` and ``limits``) and to the store-and-forward journal (the consultation's record on
the server), and doctors' acknowledgements and limit changes in from the signaling relay.

The engine is cheap (a few comparisons per value) and runs on the event loop, where every
caller here is: device events from the pumps, ticks from :meth:`GatewayAlarms.run`, relayed
messages from the signaling task. A viewer connecting later is told the limits in force and
every alarm still worth showing (:meth:`GatewayAlarms.greeting`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from devices.alarms.engine import EVT_ALARM, EVT_LIMITS, AlarmEngine, AlarmRecord, LimitsInForce
from devices.alarms.limits import LimitChange, LimitError, UnknownAlarm
from devices.model import DeviceEvent, DeviceStatus
from media.rtc.events import Alarm, AlarmLimits, LimitInForce, encode_event
from signaling.schema import AlarmAck, AlarmLimitsChange

log = logging.getLogger(__name__)

#: How often delays are checked between values.
TICK_S = 0.5
#: An ended alarm is still told to a viewer who connects within this long of its end (the
#: browser shows an unacknowledged one until someone acknowledges it).
GREET_ENDED_S = 300.0


class AlarmJournal(Protocol):
    """Where alarm state is kept for the consultation's record (signaling.journal.Journal)."""

    def add_alarm(self, alarm: BaseModel) -> None: ...

    def add_limits(self, limits: BaseModel) -> None: ...


Broadcast = Callable[[str], None]


def alarm_message(record: AlarmRecord) -> Alarm:
    """The events channel's ``alarm`` for a record."""
    return Alarm(
        id=record.id,
        device=record.device_id,
        code=record.code,
        condition=record.condition,
        text=record.text,
        priority=record.priority.value,
        kind=record.kind.value,
        source=record.source.value,
        state=record.state.value,
        started=record.started,
        ended=record.ended,
        value=record.value,
        limit=record.limit,
        unit=record.unit,
        acknowledged_by=record.acknowledged_by,
        acknowledged_at=record.acknowledged_at,
    )


def limits_message(limits: LimitsInForce) -> AlarmLimits:
    """The events channel's ``limits`` for the limits in force."""
    return AlarmLimits(
        limits=[
            LimitInForce(
                code=limit.name,
                low=limit.low,
                high=limit.high,
                delay_s=limit.delay_s,
                unit=limit.unit,
            )
            for limit in limits.limits
        ],
        changed_by=limits.changed_by,
        time=limits.time or time.time(),
    )


class GatewayAlarms:
    """``broadcast`` sends an events-channel message (JSON text) to every viewer;
    ``journal`` keeps alarm state for the record; ``clock``: the gateway's clock (s since
    the epoch), the one device events are stamped with."""

    def __init__(
        self,
        broadcast: Broadcast,
        journal: AlarmJournal,
        *,
        engine: AlarmEngine | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine or AlarmEngine()
        self._broadcast = broadcast
        self._journal = journal
        self._clock = clock
        self.engine.notifier.bind(EVT_ALARM, self._send_alarm)
        self.engine.notifier.bind(EVT_ALARM, self._journal_alarm)
        self.engine.notifier.bind(EVT_ALARM, _log_alarm)
        self.engine.notifier.bind(EVT_LIMITS, self._send_limits)
        self.engine.notifier.bind(EVT_LIMITS, self._journal_limits)

    # -- in ------------------------------------------------------------------------------------

    def handle(self, event: DeviceEvent, *, link_states: bool = True) -> None:
        """A device event. ``link_states``: whether the source's DeviceStatus tells of the
        device itself; an HL7 listener's do not (a monitor gateway may connect per message:
        a closed connection is no lost device)."""
        if isinstance(event, DeviceStatus) and not link_states:
            return
        self.engine.handle(event)

    def acknowledge(self, message: AlarmAck) -> None:
        """A doctor's acknowledgement, relayed by the server (``by`` is the doctor)."""
        by = message.by or message.sender or "?"
        try:
            record = self.engine.acknowledge(message.alarm_id, by, self._clock())
        except UnknownAlarm as exc:
            log.warning("acknowledgement by %s refused: %s", by, exc)
            return
        if record is None:
            log.info("%s acknowledged %s again: the first stands", by, message.alarm_id)

    def change_limits(self, message: AlarmLimitsChange) -> None:
        """A doctor's limit change, relayed by the server. One that cannot be applied is
        refused whole and the limits in force are told again (a viewer showing the edit
        goes back to them)."""
        by = message.by or message.sender or "?"
        changes = [LimitChange(x.code, x.low, x.high, x.delay_s) for x in message.limits]
        try:
            self.engine.change_limits(changes, by, self._clock())
        except LimitError as exc:
            log.warning("limit change by %s refused: %s", by, exc)
            self._broadcast(encode_event(limits_message(self.engine.limits)))

    def joined(self) -> None:
        """The gateway joined a consultation: its record gets the limits in force and the
        alarms active now (the journal keeps only what comes while in one)."""
        self._journal_limits(self.engine.limits)
        for record in self.engine.active():
            self._journal_alarm(record)

    async def run(self) -> None:
        """Tick the engine until cancelled."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.engine.tick(self._clock())
            except Exception:  # one bad tick is logged; the next may alarm again
                log.exception("alarm tick failed")

    # -- out -----------------------------------------------------------------------------------

    def greeting(self) -> list[str]:
        """What a newly connected viewer is told: the limits in force, then the active
        alarms and those ended recently (oldest first)."""
        now = self._clock()
        shown = [
            encode_event(alarm_message(r))
            for r in self.engine.alarms()
            if r.ended is None or now - r.ended < GREET_ENDED_S
        ]
        return [encode_event(limits_message(self.engine.limits)), *shown]

    def _send_alarm(self, record: AlarmRecord) -> None:
        self._broadcast(encode_event(alarm_message(record)))

    def _send_limits(self, limits: LimitsInForce) -> None:
        self._broadcast(encode_event(limits_message(limits)))

    def _journal_alarm(self, record: AlarmRecord) -> None:
        try:
            self._journal.add_alarm(alarm_message(record))
        except ValueError as exc:  # the server would refuse it: said, and the rest goes on
            log.warning("alarm %s not journalled: %s", record.id, exc)

    def _journal_limits(self, limits: LimitsInForce) -> None:
        try:
            self._journal.add_limits(limits_message(limits))
        except ValueError as exc:
            log.warning("alarm limits not journalled: %s", exc)


def _log_alarm(record: AlarmRecord) -> None:
    log.info(
        "alarm %s %s: %s %s %s of %s%s",
        record.id,
        record.state,
        record.priority,
        record.kind,
        record.condition,
        record.device_id,
        f" acknowledged by {record.acknowledged_by}" if record.acknowledged_by else "",
    )
