"""The database handle: one async engine, a session factory, and schema migrations."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


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

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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
