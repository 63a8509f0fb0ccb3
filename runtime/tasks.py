"""Owning tasks: starting them so that a failure is never silent, and stopping them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_log = logging.getLogger(__name__)


def log_if_failed(task: asyncio.Task[Any]) -> None:
    """A done-callback: log the exception a task ended with (a cancellation is not one).

    A long-lived task that dies with an exception nobody awaits yet (its owner awaits it only
    at shutdown) would otherwise fail in silence while the process looks alive."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        _log.error("task %s ended with %r", task.get_name(), error, exc_info=error)


def spawn(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """``asyncio.create_task`` with :func:`log_if_failed` attached. The caller owns the task:
    it must cancel and await it (:func:`cancel_and_wait`)."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(log_if_failed)
    return task


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
