"""The server's activity task against a real SQLite file that is locked by another process's
writer: each failed flush is logged, the task goes on, and no mark is lost."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from signaling.config import DEFAULT_SITES
from signaling.schema import Role
from signaling.server.activity import ActivityRecorder
from signaling.storage import accounts
from signaling.storage.database import Database, sqlite_url
from signaling.storage.models import SessionRow, utcnow


class Steps:
    """A sleep the test drives: each :meth:`step` lets the sleeper wake once and returns when
    it sleeps again (its round, a flush here, is over). No wall-clock waiting."""

    def __init__(self) -> None:
        self._asleep = asyncio.Event()
        self._wake = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self._asleep.set()
        await self._wake.wait()
        self._wake.clear()

    async def step(self) -> None:
        async with asyncio.timeout(10):  # bounds a hang, not a timing assertion
            await self._asleep.wait()
            self._asleep.clear()
            self._wake.set()
            await self._asleep.wait()


def _impatient(dbapi_connection: Any, _record: Any) -> None:
    # The server waits 5 s for a lock; the test needs only to see that it fails.
    dbapi_connection.cursor().execute("PRAGMA busy_timeout=50")


@pytest_asyncio.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "signaling.sqlite3"
    db = Database(sqlite_url(path))
    event.listen(db.engine.sync_engine, "connect", _impatient)
    await db.migrate()
    await accounts.sync_sites(db, DEFAULT_SITES)
    try:
        yield db, path
    finally:
        await db.close()


async def _last_active(db: Database, session_id: str) -> datetime:
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        return row.last_active_at


async def test_a_locked_database_is_logged_and_every_mark_is_written_once_it_is_back(
    database: tuple[Database, Path], caplog: pytest.LogCaptureFixture
) -> None:
    db, path = database
    doctor = await accounts.add_user(db, "dw", "password-w", Role.DOCTOR, "wonju", "Dr W")
    first = await accounts.start_session(db, doctor, "127.0.0.1:1")
    second = await accounts.start_session(db, doctor, "127.0.0.1:2")
    steps = Steps()
    recorder = ActivityRecorder(db, interval_s=5.0, sleep=steps.sleep)
    recorder.start()
    try:
        early = utcnow() + timedelta(seconds=1)
        recorder.mark(first, early)
        locker = sqlite3.connect(path, isolation_level=None)  # another writer holds the lock
        try:
            locker.execute("BEGIN EXCLUSIVE")
            await steps.step()  # this flush meets the lock
            await steps.step()  # and the next one too
            failures = [
                r
                for r in caplog.records
                if r.levelno >= logging.ERROR
                and r.exc_info is not None
                and isinstance(r.exc_info[1], OperationalError)
            ]
            assert len(failures) == 2  # one log line, with its exception, per failed flush
            assert await _last_active(db, first) < early
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        later = early + timedelta(seconds=1)
        recorder.mark(second, later)
        await steps.step()  # the database is back
        assert await _last_active(db, first) == early  # the mark of the failed flushes too
        assert await _last_active(db, second) == later
    finally:
        await recorder.stop()


async def test_a_mark_newer_than_a_failed_one_wins(
    database: tuple[Database, Path], caplog: pytest.LogCaptureFixture
) -> None:
    db, path = database
    doctor = await accounts.add_user(db, "dw", "password-w", Role.DOCTOR, "wonju", "Dr W")
    sid = await accounts.start_session(db, doctor, "127.0.0.1:1")
    steps = Steps()
    recorder = ActivityRecorder(db, interval_s=5.0, sleep=steps.sleep)
    recorder.start()
    try:
        early = utcnow() + timedelta(seconds=1)
        recorder.mark(sid, early)
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            await steps.step()
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        latest = early + timedelta(seconds=5)
        recorder.mark(sid, latest)
        await steps.step()
        assert await _last_active(db, sid) == latest
    finally:
        await recorder.stop()


async def test_stop_writes_what_is_pending_and_a_failure_there_is_logged_not_raised(
    database: tuple[Database, Path], caplog: pytest.LogCaptureFixture
) -> None:
    db, path = database
    doctor = await accounts.add_user(db, "dw", "password-w", Role.DOCTOR, "wonju", "Dr W")
    sid = await accounts.start_session(db, doctor, "127.0.0.1:1")
    recorder = ActivityRecorder(db, interval_s=3600.0)
    recorder.start()
    at = utcnow() + timedelta(seconds=1)
    recorder.mark(sid, at)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        await recorder.stop()  # the server is shutting down: logged, not raised
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert any(
        r.levelno >= logging.ERROR and isinstance(r.exc_info and r.exc_info[1], OperationalError)
        for r in caplog.records
    )
    await recorder.flush()  # what was pending is still there to write
    assert await _last_active(db, sid) == at
