"""Stopping the tasks an owner started."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *expected: type[BaseException]
) -> None:
    """Cancel every task and wait until all have finished. A task that had already failed
    with one of the ``expected`` exceptions is let be; any other failure is raised.

    ``asyncio.wait`` rather than awaiting each task inside ``suppress(CancelledError)``: that
    idiom also swallows a cancellation of the caller that arrives meanwhile, and the caller
    then runs on when it was told to stop."""
    tasks = list(tasks)
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if task.cancelled():
            continue
        error = task.exception()
        if error is not None and not isinstance(error, expected):
            raise error
