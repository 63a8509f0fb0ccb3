"""Repeated reads of one image are audited as one row and a count per window: a cine's
rendered frames do not each cost a write to the hash chain, and every read is still
accounted for (rows plus counts), per reader and image."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from signaling.auth import Principal
from signaling.schema import PrincipalKind, Role
from signaling.server.read_audit import ReadAudit
from signaling.storage.audit import AuditLog
from signaling.storage.database import Database
from signaling.storage.models import AuditEventRow

DOCTOR = Principal(PrincipalKind.USER, 7, "dk", Role.DOCTOR, "koriyama", "s1")
OTHER = Principal(PrincipalKind.USER, 8, "dw", Role.DOCTOR, "wonju", "s2")


async def _rows(db: Database) -> list[tuple[str, dict[str, object]]]:
    async with db.session() as session:
        rows = (await session.scalars(select(AuditEventRow).order_by(AuditEventRow.seq))).all()
    return [(r.actor_name, json.loads(r.detail)) for r in rows]


async def test_a_cine_is_one_row_and_a_count_per_reader_image_and_window(db: Database) -> None:
    now = [1000.0]
    reads = ReadAudit(AuditLog(db), window_s=60.0, clock=lambda: now[0])

    async def read(who: Principal, sop: str) -> bool:
        return await reads.read("imaging.render", who, "10.0.0.5:1", "c-1", sop, {"sop": sop})

    # 30 frames of one cine by one doctor, concurrently as a browser fetches them.
    own = await asyncio.gather(*(read(DOCTOR, "1.2.3") for _ in range(30)))
    assert own.count(True) == 1
    assert await read(OTHER, "1.2.3")  # another reader: a row of its own
    assert await read(DOCTOR, "1.2.4")  # another image: a row of its own
    assert [d for _, d in await _rows(db)] == [{"sop": "1.2.3"}] * 2 + [{"sop": "1.2.4"}]

    now[0] += 61.0  # the window ends: the next read writes the summary, then its own row
    assert await read(DOCTOR, "1.2.3")
    rows = await _rows(db)
    assert rows[3] == (
        "dk",
        {"sop": "1.2.3", "summary": True, "reads": 29, "window_s": 60.0},
    )
    assert rows[4] == ("dk", {"sop": "1.2.3"})
    assert len(rows) == 5  # the other windows had no repeated read: no summary

    assert not await read(DOCTOR, "1.2.3")
    assert await reads.flush() == 0  # the window has not ended
    assert await reads.flush(everything=True) == 1  # as at shutdown
    assert (await _rows(db))[-1][1]["reads"] == 1


async def test_the_table_is_bounded_and_what_it_pushes_out_is_summarised(db: Database) -> None:
    reads = ReadAudit(AuditLog(db), max_keys=2, clock=lambda: 0.0)
    for sop in ("1.1", "1.1", "1.2", "1.3"):  # 1.1 read twice, then pushed out by 1.3
        await reads.read("imaging.render", DOCTOR, "a:1", "c-1", sop, {"sop": sop})
    details = [d for _, d in await _rows(db)]
    assert {"sop": "1.1", "summary": True, "reads": 1, "window_s": 60.0} in details
    assert len(details) == 4
