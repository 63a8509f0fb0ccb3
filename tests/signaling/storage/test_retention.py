"""The retention task: at start and then every interval it deletes the bedside's record
older than the retention period; a round that fails is logged and the next one runs."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from runtime.clock import ManualClock
from signaling.api_models import RecordIn
from signaling.imaging.files import InstanceFiles, InstanceKey
from signaling.server.retention import ImagingRetention, Retention
from signaling.storage import imaging as storage_imaging
from signaling.storage import vitals
from signaling.storage.audit import AuditLog
from signaling.storage.database import Database
from signaling.storage.models import AuditEventRow, ImagingInstanceRow, utcnow
from tests.signaling.storage.test_vitals_storage import _consultation, _numeric

DAY = 86_400.0
T0 = 1_800_000_000


async def test_rounds_delete_what_is_older_than_the_period(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    cid = await _consultation(db)
    values = [_numeric("spo2", 97, T0 + k * DAY, unit="%") for k in range(5)]
    await vitals.store_record(db, cid, 1, RecordIn.model_validate({"numerics": values}), utcnow())
    clock = ManualClock(wall=T0 + 3 * DAY + 10)
    rounds: asyncio.Queue[float] = asyncio.Queue()
    go = asyncio.Event()

    async def sleep(interval: float) -> None:
        rounds.put_nowait(interval)
        await go.wait()
        go.clear()

    retention = Retention(db, 2, 3600.0, clock=clock, sleep=sleep)
    with caplog.at_level(logging.INFO, "signaling.server.retention"):
        retention.start()
        try:
            assert await rounds.get() == 3600.0  # the first round ran at start
            [series] = await vitals.series(db, cid)
            assert [v.second for v in await vitals.numerics(db, series.id)] == [
                T0 + 2 * DAY,
                T0 + 3 * DAY,
                T0 + 4 * DAY,
            ]
            clock.advance(DAY)
            go.set()
            await rounds.get()
            assert (retention.rounds, retention.deleted) == (2, 3)
        finally:
            await retention.stop()
    assert "deleted 2 numerics older than 2 days" in caplog.text


async def test_a_failed_round_is_logged_and_the_task_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: asyncio.Queue[float] = asyncio.Queue()

    async def sleep(interval: float) -> None:
        rounds.put_nowait(interval)
        await asyncio.sleep(0)

    # A database whose directory does not exist: every round fails.
    broken = Database("sqlite+aiosqlite:////nonexistent-dir/x.sqlite3")
    retention = Retention(broken, 2, 1.0, sleep=sleep)
    with caplog.at_level(logging.ERROR, "signaling.server.retention"):
        retention.start()
        try:
            for _ in range(3):
                await rounds.get()
        finally:
            await retention.stop()
            await broken.close()
    assert caplog.text.count("retention round failed") >= 3
    assert retention.rounds == 0


async def test_images_past_their_period_go_file_first_and_are_audited(
    db: Database, tmp_path: Path
) -> None:
    cid = await _consultation(db)
    files = InstanceFiles(tmp_path / "imaging")
    stored = [datetime.fromtimestamp(T0 + k * DAY, UTC) for k in range(4)]
    keys = [InstanceKey(cid, "1.2.3", f"1.2.3.{k % 2}", f"1.2.3.{k % 2}.{k}") for k in range(4)]
    for key, at in zip(keys, stored, strict=True):
        files.commit(key, files.stage(key, b"DICM" + key.sop.encode()))
        assert await storage_imaging.add(db, _row(key, stored_at=at))
    # An index row whose file went in a round cut short: the next round still deletes it.
    files.remove(keys[0])
    clock = ManualClock(wall=T0 + 3 * DAY + 10)
    policy = ImagingRetention(files, 2, AuditLog(db))
    retention = Retention(db, 730, 3600.0, clock=clock, imaging=policy)

    await retention.run_once()

    assert retention.instances_deleted == 2
    left = await storage_imaging.instances(db, cid)
    assert [r.sop_instance_uid for r in left] == [keys[2].sop, keys[3].sop]
    assert [files.read(k) is not None for k in keys] == [False, False, True, True]
    async with db.session() as session:
        [event] = (
            await session.scalars(
                select(AuditEventRow).where(AuditEventRow.action == "imaging.expired")
            )
        ).all()
    assert event.consultation_id == cid
    assert json.loads(event.detail) == {"instances": 2, "retention_days": 2}

    clock.advance(2 * DAY)  # now all four are past the period
    await retention.run_once()
    assert await storage_imaging.instances(db, cid) == []
    assert not (tmp_path / "imaging" / cid).exists()  # empty directories pruned too
    assert retention.instances_deleted == 4


def _row(key: InstanceKey, stored_at: datetime) -> ImagingInstanceRow:
    return ImagingInstanceRow(
        consultation_id=key.consultation_id,
        study_instance_uid=key.study,
        series_instance_uid=key.series,
        sop_instance_uid=key.sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality="OT",
        frames=1,
        rows=1,
        columns=1,
        patient_name="",
        patient_id="",
        study_date="",
        study_time="",
        study_description="",
        accession_number="",
        series_number=None,
        series_description="",
        instance_number=None,
        sha256="0" * 64,
        deidentified=True,
        size=8,
        stored_at=stored_at,
        sender_kind="gateway",
        sender_id=1,
        sender_name="gw",
    )
