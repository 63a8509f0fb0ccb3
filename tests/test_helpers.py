"""The suite's own helpers: polling that names what it waited for."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.helpers import eventually


async def test_eventually_returns_the_first_true_value_of_a_sync_or_async_predicate() -> None:
    calls: list[int] = []

    def sync() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert await eventually(sync, interval=0) == 3

    async def asynchronous() -> str:
        return "ready"

    assert await eventually(asynchronous) == "ready"


async def test_eventually_names_what_it_waited_for_and_the_last_value() -> None:
    seen: list[str] = []
    with pytest.raises(AssertionError, match=r"len\(seen\) >= 1.*last: False"):
        await eventually(lambda: len(seen) >= 1, timeout=0.05)
    with pytest.raises(AssertionError, match="the doctor's offer"):
        await eventually(lambda: None, timeout=0.05, what="the doctor's offer")


async def test_eventually_lets_the_predicates_own_errors_through() -> None:
    def broken() -> bool:
        raise TimeoutError("the predicate's own")

    with pytest.raises(TimeoutError, match="the predicate's own"):
        await eventually(broken, timeout=5)


async def test_the_suite_runs_in_asyncio_debug_mode() -> None:
    # However pytest is started (`pytest -k`, an IDE): pyproject's asyncio_debug for the test
    # loops, PYTHONASYNCIODEBUG (tests/conftest.py) for asyncio.run and child processes.
    assert asyncio.get_running_loop().get_debug()
    assert os.environ.get("PYTHONASYNCIODEBUG")
