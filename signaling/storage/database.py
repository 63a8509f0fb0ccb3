"""The database handle: one async engine, a session factory, and schema migrations."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Connections a server process keeps to PostgreSQL, and more it may open under load.
POOL_SIZE, POOL_OVERFLOW = 5, 10


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file (the embedded default)."""
    return f"sqlite+aiosqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while the server appends audit rows; foreign keys are off by
    # default in SQLite and the schema relies on them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


#: How long one SQLite statement waits for another connection's write lock (its busy
#: handler) before it fails with SQLITE_BUSY ("database is locked").
BUSY_TIMEOUT_MS = 5000
#: :meth:`Database.write` tries again after SQLITE_BUSY for this long in all (each try
#: itself waits up to BUSY_TIMEOUT_MS), with backoff from WRITE_RETRY_FIRST_S doubling up to
#: WRITE_RETRY_MAX_S, jittered so two processes do not retry in step.
WRITE_RETRY_FOR_S = 60.0
WRITE_RETRY_FIRST_S = 0.05
WRITE_RETRY_MAX_S = 1.0


def is_busy(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite's SQLITE_BUSY (another connection holds the lock; any
    extended code of it), told by its error code, not by its message."""
    orig = exc.orig if isinstance(exc, OperationalError) else exc
    code = getattr(orig, "sqlite_errorcode", None)
    return (
        isinstance(orig, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
    )


def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling off: the engine's "begin" listener says BEGIN.
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Connection) -> None:
    # The write lock is taken at BEGIN (waiting for it in the busy handler), so every read
    # that follows in the transaction sees the latest commit of any process.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


class Database:
    """Owns the engine. Create one per process at the entry point; ``await close()`` at exit."""

    def __init__(self, url: str) -> None:
        self.url = url
        # SQLite is a file: there is no server to ping, and each ping was one more round trip
        # through aiosqlite's thread on every checkout.
        sqlite = url.startswith("sqlite")
        pool = {} if sqlite else {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not sqlite, **pool)
        #: This process's sessions wait their turn here, first come first served. SQLite:
        #: one at a time. SQLite has one writer at a time; pooled connections that contend
        #: for it in the database wait in its busy handler, which is not a queue (it sleeps
        #: up to 100 ms between tries, and whoever tries at the right moment wins), so under
        #: a burst (500 sockets joining at once) some waited past the busy timeout and failed
        #: with "database is locked". Other processes (the CLI, a second server) still meet
        #: the busy timeout. PostgreSQL: as many as the pool holds, less one for the engine's
        #: direct users (activity flush). The pool's own wait is no queue either: a task
        #: returning a connection takes one again before a waiter wakes (a pool of one on
        #: SQLite let a busy appender starve verify past 120 s; on PostgreSQL a join of the
        #: burst waited past the pool's 30 s timeout). A session must not open another while
        #: it is open (on SQLite it would wait for itself).
        self._queue: asyncio.Lock | asyncio.Semaphore
        if self.engine.dialect.name == "sqlite":
            self._queue = asyncio.Lock()
        else:
            self._queue = asyncio.Semaphore(POOL_SIZE + POOL_OVERFLOW - 1)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite files: writes that must not hold the write lock across the event loop's
        # turns run in one go in this thread, on a connection of their own (see write()).
        self._writer: tuple[Engine, ThreadPoolExecutor] | None = None
        path = self.engine.url.database if sqlite else None
        if path and path != ":memory:" and not path.startswith("file:"):
            sync_engine = create_engine(f"sqlite:///{path}")
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            event.listen(sync_engine, "connect", _autocommit_driver)
            event.listen(sync_engine, "begin", _begin_immediate)
            self._writer = (sync_engine, ThreadPoolExecutor(1, thread_name_prefix="db-write"))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def writes_in_thread(self) -> bool:
        """True when :meth:`write` can be used (an SQLite file)."""
        return self._writer is not None

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction (``BEGIN IMMEDIATE``), in one go, in this
        database's write thread; return what it returns. SQLite files only
        (:attr:`writes_in_thread`): the write lock is held only while ``work`` runs there,
        never across turns of a busy event loop, where each statement of an async session
        waits for the loop (a thousand sockets closing at once kept another process's
        writes waiting past the busy timeout: "database is locked").

        SQLITE_BUSY (another process held the lock past the busy timeout) is tried again
        with backoff for up to WRITE_RETRY_FOR_S, the transaction rolled back each time, so
        ``work`` must be safe to run again. Then, and for any other error, the exception is
        raised. Cancelling the caller does not stop a ``work`` already running in the
        thread: it commits or not, as if the caller had waited."""
        assert self._writer is not None, "write() is for SQLite files (writes_in_thread)"
        sync_engine, executor = self._writer

        def attempt() -> T:
            with sync_engine.begin() as connection:
                return work(connection)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_RETRY_FOR_S
        delay = WRITE_RETRY_FIRST_S
        tries = 0
        while True:
            tries += 1
            try:
                # This process's sessions wait their turn (see __init__): its own write
                # never meets its own lock in the busy handler.
                async with self._queue:
                    return await loop.run_in_executor(executor, attempt)
            except OperationalError as exc:
                if not is_busy(exc) or loop.time() + delay > deadline:
                    raise
                log.warning(
                    "database: a write met a lock held by another process (%d tries); trying again",
                    tries,
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, WRITE_RETRY_MAX_S)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on an exception."""
        async with self._queue, self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the start-up lock of this database among the processes of this machine: a
        lock on a file beside an SQLite database (``<file>.lock``), so that servers started
        together (``telemed serve --workers N``, or two instances behind a proxy) migrate and
        sync the sites one after the other, not into each other. Other dialects: no lock
        (run ``telemed db upgrade`` before starting several servers on PostgreSQL)."""
        path = self.engine.url.database if self.dialect == "sqlite" else None
        if not path or path == ":memory:":
            yield
            return
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # flock blocks: a thread waits for it. Closing the file releases it.
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (idempotent)."""

        def upgrade(connection: Connection) -> None:
            command.upgrade(_alembic_config(connection), revision)

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def current_revision(self) -> str | None:
        def read(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with self.engine.connect() as conn:
            return await conn.run_sync(read)

    @staticmethod
    def head_revision() -> str | None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        return ScriptDirectory.from_config(config).get_current_head()

    async def close(self) -> None:
        await self.engine.dispose()
        if self._writer is not None:
            sync_engine, executor = self._writer
            await asyncio.get_running_loop().run_in_executor(executor, sync_engine.dispose)
            executor.shutdown(wait=False)
