"""``telemed audit anchor`` and ``telemed audit verify --anchor`` as an administrator runs
them (issue 10, finding 8): the tail cut with the head rewound, which ``verify`` alone
misses, is caught against the anchor file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from signaling.storage.audit import AuditEvent, AuditLog, read_anchors
from signaling.storage.database import Database, sqlite_url
from tests.helpers import run_telemed


async def _append_events(data_dir: Path, count: int) -> None:
    db = Database(sqlite_url(data_dir / "telemed.sqlite3"))
    try:
        await db.migrate()
        log = AuditLog(db)
        for i in range(count):
            await log.append(
                AuditEvent("consultation.view", "user", i, f"u{i}", "doctor", "wonju", "10.0.0.1:1")
            )
    finally:
        await db.close()


# Several `telemed` processes: seconds each.
@pytest.mark.slow
@pytest.mark.cpu
def test_anchor_then_verify_catches_a_cut_tail(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    anchors = tmp_path / "elsewhere" / "anchors.txt"
    anchors.parent.mkdir()
    asyncio.run(_append_events(data_dir, 5))
    first = run_telemed("audit", "anchor", "--file", str(anchors), data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[0] == "5"
    asyncio.run(_append_events(data_dir, 5))
    second = run_telemed("audit", "anchor", "--file", str(anchors), data_dir=data_dir)
    assert second.returncode == 0, second.stderr
    kept = read_anchors(anchors.read_text().splitlines())
    assert [a.seq for a in kept] == [5, 10]
    assert kept[1].line() == second.stdout.strip()

    ok = run_telemed("audit", "verify", "--anchor", str(anchors), data_dir=data_dir)
    assert ok.returncode == 0, ok.stderr
    assert "10 events" in ok.stdout and "2 anchors" in ok.stdout

    with sqlite3.connect(data_dir / "telemed.sqlite3") as conn:
        conn.execute("DELETE FROM audit_events WHERE seq > 7")
        conn.execute(
            "UPDATE audit_head SET last_seq = 7, "
            "last_hash = (SELECT hash FROM audit_events WHERE seq = 7) WHERE id = 1"
        )
    missed = run_telemed("audit", "verify", data_dir=data_dir)
    assert missed.returncode == 0  # the chain alone cannot tell
    caught = run_telemed("audit", "verify", "--anchor", str(anchors), data_dir=data_dir)
    assert caught.returncode == 1
    assert "BROKEN at event 10" in caught.stderr and "cut" in caught.stderr

    anchors.write_text("not an anchor\n")
    bad = run_telemed("audit", "verify", "--anchor", str(anchors), data_dir=data_dir)
    assert bad.returncode == 2
    assert "anchor file" in bad.stderr
