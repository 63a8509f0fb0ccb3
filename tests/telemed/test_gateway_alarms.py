"""The gateway's alarm wiring: device events in, ``alarm`` and ``limits`` messages out to the
viewers and into the journal; doctors' acknowledgements and limit changes as the server
relays them; what a viewer connecting later is told."""

from __future__ import annotations

import json
from typing import Any

from devices import codes
from devices.alarms import conditions
from devices.model import (
    AlarmKind,
    AlarmPriority,
    DeviceAlarm,
    DeviceAlarms,
    DeviceState,
    DeviceStatus,
    Observation,
)
from media.rtc.events import Alarm, AlarmLimits, parse_event
from signaling.journal import Journal, JournalStore
from signaling.schema import AlarmAck, AlarmLimitsChange, parse_server_message
from telemed.gateway.alarms import GatewayAlarms

DEVICE = "monitor-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Bedside:
    """GatewayAlarms with what it sends kept, a real journal (in memory) in a consultation."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.clock = Clock()
        self.consultation: str | None = "c-1"
        self.journal = Journal(JournalStore.open(None), lambda: self.consultation)
        self.alarms = GatewayAlarms(self.sent.append, self.journal, clock=self.clock)

    def spo2(self, values: list[float], start: float) -> None:
        for k, value in enumerate(values):
            self.alarms.handle(Observation(codes.SPO2, value, DEVICE, self.clock.now + start + k))

    def messages(self) -> list[Alarm | AlarmLimits]:
        out: list[Alarm | AlarmLimits] = []
        for text in self.sent:
            message = parse_event(text)
            assert isinstance(message, Alarm | AlarmLimits)
            out.append(message)
        self.sent.clear()
        return out

    async def journalled(self) -> dict[str, list[Any]]:
        await self.journal.flush()
        batch = self.journal.store.pending(1000)
        assert batch is not None
        return batch.body


def _relayed(message: dict[str, Any]) -> Any:
    """A message as the server relays it to the gateway (``from`` and ``by`` filled in)."""
    return parse_server_message(json.dumps(message))


async def test_a_limit_alarm_reaches_the_viewers_and_the_journal_then_is_acknowledged() -> None:
    bedside = Bedside()
    bedside.spo2([97, 96], 0)
    assert bedside.messages() == []
    bedside.spo2([86] * 11, 2)
    (started,) = bedside.messages()
    assert isinstance(started, Alarm)
    assert (
        started.device,
        started.code,
        started.condition,
        started.priority,
        started.kind,
        started.source,
        started.state,
        started.value,
        started.limit,
        started.unit,
    ) == (DEVICE, "spo2", "spo2_low", "medium", "physiological", "limit", "active", 86, 90, "%")
    ack = _relayed(
        {"type": "alarm-ack", "alarm_id": started.id, "from": "p-7", "by": "doctor.koriyama"}
    )
    assert isinstance(ack, AlarmAck)
    bedside.clock.now += 20
    bedside.alarms.acknowledge(ack)
    (acknowledged,) = bedside.messages()
    assert isinstance(acknowledged, Alarm)
    assert (acknowledged.id, acknowledged.acknowledged_by, acknowledged.acknowledged_at) == (
        started.id,
        "doctor.koriyama",
        bedside.clock.now,
    )
    # A second acknowledgement changes nothing; one of an unknown alarm is refused.
    bedside.alarms.acknowledge(ack)
    bedside.alarms.acknowledge(_relayed({"type": "alarm-ack", "alarm_id": "gone", "by": "x"}))
    assert bedside.messages() == []
    bedside.spo2([97], 30)
    (ended,) = bedside.messages()
    assert isinstance(ended, Alarm) and (ended.state, ended.acknowledged_by) == (
        "ended",
        "doctor.koriyama",
    )
    record = await bedside.journalled()
    assert [(a["id"], a["state"], a.get("acknowledged_by")) for a in record["alarms"]] == [
        (started.id, "active", None),
        (started.id, "active", "doctor.koriyama"),
        (started.id, "ended", "doctor.koriyama"),
    ]


async def test_a_limit_change_applies_and_is_told_to_everyone() -> None:
    bedside = Bedside()
    change = _relayed(
        {
            "type": "alarm-limits",
            "limits": [{"code": "spo2", "low": 88, "high": None, "delay_s": 15}],
            "from": "p-7",
            "by": "doctor.koriyama",
        }
    )
    assert isinstance(change, AlarmLimitsChange)
    bedside.alarms.change_limits(change)
    (limits,) = bedside.messages()
    assert isinstance(limits, AlarmLimits)
    assert limits.changed_by == "doctor.koriyama"
    assert limits.time == bedside.clock.now
    spo2 = next(x for x in limits.limits if x.code == "spo2")
    assert (spo2.low, spo2.high, spo2.delay_s, spo2.unit) == (88, None, 15, "%")
    assert {x.code for x in limits.limits} >= {"heart_rate", "spo2_desat", "nibp_sys"}
    # 89 % is no alarm now; 87 % is, after 15 s.
    bedside.spo2([89] * 20, 1)
    assert bedside.messages() == []
    bedside.spo2([87] * 16, 30)
    assert [m.condition for m in bedside.messages() if isinstance(m, Alarm)] == ["spo2_low"]
    # A change that cannot be: refused whole, and the limits in force told again.
    bad = _relayed(
        {
            "type": "alarm-limits",
            "limits": [{"code": "spo2", "low": 30, "delay_s": 10}],
            "by": "doctor.koriyama",
        }
    )
    bedside.alarms.change_limits(bad)
    (again,) = bedside.messages()
    assert isinstance(again, AlarmLimits)
    assert next(x for x in again.limits if x.code == "spo2").low == 88
    record = await bedside.journalled()
    assert [entry["changed_by"] for entry in record["limits"]] == ["doctor.koriyama"]


async def test_device_alarms_a_lost_device_and_the_greeting() -> None:
    bedside = Bedside()
    probe = DeviceAlarm(
        conditions.PROBE_OFF, AlarmPriority.LOW, AlarmKind.TECHNICAL, codes.SPO2, "SENSOR OFF"
    )
    now = bedside.clock.now
    bedside.alarms.handle(DeviceAlarms("oximeter-1", (probe,), now))
    (alarm,) = bedside.messages()
    assert isinstance(alarm, Alarm)
    assert (alarm.condition, alarm.kind, alarm.source, alarm.text, alarm.device) == (
        "probe_off",
        "technical",
        "device",
        "SENSOR OFF",
        "oximeter-1",
    )
    # A listener's connection closing is no lost device; a reader's silence is.
    lost = DeviceStatus("hl7@10.0.0.9:4001", DeviceState.DISCONNECTED, now + 1)
    bedside.alarms.handle(lost, link_states=False)
    assert bedside.messages() == []
    bedside.alarms.handle(DeviceStatus("oximeter-1", DeviceState.SILENT, now + 2, "no data"))
    changes = bedside.messages()
    assert sorted((m.condition, m.state) for m in changes if isinstance(m, Alarm)) == [
        ("disconnected", "active"),
        ("probe_off", "ended"),
    ]
    # A viewer connecting now: the limits first, then both (one ended recently).
    greeting = [parse_event(text) for text in bedside.alarms.greeting()]
    assert isinstance(greeting[0], AlarmLimits) and greeting[0].changed_by is None
    assert sorted((m.condition, m.state) for m in greeting[1:] if isinstance(m, Alarm)) == [
        ("disconnected", "active"),
        ("probe_off", "ended"),
    ]
    bedside.clock.now += 400  # long after the probe-off ended: no longer told
    greeting = [parse_event(text) for text in bedside.alarms.greeting()]
    assert [m.condition for m in greeting[1:] if isinstance(m, Alarm)] == ["disconnected"]


async def test_joining_a_consultation_journals_the_limits_and_active_alarms() -> None:
    bedside = Bedside()
    bedside.consultation = None
    bedside.spo2([86] * 11, 0)
    assert bedside.journal.unattached == 1  # the alarm, while in no consultation
    bedside.consultation = "c-2"
    bedside.alarms.joined()
    record = await bedside.journalled()
    assert [(a["condition"], a["state"]) for a in record["alarms"]] == [("spo2_low", "active")]
    assert len(record["limits"]) == 1 and record["limits"][0]["changed_by"] is None
