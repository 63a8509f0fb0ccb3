"""The audit chain's anchors (issue 10, finding 8): a tail cut with the head rewound passes
the chain's own check, and is caught against an anchor kept outside the database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from signaling.storage.audit import Anchor, AuditEvent, AuditLog, read_anchors
from signaling.storage.database import Database


def _event(i: int) -> AuditEvent:
    return AuditEvent("consultation.view", "user", i, f"u{i}", "doctor", "wonju", "10.0.0.1:1")


async def _cut_tail_and_rewind(db: Database, keep: int) -> None:
    """What an attacker with write access to the database does to hide the last events."""
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_events WHERE seq > :keep"), {"keep": keep})
        await conn.execute(
            text(
                "UPDATE audit_head SET last_seq = :keep, "
                "last_hash = (SELECT hash FROM audit_events WHERE seq = :keep) WHERE id = 1"
            ),
            {"keep": keep},
        )


async def test_a_cut_tail_with_the_head_rewound_is_caught_by_an_anchor(db: Database) -> None:
    log = AuditLog(db)
    assert (await log.head()).seq == 0
    early = await log.head()
    for i in range(10):
        await log.append(_event(i))
    anchor = await log.head()
    assert anchor.seq == 10
    assert (await log.check_anchors([early, anchor])).ok

    await _cut_tail_and_rewind(db, keep=6)
    assert (await log.verify()).ok  # the weakness: the chain alone looks intact
    report = await log.check_anchors(read_anchors([early.line(), anchor.line()]))
    assert not report.ok
    assert report.bad_seq == 10
    assert "missing" in report.reason


async def test_a_rewritten_tail_is_caught_by_an_anchor(db: Database) -> None:
    log = AuditLog(db)
    for i in range(10):
        await log.append(_event(i))
    anchor = await log.head()
    await _cut_tail_and_rewind(db, keep=6)
    for i in range(6):  # new, innocent-looking events in place of the cut ones
        await log.append(_event(100 + i))
    assert (await log.verify()).ok
    report = await log.check_anchors([anchor])
    assert not report.ok
    assert report.bad_seq == 10
    assert "rewritten" in report.reason


def test_anchor_lines() -> None:
    line = "12 " + "ab" * 32 + " 2026-12-01T10:00:00+00:00"
    anchor = Anchor.parse(line)
    assert anchor.seq == 12 and anchor.line() == line
    assert read_anchors(["# anchors", "", line + "\n"]) == [anchor]
    for bad in ("12 abc 2026-12-01T10:00:00+00:00", "x " + "ab" * 32 + " now", "12"):
        with pytest.raises(ValueError, match=r"anchor|invalid literal"):
            Anchor.parse(bad)


async def test_verify_while_events_are_appended(db: Database) -> None:
    """The server verifies (``/api/audit/verify``) while it appends: a head read before the
    rows walked made an intact chain look cut (39 of 300 checks failed here)."""
    log = AuditLog(db)
    writing = True

    async def append() -> None:
        i = 0
        while writing:
            await log.append(_event(i))
            i += 1

    writer = asyncio.create_task(append())
    try:
        reports = [await log.verify() for _ in range(100)]
    finally:
        writing = False
        await writer
    assert [r for r in reports if not r.ok] == []
    assert reports[-1].rows > reports[0].rows
