"""Every refusal is audited, and a flood of them cannot flood the chain (issue 10, finding 8):
logins refused with 429, 401s for forged and expired tokens, 403s on admin routes; at most
``rows_per_window`` rows per (address, action) and window, then one summary row."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from signaling.auth import Principal
from signaling.schema import PrincipalKind, Role
from signaling.server.refusals import RefusalAudit
from signaling.storage.audit import AuditLog
from signaling.storage.database import Database
from signaling.storage.models import AuditEventRow
from tests.helpers import LiveServer, eventually, make_config, run_server
from tests.signaling.sockets import auth


async def _rows(db: Database, action: str | None = None) -> list[AuditEventRow]:
    async with db.session() as session:
        query = select(AuditEventRow).order_by(AuditEventRow.seq)
        if action is not None:
            query = query.where(AuditEventRow.action == action)
        return list(await session.scalars(query))


def _detail(row: AuditEventRow) -> dict[str, Any]:
    return dict(json.loads(row.detail))


async def test_logins_refused_by_the_rate_limit_are_audited(server: LiveServer) -> None:
    await server.add_user("dw", Role.DOCTOR, "wonju")
    bad = {"username": "dw", "password": "wrong password"}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for _ in range(server.config.login_max_failures):
            assert (await http.post("/api/auth/login", json=bad)).status_code == 401
        for _ in range(3):
            assert (await http.post("/api/auth/login", json=bad)).status_code == 429
    refused = [r for r in await _rows(server.services.db, "user.login") if r.outcome == "denied"]
    limited = [r for r in refused if _detail(r).get("reason") == "rate limited"]
    assert len(limited) == 3
    assert all(r.actor_name == "dw" and r.source_addr.startswith("127.0.0.1") for r in limited)
    assert {_detail(r)["limit"] for r in limited} == {"account"}
    assert (await server.services.audit.verify()).ok


async def test_forged_and_expired_tokens_and_forbidden_routes_are_audited(
    tmp_path: Path,
) -> None:
    async with run_server(make_config(tmp_path)) as server:
        await server.add_user("dw", Role.DOCTOR, "wonju")
        token = await server.token("dw")
        me = Principal(PrincipalKind.USER, 1, "dw", Role.DOCTOR, "wonju", "s")
        expired, _ = server.services.tokens.issue(me, datetime.now(UTC) - timedelta(hours=1))
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            for bad in ("forged.token.here", expired):
                response = await http.get("/api/consultations", headers=auth(bad))
                assert response.status_code == 401
            assert (await http.get("/api/auth/me")).status_code == 401
            forbidden = await http.get("/api/audit/verify", headers=auth(token))
            assert forbidden.status_code == 403
        unauthorized = await _rows(server.services.db, "http.unauthorized")
        assert [(_detail(r)["path"], _detail(r)["reason"]) for r in unauthorized] == [
            ("/api/consultations", "invalid token"),
            ("/api/consultations", "token expired"),
            ("/api/auth/me", "a bearer token is required"),
        ]
        assert all(r.outcome == "denied" and r.actor_kind == "anonymous" for r in unauthorized)
        (denied,) = await _rows(server.services.db, "http.forbidden")
        assert (denied.actor_name, denied.role, denied.site) == ("dw", "doctor", "wonju")
        assert _detail(denied) == {
            "method": "GET",
            "path": "/api/audit/verify",
            "reason": "administrators only",
            "status": 403,
        }


async def test_a_flood_of_refusals_is_summarised(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path)) as server:
        refusals = server.services.refusals
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            for _ in range(100):
                response = await http.get("/api/consultations", headers=auth("forged"))
                assert response.status_code == 401
        rows = await _rows(server.services.db, "http.unauthorized")
        assert len(rows) == refusals.rows_per_window + 1
        notice = _detail(rows[-1])
        assert notice["suppressing"] is True
        assert await refusals.flush(everything=True) == 1
        summary = _detail((await _rows(server.services.db, "http.unauthorized"))[-1])
        assert summary["summary"] is True
        assert summary["suppressed"] == 100 - refusals.rows_per_window
        assert summary["reason"] == "invalid token"
        assert (await server.services.audit.verify()).ok


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_summaries_are_written_when_the_window_ends_and_keys_are_bounded(
    db: Database,
) -> None:
    clock = Clock()
    refusals = RefusalAudit(AuditLog(db), rows_per_window=2, window_s=60, max_keys=3, clock=clock)
    for _ in range(5):
        await refusals.refused("ws.connect", "10.0.0.1:5000", "invalid token")
    assert len(await _rows(db)) == 3  # two rows, one notice
    # Another address is another key: its own rows.
    assert await refusals.refused("ws.connect", "10.0.0.2:5000", "invalid token")
    clock.now += 61
    # The next refusal, of any key, writes the summary of the window that ended.
    assert await refusals.refused("ws.connect", "10.0.0.3:5000", "too large")
    rows = await _rows(db)
    summaries = [_detail(r) for r in rows if _detail(r).get("summary")]
    assert summaries == [
        {"summary": True, "suppressed": 3, "window_s": 60.0, "reason": "invalid token"}
    ]
    assert rows[-2].source_addr == "10.0.0.1"
    # A new window for the first address starts afresh.
    assert await refusals.refused("ws.connect", "10.0.0.1:5001", "invalid token")
    # Memory is bounded: a fourth key pushes out the oldest (its pending summary written).
    for i in range(4, 8):
        for _ in range(4):
            await refusals.refused("ws.connect", f"10.0.0.{i}:1", "bad_json")
    assert len(refusals._buckets) <= 3
    await refusals.flush(everything=True)
    rows = await _rows(db)
    suppressed = sum(_detail(r).get("suppressed", 0) for r in rows)
    individual = [r for r in rows if not _detail(r).get("summary")]
    # Every refusal is in the chain: as a row of its own, or counted in a summary.
    assert (
        len(individual) - sum(1 for r in individual if _detail(r).get("suppressing")) + (suppressed)
        == 5 + 1 + 1 + 1 + 4 * 4
    )
    assert (await AuditLog(db).verify()).ok


@pytest.mark.parametrize("rows", [0, -1])
async def test_rows_per_window_must_be_positive(db: Database, rows: int) -> None:
    with pytest.raises(ValueError, match="rows_per_window"):
        RefusalAudit(AuditLog(db), rows_per_window=rows)


async def test_concurrent_refusals_count_exactly(db: Database) -> None:
    refusals = RefusalAudit(AuditLog(db), rows_per_window=5)
    await asyncio.gather(
        *(refusals.refused("ws.connect", "10.0.0.1:1", "invalid token") for _ in range(50))
    )
    await refusals.flush(everything=True)
    rows = await _rows(db)
    assert len(rows) == 5 + 1 + 1
    assert _detail(rows[-1])["suppressed"] == 45


async def test_the_task_writes_the_summary_of_a_flood_that_stopped(db: Database) -> None:
    clock = Clock()
    refusals = RefusalAudit(AuditLog(db), rows_per_window=1, window_s=60, clock=clock)
    refusals.start(interval_s=0.01)
    try:
        for _ in range(4):
            await refusals.refused("ws.connect", "10.0.0.1:1", "bad_json")
        clock.now += 61  # no refusal after this: the task alone writes the summary

        async def summarised() -> list[dict[str, Any]]:
            return [_detail(r) for r in await _rows(db) if _detail(r).get("summary")]

        (summary,) = await eventually(summarised)
        assert summary["suppressed"] == 3
    finally:
        await refusals.stop()
    assert len(await _rows(db)) == 1 + 1 + 1
