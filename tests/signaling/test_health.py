"""/healthz against a real SQLite file that disappears: degraded, with the reason logged."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from signaling.storage.database import sqlite_url
from tests.helpers import eventually, make_config, run_server


async def test_an_unreachable_database_is_reported_and_its_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = make_config(tmp_path, database_url=sqlite_url(data / "signaling.sqlite3"))
    async with run_server(config) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).json()["database"] == "ok"

        engine = server.services.db.engine
        # Only once no task holds a connection: one checked out across dispose() is left to
        # the garbage collector unclosed, and fails whichever test it is collected in.
        await eventually(lambda: engine.pool.checkedout() == 0)  # type: ignore[attr-defined]
        await engine.dispose()  # no pooled connection left...
        data.rename(tmp_path / "elsewhere")  # ...and the file's directory is gone
        caplog.clear()
        health = (await http.get("/healthz")).json()
        assert (health["status"], health["database"]) == ("degraded", "unreachable")
        logged = [
            r
            for r in caplog.records
            if r.name == "signaling.server.routes_misc" and r.levelno >= logging.ERROR
        ]
        assert len(logged) == 1  # once per failure
        assert logged[0].exc_info is not None  # with the reason

        (tmp_path / "elsewhere").rename(data)  # the database is back
        assert (await http.get("/healthz")).json()["database"] == "ok"
