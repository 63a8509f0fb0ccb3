"""The bedside's record kept with a consultation: numerics, alarms and alarm limits.

A gateway uploads what it measured (:func:`store_record`); the room reads trends back
(:func:`trends`), the standards exports read everything (:func:`numerics`, :func:`alarms`).

Storing is idempotent, so a gateway may send a batch again whenever it is not sure the
server took it (a lost answer, a restart):

- **numerics**: at most one row per series (consultation, device, parameter, derived or
  not) and second, the latest of that second by the gateway's receive time. One upsert
  statement per chunk: a row is replaced only by a strictly later value, so a replayed
  batch changes nothing.
- **alarms**: one row per (consultation, gateway, the gateway's alarm id), merged so that
  what only moves forward never moves back: an alarm that ended stays ended, an
  acknowledgement stays.
- **limits**: one row per (consultation, gateway, time they took effect).

Every count returned is of rows added or changed: 0 for a replayed batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from signaling.api_models import AlarmIn, AlarmOut, LimitsIn, NumericIn, RecordIn, SeriesOut
from signaling.errors import InvalidRequest
from signaling.storage.database import Database
from signaling.storage.models import (
    AlarmLimitsRow,
    VitalAlarmRow,
    VitalNumericRow,
    VitalSeriesRow,
)

#: Rows per INSERT statement: far below SQLite's 32,766 bound parameters at 6 columns.
_CHUNK = 500
#: Retention deletes at most this many seconds of numerics per statement, so that no one
#: transaction holds the database for long.
_DELETE_SPAN_S = 3600

SeriesKey = tuple[str, str, bool]


@dataclass(frozen=True)
class Stored:
    """What an upload added or changed; ``limits`` are the limit reports new to the server
    (the route audits each)."""

    numerics: int
    alarms: int
    limits: list[LimitsIn]


def _insert(db: Database) -> Any:
    return postgresql_insert if db.dialect == "postgresql" else sqlite_insert


async def store_record(
    db: Database, consultation_id: str, gateway_id: int, record: RecordIn, now: datetime
) -> Stored:
    """Store one upload of a gateway, in one transaction. Raises :class:`InvalidRequest`
    when a parameter arrives in another unit than the one its series was stored in."""
    async with db.session() as session:
        numerics = await _store_numerics(db, session, consultation_id, record.numerics)
        alarms = await _store_alarms(db, session, consultation_id, gateway_id, record.alarms, now)
        limits = await _store_limits(db, session, consultation_id, gateway_id, record.limits)
    return Stored(numerics, alarms, limits)


# -- numerics --------------------------------------------------------------------------------


def _latest_per_second(values: Iterable[NumericIn]) -> dict[tuple[SeriesKey, int], NumericIn]:
    """One value per series and second: the latest (the last given, on a tie)."""
    latest: dict[tuple[SeriesKey, int], NumericIn] = {}
    for value in values:
        key = ((value.device, value.code, value.derived), int(value.time))
        kept = latest.get(key)
        if kept is None or value.time >= kept.time:
            latest[key] = value
    return latest


async def _series_ids(
    db: Database, session: AsyncSession, consultation_id: str, values: Sequence[NumericIn]
) -> dict[SeriesKey, int]:
    first: dict[SeriesKey, NumericIn] = {}
    for value in values:
        first.setdefault((value.device, value.code, value.derived), value)
    if not first:
        return {}
    rows = [
        {
            "consultation_id": consultation_id,
            "device": v.device,
            "code": v.code,
            "derived": v.derived,
            "unit": v.unit,
            "mdc": v.mdc,
            "refid": v.refid,
            "loinc": v.loinc,
        }
        for v in first.values()
    ]
    statement = _insert(db)(VitalSeriesRow).values(rows).on_conflict_do_nothing()
    await session.execute(statement)
    found = await session.execute(
        select(
            VitalSeriesRow.id,
            VitalSeriesRow.device,
            VitalSeriesRow.code,
            VitalSeriesRow.derived,
            VitalSeriesRow.unit,
        ).where(
            VitalSeriesRow.consultation_id == consultation_id,
            VitalSeriesRow.device.in_({k[0] for k in first}),
            VitalSeriesRow.code.in_({k[1] for k in first}),
        )
    )
    ids: dict[SeriesKey, int] = {}
    for sid, device, code, derived, unit in found:
        key = (device, code, bool(derived))
        given = first.get(key)
        if given is None:
            continue
        if given.unit != unit:
            raise InvalidRequest(
                f"{code} of {device} is stored in {unit!r}; this upload says {given.unit!r}"
            )
        ids[key] = sid
    return ids


async def _store_numerics(
    db: Database, session: AsyncSession, consultation_id: str, values: Sequence[NumericIn]
) -> int:
    latest = _latest_per_second(values)
    series = await _series_ids(db, session, consultation_id, list(latest.values()))
    rows = [
        {
            "series_id": series[key],
            "second": second,
            "value": v.value,
            "time": v.time,
            "device_time": v.device_time,
            "quality": ",".join(v.quality),
        }
        for (key, second), v in latest.items()
    ]
    changed = 0
    insert = _insert(db)
    for start in range(0, len(rows), _CHUNK):
        statement = insert(VitalNumericRow).values(rows[start : start + _CHUNK])
        statement = statement.on_conflict_do_update(
            index_elements=[VitalNumericRow.series_id, VitalNumericRow.second],
            set_={
                "value": statement.excluded.value,
                "time": statement.excluded.time,
                "device_time": statement.excluded.device_time,
                "quality": statement.excluded.quality,
            },
            # Only a later value replaces the one stored: a replay changes nothing.
            where=statement.excluded.time > VitalNumericRow.time,
        ).returning(VitalNumericRow.second)
        changed += len((await session.execute(statement)).all())
    return changed


# -- alarms ----------------------------------------------------------------------------------

_ALARM_FIELDS = (
    "device",
    "code",
    "condition",
    "text",
    "priority",
    "kind",
    "source",
    "state",
    "started",
    "ended",
    "value",
    "limit",
    "unit",
    "acknowledged_by",
    "acknowledged_at",
)


def merge_alarm(old: dict[str, Any] | None, new: AlarmIn) -> dict[str, Any]:
    """The alarm's fields after ``new`` (what the gateway says now) on top of ``old`` (what
    is stored): ``new`` wins, except that an end and an acknowledgement once known are kept
    and the start never moves (a report replayed out of order cannot undo them)."""
    merged = {name: getattr(new, name) for name in _ALARM_FIELDS}
    if old is None:
        return merged
    merged["started"] = old["started"]
    if old["state"] == "ended":
        merged["state"] = "ended"
        merged["ended"] = old["ended"] if old["ended"] is not None else merged["ended"]
    if old["acknowledged_at"] is not None:
        merged["acknowledged_by"] = old["acknowledged_by"]
        merged["acknowledged_at"] = old["acknowledged_at"]
    return merged


def _alarm_fields(row: VitalAlarmRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _ALARM_FIELDS}


async def _store_alarms(
    db: Database,
    session: AsyncSession,
    consultation_id: str,
    gateway_id: int,
    reports: Sequence[AlarmIn],
    now: datetime,
) -> int:
    if not reports:
        return 0
    existing = await session.scalars(
        select(VitalAlarmRow).where(
            VitalAlarmRow.consultation_id == consultation_id,
            VitalAlarmRow.gateway_id == gateway_id,
            VitalAlarmRow.alarm_id.in_({r.id for r in reports}),
        )
    )
    stored = {row.alarm_id: _alarm_fields(row) for row in existing}
    current = dict(stored)
    for report in reports:  # in the order the gateway saw the changes
        current[report.id] = merge_alarm(current.get(report.id), report)
    changed = {aid: fields for aid, fields in current.items() if stored.get(aid) != fields}
    if not changed:
        return 0
    rows = [
        {
            "consultation_id": consultation_id,
            "gateway_id": gateway_id,
            "alarm_id": aid,
            **{("limit_value" if k == "limit" else k): v for k, v in fields.items()},
            "updated_at": now,
        }
        for aid, fields in changed.items()
    ]
    statement = _insert(db)(VitalAlarmRow).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[
            VitalAlarmRow.consultation_id,
            VitalAlarmRow.gateway_id,
            VitalAlarmRow.alarm_id,
        ],
        set_={
            column: statement.excluded[column]
            for column in (*(c.name for c in VitalAlarmRow.__table__.c),)
            if column not in ("id", "consultation_id", "gateway_id", "alarm_id")
        },
    )
    await session.execute(statement)
    return len(changed)


# -- limits ----------------------------------------------------------------------------------


async def _store_limits(
    db: Database,
    session: AsyncSession,
    consultation_id: str,
    gateway_id: int,
    reports: Sequence[LimitsIn],
) -> list[LimitsIn]:
    new: list[LimitsIn] = []
    for report in {r.time: r for r in reports}.values():
        statement = (
            _insert(db)(AlarmLimitsRow)
            .values(
                consultation_id=consultation_id,
                gateway_id=gateway_id,
                time=report.time,
                changed_by=report.changed_by,
                limits=limits_json(report),
            )
            .on_conflict_do_nothing()
            .returning(AlarmLimitsRow.id)
        )
        if (await session.execute(statement)).first() is not None:
            new.append(report)
    return new


def limits_json(report: LimitsIn) -> str:
    """The limits as compact JSON (what is stored and audited)."""
    return json.dumps(
        [limit.model_dump(exclude_none=True) for limit in report.limits], separators=(",", ":")
    )


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    id: int
    device: str
    code: str
    derived: bool
    unit: str
    mdc: int | None
    refid: str | None
    loinc: str | None


async def series(
    db: Database, consultation_id: str, codes: Sequence[str] | None = None
) -> list[Series]:
    """The consultation's series (those of ``codes`` only, when given), by device and code."""
    query = (
        select(VitalSeriesRow)
        .where(VitalSeriesRow.consultation_id == consultation_id)
        .order_by(VitalSeriesRow.device, VitalSeriesRow.code, VitalSeriesRow.derived)
    )
    if codes is not None:
        query = query.where(VitalSeriesRow.code.in_(list(codes)))
    async with db.session() as session:
        return [
            Series(r.id, r.device, r.code, r.derived, r.unit, r.mdc, r.refid, r.loinc)
            for r in await session.scalars(query)
        ]


