from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from signaling.storage.database import Database, sqlite_url
from tests.helpers import LiveServer, make_config, run_server

POSTGRES_URL = os.environ.get("TELEMED_TEST_POSTGRES_URL")


def pytest_configure(config: pytest.Config) -> None:
    """asyncio's debug mode (slow callbacks, never-awaited coroutines, calls from the wrong
    thread) for every test however pytest is started (``pytest -k ...`` too) and for the
    ``telemed`` processes tests start. Set before any test runs: a loop reads it when it is
    created. ``PYTHONASYNCIODEBUG=`` (empty) in the environment turns it off."""
    os.environ.setdefault("PYTHONASYNCIODEBUG", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of a module that drives the browser (imports ``tests.e2e.browser``)
    ``browser``, so that ``-m "not browser"`` (``make test-fast``) leaves Chromium alone
    without each module having to say so."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and _drives_the_browser(module):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After each slow or browser test's fixtures are torn down, collect garbage: a socket
    or transport it left unclosed then fails its teardown, not whichever later test the
    collector happened to run in."""
    if item.get_closest_marker("slow") or item.get_closest_marker("browser"):
        gc.collect()


def _drives_the_browser(module: object) -> bool:
    return any(
        getattr(value, "__module__", None) == "tests.e2e.browser"
        or getattr(value, "__name__", None) == "tests.e2e.browser"
        for value in vars(module).values()
    )


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with run_server(make_config(tmp_path)) as live:
        yield live


async def _postgres_database() -> AsyncIterator[str]:
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the storage tests on PostgreSQL: TELEMED_TEST_POSTGRES_URL")
        pytest.skip("no PostgreSQL here (scripts/test-postgres sets TELEMED_TEST_POSTGRES_URL)")
    name = f"telemed_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh empty database on each backend the storage layer supports."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "storage.sqlite3")
    else:
        async for url in _postgres_database():
            yield url


@pytest_asyncio.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()
