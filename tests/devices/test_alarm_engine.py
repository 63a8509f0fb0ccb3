"""The alarm engine on a driven clock: limit alarms with their delay and hysteresis, device
alarm lists, a lost device, acknowledgements, limit changes and the notifications."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from devices import codes
from devices.alarms import conditions
from devices.alarms.engine import (
    EVT_ALARM,
    EVT_LIMITS,
    AlarmEngine,
    AlarmRecord,
    AlarmSource,
    AlarmState,
    LimitsInForce,
)
from devices.alarms.limits import ADULT_DEFAULTS, LimitChange, LimitError, LimitSet, UnknownAlarm
from devices.codes import VitalCode
from devices.model import (
    AlarmKind,
    AlarmPriority,
    DeviceAlarm,
    DeviceAlarms,
    DeviceState,
    DeviceStatus,
    Observation,
    Quality,
)

DEVICE = "monitor-1"


def _engine() -> AlarmEngine:
    counter = itertools.count(1)
    return AlarmEngine(new_id=lambda: str(next(counter)))


def _value(
    code: VitalCode, value: float | None, at: float, quality: Quality = Quality.OK
) -> Observation:
    return Observation(code, value, DEVICE, at, None, quality)


def _feed(
    engine: AlarmEngine, code: VitalCode, values: Sequence[float | None], start: float = 0.0
) -> list[AlarmRecord]:
    """One value a second from ``start``; every change the engine made."""
    changes: list[AlarmRecord] = []
    for k, value in enumerate(values):
        changes += engine.observe(_value(code, value, start + k))
    return changes


def test_the_adult_defaults_are_the_documented_ones() -> None:
    table = {
        (limit.name, limit.low, limit.high, limit.priority, limit.delay_s)
        for limit in ADULT_DEFAULTS
    }
    assert table == {
        ("heart_rate", 50, 120, AlarmPriority.MEDIUM, 10.0),
        ("pulse_rate", 50, 120, AlarmPriority.MEDIUM, 10.0),
        ("spo2", 90, None, AlarmPriority.MEDIUM, 10.0),
        ("spo2_desat", 85, None, AlarmPriority.HIGH, 10.0),
        ("resp_rate", 8, 30, AlarmPriority.MEDIUM, 10.0),
        ("nibp_sys", 90, 160, AlarmPriority.MEDIUM, 0.0),
        ("nibp_dia", 50, 90, AlarmPriority.MEDIUM, 0.0),
        ("nibp_mean", 60, 110, AlarmPriority.MEDIUM, 0.0),
        ("temperature", 35.0, 38.5, AlarmPriority.MEDIUM, 10.0),
    }


def test_a_value_below_the_limit_alarms_only_after_the_delay() -> None:
    engine = _engine()
    assert _feed(engine, codes.SPO2, [97, 96]) == []
    # 86 % from t=2: nothing for 10 s, then one medium alarm at t=12, not another after.
    changes = _feed(engine, codes.SPO2, [86] * 10, start=2)
    assert changes == []
    changes = _feed(engine, codes.SPO2, [86, 86, 86], start=12)
    assert len(changes) == 1
    alarm = changes[0]
    assert (alarm.condition, alarm.priority, alarm.kind, alarm.source) == (
        "spo2_low",
        AlarmPriority.MEDIUM,
        AlarmKind.PHYSIOLOGICAL,
        AlarmSource.LIMIT,
    )
    assert (alarm.started, alarm.value, alarm.limit, alarm.unit, alarm.code) == (
        12,
        86,
        90,
        "%",
        "spo2",
    )
    assert alarm.id == "monitor-1:spo2_low:1"
    assert engine.active() == [alarm]


def test_one_noisy_value_does_not_alarm() -> None:
    engine = _engine()
    # Dips below 90 for 9 s at a time, each broken by one value inside: never an alarm.
    values = ([87.0] * 9 + [92.0]) * 4
    assert _feed(engine, codes.SPO2, values) == []
    # A single value far below is no alarm either.
    assert _feed(engine, codes.SPO2, [60, 97, 97], start=100) == []


def test_an_invalid_value_breaks_the_delay_and_is_no_evidence() -> None:
    engine = _engine()
    values: list[float | None] = [86.0] * 6 + [None] + [86.0] * 6
    assert _feed(engine, codes.SPO2, values) == []
    flagged = engine.observe(_value(codes.SPO2, 86, 13, Quality.ARTIFACT))
    assert flagged == []
    # ... but an active alarm stays active through invalid values.
    started = _feed(engine, codes.SPO2, [86.0] * 11, start=20)
    assert [c.state for c in started] == [AlarmState.ACTIVE]
    assert _feed(engine, codes.SPO2, [None, None], start=31) == []
    assert engine.active() != []


def test_hysteresis_keeps_a_hovering_value_from_chattering() -> None:
    engine = _engine()
    _feed(engine, codes.SPO2, [86.0] * 11)
    assert len(engine.active()) == 1
    # Back at the limit (90) and just inside it: still the same alarm, nothing sent.
    assert _feed(engine, codes.SPO2, [90, 89, 90, 90.5, 89, 90], start=11) == []
    # 91 (limit + 1 % hysteresis) ends it.
    ended = _feed(engine, codes.SPO2, [91], start=17)
    assert [(c.state, c.ended) for c in ended] == [(AlarmState.ENDED, 17)]
    # And it starts again only after a full delay below.
    assert _feed(engine, codes.SPO2, [89] * 10, start=18) == []
    again = _feed(engine, codes.SPO2, [89], start=28)
    assert [c.condition for c in again] == ["spo2_low"]
    assert again[0].id != ended[0].id


def test_the_desaturation_limit_is_a_second_high_priority_alarm() -> None:
    engine = _engine()
    changes = _feed(engine, codes.SPO2, [80.0] * 11)
    assert sorted((c.condition, c.priority, c.limit) for c in changes) == [
        ("spo2_desat", AlarmPriority.HIGH, 85),
        ("spo2_low", AlarmPriority.MEDIUM, 90),
    ]
    # Up to 87: the desaturation ends (>= 86), the low SpO2 goes on.
    ended = _feed(engine, codes.SPO2, [87], start=11)
    assert [(c.condition, c.state) for c in ended] == [("spo2_desat", AlarmState.ENDED)]


def test_high_limits_and_nibp_without_delay() -> None:
    engine = _engine()
    changes = _feed(engine, codes.HEART_RATE, [140.0] * 11)
    assert [(c.condition, c.value, c.limit) for c in changes] == [("heart_rate_high", 140, 120)]
    # One cuff measurement beyond the limit alarms at once.
    nibp = engine.observe(_value(codes.NIBP_SYS, 182, 20))
    assert [(c.condition, c.started) for c in nibp] == [("nibp_sys_high", 20)]
    # Parameters without limits (perfusion) never alarm.
    assert _feed(engine, codes.PERFUSION_INDEX, [0.01] * 20) == []


def test_tick_starts_an_alarm_between_values_but_not_on_stale_ones() -> None:
    engine = _engine()
    _feed(engine, codes.SPO2, [86.0] * 3)  # t = 0, 1, 2
    assert engine.tick(9.5) == []
    # No value since t=2: at t=10 the last one is 8 s old (stale after 5 s): no alarm.
    assert engine.tick(10.0) == []
    engine.observe(_value(codes.SPO2, 86, 8))
    started = engine.tick(10.0)
    assert [(c.condition, c.started) for c in started] == [("spo2_low", 10.0)]


def test_a_device_alarm_list_starts_changes_and_ends_alarms() -> None:
    engine = _engine()
    physiological = AlarmKind.PHYSIOLOGICAL
    desat = DeviceAlarm(
        conditions.SPO2_DESAT, AlarmPriority.MEDIUM, physiological, codes.SPO2, "**Desat"
    )
    leads = DeviceAlarm(
        conditions.LEADS_OFF, AlarmPriority.LOW, AlarmKind.TECHNICAL, None, "LEADS OFF"
    )
    first = engine.device_alarms(DeviceAlarms(DEVICE, (desat, leads), 5.0))
    assert sorted((c.condition, c.source, c.started) for c in first) == [
        ("leads_off", AlarmSource.DEVICE, 5.0),
        ("spo2_desat", AlarmSource.DEVICE, 5.0),
    ]
    # The same list again: nothing new.
    assert engine.device_alarms(DeviceAlarms(DEVICE, (leads, desat), 6.0)) == []
    by_condition = {c.condition: c for c in first}
    engine.acknowledge(by_condition["spo2_desat"].id, "doctor.koriyama", 6.5)
    # Escalated by the device: same alarm, higher priority, acknowledgement cleared.
    worse = DeviceAlarm(
        conditions.SPO2_DESAT, AlarmPriority.HIGH, physiological, codes.SPO2, "***Desat"
    )
    changed = engine.device_alarms(DeviceAlarms(DEVICE, (worse, leads), 7.0))
    assert [(c.id, c.priority, c.text, c.acknowledged_by) for c in changed] == [
        (by_condition["spo2_desat"].id, AlarmPriority.HIGH, "***Desat", None)
    ]
    # Leads back on: only that one ends.
    ended = engine.device_alarms(DeviceAlarms(DEVICE, (worse,), 8.0))
    assert [(c.condition, c.state, c.ended) for c in ended] == [
        ("leads_off", AlarmState.ENDED, 8.0)
    ]


def test_a_lost_device_is_a_technical_alarm_that_ends_what_it_said() -> None:
    engine = _engine()
    _feed(engine, codes.SPO2, [86.0] * 11)
    probe = DeviceAlarm(conditions.PROBE_OFF, AlarmPriority.LOW, AlarmKind.TECHNICAL)
    engine.device_alarms(DeviceAlarms(DEVICE, (probe,), 11.0))
    lost = engine.device_status(DeviceStatus(DEVICE, DeviceState.SILENT, 12.0, "no data for 5 s"))
    assert sorted((c.condition, c.state) for c in lost) == [
        ("disconnected", AlarmState.ACTIVE),
        ("probe_off", AlarmState.ENDED),
        ("spo2_low", AlarmState.ENDED),
    ]
    disconnected = next(c for c in lost if c.condition == "disconnected")
    assert (disconnected.kind, disconnected.priority, disconnected.text) == (
        AlarmKind.TECHNICAL,
        AlarmPriority.MEDIUM,
        "no data for 5 s",
    )
    # Still lost (the reader retries): one alarm, not one per attempt.
    assert engine.device_status(DeviceStatus(DEVICE, DeviceState.DISCONNECTED, 13.0)) == []
    assert engine.device_status(DeviceStatus(DEVICE, DeviceState.CONNECTING, 14.0)) == []
    back = engine.device_status(DeviceStatus(DEVICE, DeviceState.CONNECTED, 15.0))
    assert [(c.id, c.state) for c in back] == [(disconnected.id, AlarmState.ENDED)]
    # A value after the loss starts its delay afresh.
    assert _feed(engine, codes.SPO2, [86.0] * 10, start=16) == []


def test_acknowledgement_is_recorded_once() -> None:
    engine = _engine()
    (alarm,) = _feed(engine, codes.SPO2, [86.0] * 11)
    acked = engine.acknowledge(alarm.id, "doctor.koriyama", 12.0)
    assert acked is not None
    assert (acked.acknowledged_by, acked.acknowledged_at, acked.state) == (
        "doctor.koriyama",
        12.0,
        AlarmState.ACTIVE,
    )
    assert engine.acknowledge(alarm.id, "doctor.wonju", 13.0) is None
    assert engine.get(alarm.id).acknowledged_by == "doctor.koriyama"
    # Ending keeps the acknowledgement.
    (ended,) = _feed(engine, codes.SPO2, [95], start=14)
    assert (ended.state, ended.acknowledged_by) == (AlarmState.ENDED, "doctor.koriyama")
    with pytest.raises(UnknownAlarm):
        engine.acknowledge("nothing", "doctor.koriyama", 15.0)


def test_ended_alarms_are_kept_for_a_while_then_forgotten() -> None:
    engine = AlarmEngine(keep_ended_s=60.0)
    (alarm,) = _feed(engine, codes.SPO2, [86.0] * 11)
    _feed(engine, codes.SPO2, [95], start=11)
    engine.tick(70.0)
    assert [a.id for a in engine.alarms()] == [alarm.id]
    engine.tick(72.0)
    assert engine.alarms() == []


def test_changing_limits_ends_starts_and_revises_alarms() -> None:
    engine = _engine()
    (alarm,) = _feed(engine, codes.SPO2, [86.0] * 11)
    _feed(engine, codes.HEART_RATE, [112.0] * 3)
    limits, changes = engine.change_limits(
        [
            LimitChange("spo2", 85, None, 10),  # 86 is inside now: the alarm ends at once
            LimitChange("heart_rate", 50, 110, 5),  # 112 is beyond now: its delay starts
        ],
        "doctor.koriyama",
        20.0,
    )
    assert (limits.changed_by, limits.time, limits.limits["spo2"].low) == (
        "doctor.koriyama",
        20.0,
        85,
    )
    assert [(c.id, c.state) for c in changes] == [(alarm.id, AlarmState.ENDED)]
    assert engine.tick(24.0) == []
    assert engine.observe(_value(codes.HEART_RATE, 112, 24)) == []
    started = engine.observe(_value(codes.HEART_RATE, 112, 25))
    assert [(c.condition, c.limit) for c in started] == [("heart_rate_high", 110)]
    # Still beyond a changed limit: the alarm shows the new one.
    _, revised = engine.change_limits([LimitChange("heart_rate", 50, 105, 5)], "doctor", 26.0)
    assert [(c.id, c.limit, c.state) for c in revised] == [(started[0].id, 105, AlarmState.ACTIVE)]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (LimitChange("spo2", 40, None, 10), "outside 50..100"),
        (LimitChange("heart_rate", 120, 50, 10), "not below"),
        (LimitChange("heart_rate", 50, float("nan"), 10), "outside"),
        (LimitChange("heart_rate", 50, 120, 500), "delay"),
        (LimitChange("cardiac_output", 1, 2, 10), "not a limit here"),
    ],
)
def test_a_wrong_limit_change_is_refused_whole(change: LimitChange, reason: str) -> None:
    engine = _engine()
    before = engine.limits
    with pytest.raises(LimitError, match=reason):
        engine.change_limits([LimitChange("spo2", 88, None, 10), change], "doctor", 1.0)
    assert engine.limits is before
    assert LimitSet().changed([]).watching(codes.SPO2)[0].low == 90


def test_notifications_reach_every_handler_even_when_one_fails() -> None:
    engine = _engine()
    seen: list[AlarmRecord] = []
    limits: list[LimitsInForce] = []

    def broken(record: AlarmRecord) -> None:
        raise RuntimeError("a handler that fails")

    engine.notifier.bind(EVT_ALARM, broken)
    engine.notifier.bind(EVT_ALARM, seen.append)
    engine.notifier.bind(EVT_LIMITS, limits.append)
    changes = _feed(engine, codes.SPO2, [86.0] * 11)
    engine.acknowledge(changes[0].id, "doctor", 12.0)
    engine.change_limits([LimitChange("spo2", 85, None, 10)], "doctor", 13.0)
    assert [(r.state, r.acknowledged_by) for r in seen] == [
        (AlarmState.ACTIVE, None),
        (AlarmState.ACTIVE, "doctor"),
        (AlarmState.ENDED, "doctor"),
    ]
    assert [x.changed_by for x in limits] == ["doctor"]
    assert engine.notifier.failures == 3
    engine.notifier.unbind(EVT_ALARM, broken)
    assert engine.notifier.handlers(EVT_ALARM) == [seen.append]
