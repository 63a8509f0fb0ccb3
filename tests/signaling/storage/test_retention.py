"""The retention task: at start and then every interval it deletes the bedside's record
older than the retention period; a round that fails is logged and the next one runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime.clock import ManualClock
from signaling.api_models import RecordIn
from signaling.server.retention import Retention
from signaling.storage import vitals
from signaling.storage.database import Database
from signaling.storage.models import utcnow
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
