"""Retention of the bedside's record: numerics, alarms and alarm limits older than
``numerics_retention_days`` are deleted, once at start-up and then every
``retention_interval_s``.

One task, owned by the app's lifespan (:meth:`Retention.start`, :meth:`Retention.stop`). A
round that fails (the database locked or unreachable) is logged and the next one tries
again; the task ends only when stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.tasks import cancel_and_wait, spawn
from signaling.storage import vitals
from signaling.storage.database import Database

log = logging.getLogger(__name__)

_DAY_S = 86_400.0


class Retention:
    """``sleep`` waits out the interval; tests inject one they drive."""

    def __init__(
        self,
        db: Database,
        retention_days: int,
        interval_s: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self.retention_days = retention_days
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        #: Rounds completed, and numerics deleted in all.
        self.rounds = 0
        self.deleted = 0

    async def run_once(self) -> int:
        """Delete what is older than the retention period now; how many numerics went."""
        cutoff = self._clock.time() - self.retention_days * _DAY_S
        deleted = await vitals.delete_older_than(self._db, cutoff)
        self.rounds += 1
        self.deleted += deleted
        if deleted:
            log.info(
                "retention: deleted %d numerics older than %d days", deleted, self.retention_days
            )
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # an outage must not end retention for good
                log.exception("retention round failed; will try again")
            await self._sleep(self.interval_s)

    def start(self) -> None:
        self._task = spawn(self._run(), "retention")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
