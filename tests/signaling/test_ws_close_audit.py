"""Many sockets closing at once while another process holds the SQLite database's write
lock: every close is still audited, in one unbroken chain.

Two server apps share one SQLite file, as ``telemed serve --workers 2`` does; a third
connection (another process's writer, e.g. a burst of closes there) holds the write lock
past SQLite's busy timeout while the sockets of both close. Each close appends
``ws.disconnect``; before the audit log waited for the lock with backoff (and held it only
in its write thread, never across the event loop's turns), those appends failed with
"database is locked" and their rows were lost."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from pathlib import Path

import pytest
import websockets
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection

from signaling.schema import PROTOCOL_VERSION, Role
from signaling.storage.audit import AuditEvent, AuditLog
from signaling.storage.database import BUSY_TIMEOUT_MS, Database, sqlite_url
from signaling.storage.models import AuditEventRow
from tests.helpers import LiveServer, eventually, make_config, run_server
from tests.signaling.sockets import recv

#: Sockets per server app.
SOCKETS = 100


class WriteLock:
    """Another connection's write transaction on an SQLite file (``BEGIN IMMEDIATE``), held
    in a thread of its own until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._taken = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="test-write-lock")

    def _hold(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._taken.set()
            self._release.wait(60)
            connection.execute("COMMIT")
        finally:
            connection.close()

    async def take(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._taken.wait, 30)
        assert self._taken.is_set()

    async def release(self) -> None:
        self._release.set()
        await asyncio.to_thread(self._thread.join, 30)


async def _count(db: Database, action: str) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditEventRow).where(AuditEventRow.action == action)
        )
    return int(count or 0)


async def _hello(server: LiveServer, token: str) -> ClientConnection:
    ws = await websockets.connect(
        server.ws_url, max_size=None, max_queue=None, open_timeout=30, ping_interval=None
    )
    await ws.send(json.dumps({"type": "hello", "v": PROTOCOL_VERSION, "token": token}))
    assert (await recv(ws, timeout=30))["type"] == "welcome"
    return ws


@pytest.mark.slow  # the lock is held past the busy timeout (5 s)
async def test_sockets_closing_at_once_are_all_audited_while_another_writer_holds_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        tmp_path, ws_max_per_address=2 * SOCKETS + 10, ws_max_per_account=2 * SOCKETS + 10
    )
    # asyncio's debug mode records a stack for every callback: at hundreds of sockets, that,
    # not the server, is what the loop would be busy with.
    asyncio.get_running_loop().set_debug(False)
    async with run_server(config) as one, run_server(config) as two:
        await one.add_user("dk", Role.DOCTOR, "koriyama")
        token = await one.token("dk")
        sockets = await asyncio.gather(
            *(_hello(server, token) for server in (one, two) for _ in range(SOCKETS))
        )

        async def audited(action: str) -> bool:
            return await _count(one.services.db, action) == 2 * SOCKETS

        # (A socket is welcomed first, then its connect audited.)
        await eventually(lambda: audited("ws.connect"), timeout=30)

        lock = WriteLock(tmp_path / "signaling.sqlite3")
        await lock.take()
        try:
            await asyncio.gather(*(ws.close() for ws in sockets))
            await eventually(
                lambda: one.services.hub.connection_count + two.services.hub.connection_count == 0
            )
            # The appends of the closes wait for the lock past the busy timeout (SQLite
            # answered "database is locked" there): held that long and a bit more.
            await asyncio.sleep(BUSY_TIMEOUT_MS / 1000 + 1.5)
        finally:
            await lock.release()

        await eventually(lambda: audited("ws.disconnect"), timeout=60)
        errors = [r.getMessage()[:300] for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
        report = await one.services.audit.verify()
        assert report.ok, report
        assert report.rows == 4 * SOCKETS + 1  # and the sign-in


async def test_an_append_cancelled_while_it_waits_is_still_written(
    tmp_path: Path,
) -> None:
    db = Database(sqlite_url(tmp_path / "audit.sqlite3"))
    try:
        await db.migrate()
        log = AuditLog(db)
        await log.append(_event(0))
        lock = WriteLock(tmp_path / "audit.sqlite3")
        await lock.take()
        try:
            first = asyncio.create_task(log.append(_event(1)))
            second = asyncio.create_task(log.append(_event(2)))
            await asyncio.sleep(0.2)  # both pending: the first writes, the second waits
            second.cancel()
            await asyncio.wait([second])
        finally:
            await lock.release()
        assert await first == 2
        await log.flush()
        report = await log.verify()
        assert report.ok, report
        assert report.rows == 3
        async with db.session() as session:
            ids = (await session.scalars(select(AuditEventRow.actor_id))).all()
        assert sorted(i for i in ids if i is not None) == [0, 1, 2]
    finally:
        await db.close()


def _event(i: int) -> AuditEvent:
    return AuditEvent("user.login", "user", i, f"u{i}", "doctor", "wonju", "10.0.0.1:1")
