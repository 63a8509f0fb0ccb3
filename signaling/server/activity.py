"""Session activity seen on WebSockets, written to the database in batches.

Relaying a message must never wait for the database, yet the inactivity logout needs to know
when a clinician last did something. Sockets :meth:`~ActivityRecorder.mark` activity in
memory; one task (owned by the app's lifespan) writes all marks every ``interval_s`` in a
single statement. HTTP requests still update their session directly.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import bindparam, update

from runtime.tasks import cancel_and_wait
from signaling.storage.database import Database
from signaling.storage.models import SessionRow

log = logging.getLogger(__name__)


class ActivityRecorder:
    def __init__(self, db: Database, interval_s: float = 5.0) -> None:
        self._db = db
        self.interval_s = interval_s
        # One entry per active session at most: bounded by the number of logged-in sessions.
        self._pending: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, session_id: str, at: datetime) -> None:
        self._pending[session_id] = at

    async def flush(self) -> None:
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
        async with self._db.engine.begin() as conn:
            await conn.execute(statement, rows)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception:  # a database hiccup must not end activity recording for good
                log.exception("could not record session activity; will retry")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-activity")

    async def stop(self) -> None:
        """Cancel the task, await it, and write what is still pending."""
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self.flush()
