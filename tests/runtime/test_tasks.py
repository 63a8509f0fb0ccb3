"""cancel_and_wait: every task stopped, failures not lost, the caller's own cancel kept."""

from __future__ import annotations

import asyncio

import pytest

from runtime.tasks import cancel_and_wait


async def _slow_to_stop(stopped: list[str]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)  # closing a device or a socket takes a moment
        stopped.append("child")
        raise


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    stopped: list[str] = []
    after: list[str] = []

    async def owner() -> None:
        child = asyncio.create_task(_slow_to_stop(stopped))
        await asyncio.sleep(0)
        await cancel_and_wait([child])
        after.append("ran on")  # must not happen: the owner was cancelled meanwhile

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.05)  # the owner is waiting for its child to stop
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []


async def test_all_stop_and_unexpected_failures_are_raised() -> None:
    stopped: list[str] = []

    async def broken() -> None:
        raise KeyError("lost")

    async def refused() -> None:
        raise PermissionError("key refused")

    tasks = [asyncio.create_task(_slow_to_stop(stopped)) for _ in range(3)]
    failing = asyncio.create_task(refused())
    await asyncio.sleep(0.01)
    await cancel_and_wait([*tasks, failing], PermissionError)  # expected: let be
    assert stopped == ["child"] * 3 and all(t.cancelled() for t in tasks)
    bad = asyncio.create_task(broken())
    await asyncio.sleep(0.01)
    with pytest.raises(KeyError):
        await cancel_and_wait([bad])
