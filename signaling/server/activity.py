"""Session activity seen on WebSockets, written to the database in batches.

Relaying a message must never wait for the database, yet the inactivity logout needs to know
when a clinician last did something. Sockets :meth:`~ActivityRecorder.mark` activity in
memory; one task (owned by the app's lifespan) writes all marks every ``interval_s`` in a
single statement. HTTP requests still update their session directly.

A flush that fails (the database locked, unreachable, or its engine gone) is logged and its
marks are kept for the next one, so an outage delays activity records but loses none; the
task goes on until it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import bindparam, update

from runtime.tasks import cancel_and_wait, spawn
from signaling.storage.database import Database
from signaling.storage.models import SessionRow

log = logging.getLogger(__name__)


class ActivityRecorder:
    """Call :meth:`start` in the event loop, :meth:`stop` at shutdown. ``sleep`` waits out
    the interval; tests inject one they drive, so that flushes happen when they say."""

    def __init__(
        self,
        db: Database,
        interval_s: float = 5.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self.interval_s = interval_s
        self._sleep = sleep
        # One entry per active session at most: bounded by the number of logged-in sessions.
        self._pending: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, session_id: str, at: datetime) -> None:
        self._pending[session_id] = at

    async def flush(self) -> None:
        """Write the pending marks in one statement. On failure (raised) they stay pending,
        behind any newer mark made meanwhile."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        statement = (
            update(SessionRow)
            .where(
                SessionRow.id == bindparam("sid"),
                SessionRow.ended_at.is_(None),
                SessionRow.last_active_at < bindparam("at"),
            )
            .values(last_active_at=bindparam("at"))
            .execution_options(synchronize_session=False)
        )
        rows = [{"sid": sid, "at": at} for sid, at in pending.items()]
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(statement, rows)
        except BaseException:  # a cancellation too: stop() flushes what is left
            for sid, at in pending.items():
                newer = self._pending.get(sid)
                if newer is None or newer < at:
                    self._pending[sid] = at
            raise

    async def _run(self) -> None:
        while True:
            await self._sleep(self.interval_s)
            try:
                await self.flush()
            except Exception:  # a database outage must not end activity recording for good
                log.exception("could not record session activity; will retry")

    def start(self) -> None:
        self._task = spawn(self._run(), "session-activity")

    async def stop(self) -> None:
        """Cancel the task, await it, and write what is still pending. A failure of that
        last write is logged, not raised: the server is shutting down either way."""
        if self._task is not None:
            await cancel_and_wait([self._task])
        try:
            await self.flush()
        except Exception:
            log.exception("could not record session activity at shutdown")
