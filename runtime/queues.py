"""Bounded queues for live paths, where fresh data matters more than complete old data."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


class DropOldestQueue(asyncio.Queue[T]):
    """A bounded :class:`asyncio.Queue` whose :meth:`put_latest` never waits: when the queue
    is full the oldest item is dropped (and counted in :attr:`dropped`) to make room.

    ``maxsize`` must be positive: an unbounded queue has no place on a live path."""

    def __init__(self, maxsize: int) -> None:
        if maxsize <= 0:
            raise ValueError("a drop-oldest queue needs a positive maxsize")
        super().__init__(maxsize)
        self.dropped = 0

    def put_latest(self, item: T) -> bool:
        """Queue ``item`` now; True when an older item was dropped for it."""
        dropped = False
        if self.full():
            self.get_nowait()
            self.dropped += 1
            dropped = True
        self.put_nowait(item)
        return dropped
