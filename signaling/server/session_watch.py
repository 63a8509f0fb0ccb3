"""Sessions ended by another process reach this process's sockets.

A session ended here (logout) closes its sockets at once through the hub. One ended
elsewhere (``telemed users disable`` or ``reset-password``, run at the console; another
server process's logout) is only in the database: HTTP requests notice it at their next
token check, but an open WebSocket checks its session only when idle. This task looks every
``interval_s`` for sessions ended since its last look and closes their sockets here
(``session_expired``).

One task, owned by the app's lifespan (:meth:`SessionWatcher.start`,
:meth:`SessionWatcher.stop`). A round that fails (the database locked or unreachable) is
logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from runtime.tasks import cancel_and_wait, spawn
from signaling.server.hub import Hub
from signaling.storage.database import Database
from signaling.storage.models import SessionRow, utcnow

log = logging.getLogger(__name__)

#: How far back each look reaches before the previous one: a session ended just before a
#: look, in a transaction committed just after it, or stamped by a process whose clock is a
#: little behind, is still found.
_OVERLAP = timedelta(seconds=30)


class SessionWatcher:
    """``clock`` gives wall time, ``sleep`` waits out the interval; tests may inject both."""

    def __init__(
        self,
        db: Database,
        hub: Hub,
        interval_s: float,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._hub = hub
        self.interval_s = interval_s
        self._now = clock
        self._sleep = sleep
        self._since = clock() - _OVERLAP
        # Sessions already handled within the overlap, so each is closed once; bounded by
        # the sessions ended within one overlap.
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[str]:
        """Close the sockets of sessions ended since the last look; returns their ids."""
        started = self._now()
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(SessionRow.id, SessionRow.ended_at).where(
                        SessionRow.ended_at >= self._since
                    )
                )
            ).all()
        ended = []
        for session_id, ended_at in rows:
            if ended_at is None or session_id in self._seen:
                continue
            self._seen[session_id] = ended_at
            self._hub.end_session(session_id, everywhere=False)
            ended.append(session_id)
        self._since = started - _OVERLAP
        self._seen = {sid: at for sid, at in self._seen.items() if at >= self._since}
        return ended

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # an outage must not end the watch for good
                log.exception("looking for ended sessions failed; will try again")
            await self._sleep(self.interval_s)

    def start(self) -> None:
        """Start watching (again started: nothing happens)."""
        if self._task is None:
            self._task = spawn(self._run(), "session-watch")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait([task])