async def trends(
    db: Database,
    consultation_id: str,
    codes: Sequence[str] | None,
    since: int,
    until: int,
    step: int,
) -> list[SeriesOut]:
    """Each series in ``[since, until)``, the mean of each ``step`` seconds that has rows
    (null when none of them had a value), with a null point after every run of data that
    the next does not continue (:class:`~signaling.api_models.SeriesOut`)."""
    found = await series(db, consultation_id, codes)
    if not found:
        return []
    bucket = ((VitalNumericRow.second - since) // step).label("bucket")
    query = (
        select(VitalNumericRow.series_id, bucket, func.avg(VitalNumericRow.value))
        .where(
            VitalNumericRow.series_id.in_([s.id for s in found]),
            VitalNumericRow.second >= since,
            VitalNumericRow.second < until,
        )
        .group_by(VitalNumericRow.series_id, bucket)
        .order_by(VitalNumericRow.series_id, bucket)
    )
    points: dict[int, list[tuple[int, float | None]]] = {s.id: [] for s in found}
    last: dict[int, int] = {}
    async with db.session() as session:
        for series_id, index, mean in await session.execute(query):
            index = int(index)
            run = points[series_id]
            before = last.get(series_id)
            if before is not None and index > before + 1:
                run.append((since + (before + 1) * step, None))
            last[series_id] = index
            run.append((since + index * step, None if mean is None else float(mean)))
    return [
        SeriesOut(
            device=s.device,
            code=s.code,
            unit=s.unit,
            derived=s.derived,
            mdc=s.mdc,
            refid=s.refid,
            loinc=s.loinc,
            points=points[s.id],
        )
        for s in found
        if points[s.id]
    ]


@dataclass(frozen=True)
class Value:
    second: int
    value: float | None
    time: float
    device_time: float | None
    quality: list[str]


async def numerics(db: Database, series_id: int) -> list[Value]:
    """Every stored value of one series, oldest first (for the exports)."""
    query = (
        select(VitalNumericRow)
        .where(VitalNumericRow.series_id == series_id)
        .order_by(VitalNumericRow.second)
    )
    async with db.session() as session:
        return [
            Value(
                r.second,
                r.value,
                r.time,
                r.device_time,
                [q for q in r.quality.split(",") if q],
            )
            for r in await session.scalars(query)
        ]


def _alarm_out(row: VitalAlarmRow) -> AlarmOut:
    return AlarmOut(id=row.alarm_id, **_alarm_fields(row))


async def alarms(
    db: Database, consultation_id: str, since: float | None = None, until: float | None = None
) -> list[AlarmOut]:
    """The consultation's alarms (those overlapping ``[since, until)`` when given), in the
    order they started."""
    query = select(VitalAlarmRow).where(VitalAlarmRow.consultation_id == consultation_id)
    if until is not None:
        query = query.where(VitalAlarmRow.started < until)
    if since is not None:
        query = query.where(or_(VitalAlarmRow.ended.is_(None), VitalAlarmRow.ended >= since))
    query = query.order_by(VitalAlarmRow.started, VitalAlarmRow.id)
    async with db.session() as session:
        return [_alarm_out(row) for row in await session.scalars(query)]


async def delete_older_than(db: Database, cutoff: float) -> int:
    """Retention: delete numerics measured, alarms ended (or started, if they never ended)
    and limit reports made before ``cutoff`` (s since the epoch). Numerics go an hour of
    them per transaction. Returns how many numerics were deleted."""
    deleted = 0
    while True:
        async with db.session() as session:
            oldest = await session.scalar(select(func.min(VitalNumericRow.second)))
            if oldest is None or oldest >= cutoff:
                break
            upto = min(int(cutoff), int(oldest) + _DELETE_SPAN_S)
            result = await session.execute(
                delete(VitalNumericRow)
                .where(VitalNumericRow.second < upto)
                .execution_options(synchronize_session=False)
            )
            deleted += int(getattr(result, "rowcount", 0) or 0)
    async with db.session() as session:
        await session.execute(
            delete(VitalAlarmRow)
            .where(
                or_(
                    VitalAlarmRow.ended < cutoff,
                    and_(VitalAlarmRow.ended.is_(None), VitalAlarmRow.started < cutoff),
                )
            )
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            delete(AlarmLimitsRow)
            .where(AlarmLimitsRow.time < cutoff)
            .execution_options(synchronize_session=False)
        )
    return deleted


async def measured_seconds(
    db: Database, consultation_id: str, since: int, until: int, step: int
) -> dict[SeriesKey, set[int]]:
    """For each series, the starts of the steps in ``[since, until)`` that hold a row (with
    a value or without one): what was measured, as opposed to a trend's gap marks."""
    bucket = ((VitalNumericRow.second - since) // step).label("bucket")
    query = (
        select(VitalSeriesRow.device, VitalSeriesRow.code, VitalSeriesRow.derived, bucket)
        .join(VitalSeriesRow, VitalSeriesRow.id == VitalNumericRow.series_id)
        .where(
            VitalSeriesRow.consultation_id == consultation_id,
            VitalNumericRow.second >= since,
            VitalNumericRow.second < until,
        )
        .group_by(VitalSeriesRow.device, VitalSeriesRow.code, VitalSeriesRow.derived, bucket)
    )
    found: dict[SeriesKey, set[int]] = {}
    async with db.session() as session:
        for device, code, derived, index in await session.execute(query):
            found.setdefault((device, code, bool(derived)), set()).add(since + int(index) * step)
    return found
