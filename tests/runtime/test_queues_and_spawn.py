"""DropOldestQueue keeps the newest items and counts the rest; spawn logs a task's failure."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime.queues import DropOldestQueue
from runtime.tasks import cancel_and_wait, spawn


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(3)
    dropped = [queue.put_latest(k) for k in range(5)]
    assert dropped == [False, False, False, True, True]
    assert queue.dropped == 2
    assert [queue.get_nowait() for _ in range(3)] == [2, 3, 4]


def test_an_unbounded_drop_oldest_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="positive maxsize"):
        DropOldestQueue[int](0)


async def test_a_spawned_task_that_fails_is_logged_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("the device vanished")

    caplog.set_level(logging.ERROR, logger="runtime.tasks")
    task = spawn(broken(), "reader-1")
    await asyncio.wait([task])
    await asyncio.sleep(0)  # done-callbacks run on the next loop iteration
    assert any(
        "reader-1" in r.getMessage() and "the device vanished" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(RuntimeError):
        await cancel_and_wait([task])


async def test_a_cancelled_spawned_task_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="runtime.tasks")
    task = spawn(asyncio.sleep(3600), "idle")
    await asyncio.sleep(0)
    await cancel_and_wait([task])
    await asyncio.sleep(0)
    assert not caplog.records
