"""The bedside's record in the database, on SQLite and PostgreSQL: one row per parameter,
device and second (the latest), idempotent uploads, alarms that only move forward, trends
downsampled with their gaps, retention."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from signaling.api_models import AlarmIn, RecordIn
from signaling.auth import Principal
from signaling.config import DEFAULT_SITES
from signaling.consultation_fsm import ConsultationEvent
from signaling.errors import InvalidRequest
from signaling.schema import Role
from signaling.storage import accounts, consultations, vitals
from signaling.storage.database import Database
from signaling.storage.models import utcnow

T0 = 1_800_000_000  # a whole second


async def _consultation(db: Database) -> str:
    await accounts.sync_sites(db, DEFAULT_SITES)
    tw = await accounts.add_user(db, "tw", "password-w", Role.TECHNICIAN, "wonju", "T W")
    dk = await accounts.add_user(db, "dk", "password-k", Role.DOCTOR, "koriyama", "D K")
    requester = Principal(tw.kind, tw.id, tw.name, tw.role, tw.site, "s1")
    doctor = Principal(dk.kind, dk.id, dk.name, dk.role, dk.site, "s2")
    row = await consultations.create(db, requester, "koriyama", False, "")
    await consultations.transition(db, doctor, row.id, ConsultationEvent.ACCEPT)
    return row.id


def _numeric(code: str, value: float | None, time: float, **extra: Any) -> dict[str, Any]:
    return {
        "device": extra.pop("device", "monitor-1"),
        "code": code,
        "unit": extra.pop("unit", "/min"),
        "value": value,
        "time": time,
        **extra,
    }


def _alarm(**fields: Any) -> dict[str, Any]:
    alarm = {
        "id": "a-1",
        "device": "monitor-1",
        "code": "spo2",
        "condition": "spo2_low",
        "priority": "medium",
        "kind": "physiological",
        "source": "limit",
        "state": "active",
        "started": T0 + 5.0,
        "value": 86.0,
        "limit": 90.0,
        "unit": "%",
    }
    alarm.update(fields)
    return alarm


async def _store(db: Database, cid: str, **body: Any) -> vitals.Stored:
    return await vitals.store_record(db, cid, 7, RecordIn.model_validate(body), utcnow())


async def test_one_row_per_parameter_device_and_second_the_latest(db: Database) -> None:
    cid = await _consultation(db)
    stored = await _store(
        db,
        cid,
        numerics=[
            _numeric("heart_rate", 70, T0 + 0.2),
            _numeric("heart_rate", 71, T0 + 0.7),  # the same second, later: kept
            _numeric("heart_rate", 69, T0 + 0.5),  # the same second, earlier: not
            _numeric("heart_rate", 80, T0 + 0.9, device="oximeter-1"),  # another device
            _numeric("heart_rate", 78, T0 + 0.9, derived=True),  # derived is its own series
            _numeric("heart_rate", None, T0 + 1.1, quality=["invalid"]),
        ],
    )
    assert (stored.numerics, stored.alarms, stored.limits) == (4, 0, [])
    found = {(s.device, s.code, s.derived): s for s in await vitals.series(db, cid)}
    assert set(found) == {
        ("monitor-1", "heart_rate", False),
        ("monitor-1", "heart_rate", True),
        ("oximeter-1", "heart_rate", False),
    }
    values = await vitals.numerics(db, found["monitor-1", "heart_rate", False].id)
    assert [(v.second, v.value, v.quality) for v in values] == [
        (T0, 71.0, []),
        (T0 + 1, None, ["invalid"]),
    ]

    # Replayed: nothing changes. A later value of a stored second replaces it; an earlier
    # one does not.
    again = await _store(
        db,
        cid,
        numerics=[
            _numeric("heart_rate", 70, T0 + 0.2),
            _numeric("heart_rate", 71, T0 + 0.7),
            _numeric("heart_rate", 80, T0 + 0.9, device="oximeter-1"),
        ],
    )
    assert again.numerics == 0
    later = await _store(
        db,
        cid,
        numerics=[_numeric("heart_rate", 72, T0 + 0.8), _numeric("heart_rate", 60, T0 + 0.1)],
    )
    assert later.numerics == 1
    values = await vitals.numerics(db, found["monitor-1", "heart_rate", False].id)
    assert values[0].value == 72.0


async def test_a_unit_other_than_the_series_is_refused(db: Database) -> None:
    cid = await _consultation(db)
    await _store(db, cid, numerics=[_numeric("temperature", 37.0, T0, unit="Cel")])
    with pytest.raises(InvalidRequest, match="Cel"):
        await _store(db, cid, numerics=[_numeric("temperature", 99.0, T0 + 1, unit="[degF]")])
    # The refused upload stored nothing of itself.
    [series] = await vitals.series(db, cid)
    assert [v.value for v in await vitals.numerics(db, series.id)] == [37.0]


async def test_alarms_move_forward_only(db: Database) -> None:
    cid = await _consultation(db)
    assert (await _store(db, cid, alarms=[_alarm()])).alarms == 1
    assert (await _store(db, cid, alarms=[_alarm()])).alarms == 0  # replayed
    acked = _alarm(acknowledged_by="Dr K", acknowledged_at=T0 + 9.0)
    ended = _alarm(state="ended", ended=T0 + 20.0, acknowledged_by="Dr K", acknowledged_at=T0 + 9.0)
    assert (await _store(db, cid, alarms=[acked, ended])).alarms == 1
    # An older report arriving late (a replay from before the end) does not revive it.
    assert (await _store(db, cid, alarms=[_alarm()])).alarms == 0
    [alarm] = await vitals.alarms(db, cid)
    assert (alarm.id, alarm.state, alarm.ended) == ("a-1", "ended", T0 + 20.0)
    assert (alarm.acknowledged_by, alarm.acknowledged_at) == ("Dr K", T0 + 9.0)
    assert (alarm.value, alarm.limit, alarm.unit) == (86.0, 90.0, "%")


def test_merge_keeps_the_start_the_end_and_the_acknowledgement() -> None:
    stored = vitals.merge_alarm(
        None, AlarmIn.model_validate(_alarm(state="ended", ended=T0 + 30.0))
    )
    later = vitals.merge_alarm(
        stored, AlarmIn.model_validate(_alarm(started=T0 + 6.0, text="late copy"))
    )
    assert later["state"] == "ended"
    assert later["ended"] == T0 + 30.0
    assert later["started"] == T0 + 5.0
    assert later["text"] == "late copy"


async def test_limits_are_stored_once_per_time(db: Database) -> None:
    cid = await _consultation(db)
    report = {
        "limits": [{"code": "spo2", "low": 90.0, "delay_s": 10.0, "unit": "%"}],
        "changed_by": "Dr K",
        "time": T0 + 3.0,
    }
    first = await _store(db, cid, limits=[report])
    assert [r.changed_by for r in first.limits] == ["Dr K"]
    assert vitals.limits_json(first.limits[0]) == (
        '[{"code":"spo2","low":90.0,"delay_s":10.0,"unit":"%"}]'
    )
    assert (await _store(db, cid, limits=[report])).limits == []


async def test_trends_are_means_per_step_with_their_gaps(db: Database) -> None:
    cid = await _consultation(db)
    values: list[dict[str, Any]] = []
    # 0..9 s: 60..69; 10..19 s: nothing (a hole); 20..24 s: no valid value; 25..29 s: 90.
    values += [_numeric("heart_rate", 60 + k, T0 + k + 0.5) for k in range(10)]
    values += [_numeric("heart_rate", None, T0 + k + 0.5) for k in range(20, 25)]
    values += [_numeric("heart_rate", 90, T0 + k + 0.5) for k in range(25, 30)]
    values += [_numeric("spo2", 97, T0 + k + 0.5, unit="%") for k in range(30)]
    await _store(db, cid, numerics=values)

    [hr] = await vitals.trends(db, cid, ["heart_rate"], T0, T0 + 30, 5)
    assert (hr.device, hr.code, hr.unit, hr.derived) == ("monitor-1", "heart_rate", "/min", False)
    assert hr.points == [
        (T0, 62.0),
        (T0 + 5, 67.0),
        (T0 + 10, None),  # the hole, marked once
        (T0 + 20, None),  # no valid value: a gap too
        (T0 + 25, 90.0),
    ]
    both = await vitals.trends(db, cid, None, T0 + 28, T0 + 30, 1)
    assert [(s.code, s.points) for s in both] == [
        ("heart_rate", [(T0 + 28, 90.0), (T0 + 29, 90.0)]),
        ("spo2", [(T0 + 28, 97.0), (T0 + 29, 97.0)]),
    ]
    assert await vitals.trends(db, cid, ["temperature"], T0, T0 + 30, 1) == []


async def test_alarms_overlapping_a_window(db: Database) -> None:
    cid = await _consultation(db)
    await _store(
        db,
        cid,
        alarms=[
            _alarm(id="early", started=T0, state="ended", ended=T0 + 10.0),
            _alarm(id="open", started=T0 + 50.0),
            _alarm(id="late", started=T0 + 200.0, state="ended", ended=T0 + 210.0),
        ],
    )
    ids = [a.id for a in await vitals.alarms(db, cid, T0 + 20, T0 + 100)]
    assert ids == ["open"]
    ids = [a.id for a in await vitals.alarms(db, cid, T0 + 5, T0 + 300)]
    assert ids == ["early", "open", "late"]


async def test_retention_deletes_what_is_older(db: Database) -> None:
    cid = await _consultation(db)
    old = [_numeric("spo2", 97, T0 + k * 900.0, unit="%") for k in range(8)]  # two hours
    await _store(db, cid, numerics=old, alarms=[_alarm(state="ended", ended=T0 + 10.0)])
    deleted = await vitals.delete_older_than(db, T0 + 4500.0)
    assert deleted == 5
    [series] = await vitals.series(db, cid)
    assert [v.second for v in await vitals.numerics(db, series.id)] == [
        T0 + 4500,
        T0 + 5400,
        T0 + 6300,
    ]
    assert await vitals.alarms(db, cid) == []
    assert datetime.fromtimestamp(T0, UTC).year >= 2027  # the test's times are realistic
