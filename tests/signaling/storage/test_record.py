"""The consultation's record (chat and snapshots) on real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest

from signaling.auth import Principal
from signaling.config import DEFAULT_SITES
from signaling.consultation_fsm import ConsultationEvent
from signaling.errors import ConsultationNotFound, NotActive
from signaling.schema import Role
from signaling.storage import accounts, consultations, record
from signaling.storage.database import Database
from signaling.storage.models import utcnow


async def _active(db: Database, accept: bool = True) -> tuple[Principal, Principal, str]:
    await accounts.sync_sites(db, DEFAULT_SITES)
    dw = await accounts.add_user(db, "dw", "password-w", Role.DOCTOR, "wonju", "Dr W")
    dk = await accounts.add_user(db, "dk", "password-k", Role.DOCTOR, "koriyama", "Dr K")
    pw = Principal(dw.kind, dw.id, dw.name, dw.role, dw.site, "s1")
    pk = Principal(dk.kind, dk.id, dk.name, dk.role, dk.site, "s2")
    row = await consultations.create(db, pw, "koriyama", True, "")
    if accept:
        await consultations.transition(db, pk, row.id, ConsultationEvent.ACCEPT)
    return pw, pk, row.id


async def test_chat_is_stored_in_order_and_survives_a_new_connection(db: Database) -> None:
    pw, pk, cid = await _active(db)
    start = utcnow()
    sent = [
        await record.add_chat(db, cid, p, f"p-{i}", f"message {i} 血圧 혈압", start + timedelta(i))
        for i, p in enumerate([pw, pk, pw])
    ]
    ids = [c.id for c in sent]
    assert None not in ids
    assert ids == sorted(i for i in ids if i is not None)
    assert len(set(ids)) == 3
    again = Database(db.url)
    try:
        history = await record.chat_history(again, cid)
    finally:
        await again.close()
    assert history == sent
    assert [(c.sender_name, c.sender_site, c.sender) for c in history] == [
        ("Dr W", "wonju", "p-0"),
        ("Dr K", "koriyama", "p-1"),
        ("Dr W", "wonju", "p-2"),
    ]
    assert history[1].at == start + timedelta(1)
    assert await record.chat_count(db, cid) == 3


async def test_chat_replay_keeps_the_newest_within_count_and_bytes(db: Database) -> None:
    pw, _, cid = await _active(db)
    for i in range(12):
        await record.add_chat(db, cid, pw, "p-1", f"{i:02d}" + "x" * 98, utcnow())
    replay = await record.chat_replay(db, cid, limit=5)
    assert [c.text[:2] for c in replay] == ["07", "08", "09", "10", "11"]
    one = len(replay[0].model_dump_json(by_alias=True, exclude_none=True).encode()) + 1
    squeezed = await record.chat_replay(db, cid, max_bytes=3 * one + one // 2)
    assert [c.text[:2] for c in squeezed] == ["09", "10", "11"]


@pytest.mark.parametrize("event", [None, ConsultationEvent.CLOSE])
async def test_nothing_is_added_unless_active(
    db: Database, event: ConsultationEvent | None
) -> None:
    pw, pk, cid = await _active(db, accept=event is not None)
    if event is not None:
        await consultations.transition(db, pk, cid, event)
    reason = "ended" if event else "not been accepted"
    with pytest.raises(NotActive, match=reason):
        await record.add_chat(db, cid, pw, "p-1", "too late", utcnow())
    with pytest.raises(NotActive, match=reason):
        await record.add_snapshot(db, cid, pw, "image/png", b"x", "0" * 64, utcnow())
    assert await record.chat_count(db, cid) == 0
    assert await record.snapshot_count(db, cid) == 0
    with pytest.raises(ConsultationNotFound):
        await record.add_chat(db, "c-missing", pw, "p-1", "hello", utcnow())


async def test_chat_racing_the_close_is_stored_before_it_or_refused(db: Database) -> None:
    pw, pk, cid = await _active(db)

    async def chat(i: int) -> bool:
        try:
            await record.add_chat(db, cid, pw, "p-1", f"m{i}", utcnow())
        except NotActive:
            return False
        return True

    results = await asyncio.gather(
        *(chat(i) for i in range(10)),
        consultations.transition(db, pk, cid, ConsultationEvent.CLOSE),
        *(chat(i) for i in range(10, 20)),
    )
    stored = sum(1 for r in results if r is True)
    assert await record.chat_count(db, cid) == stored
    with pytest.raises(NotActive):
        await record.add_chat(db, cid, pw, "p-1", "after", utcnow())


async def test_snapshots_keep_their_bytes(db: Database) -> None:
    pw, _, cid = await _active(db)
    image = bytes(range(256)) * 4096  # 1 MiB, every byte value
    digest = hashlib.sha256(image).hexdigest()
    taken = await record.add_snapshot(db, cid, pw, "image/jpeg", image, digest, utcnow())
    assert (taken.size, taken.sha256, taken.taken_by) == (len(image), digest, "Dr W")
    assert await record.snapshots(db, cid) == [taken]
    found = await record.snapshot_data(db, cid, taken.id)
    assert found is not None
    assert found == (taken, image)
    assert await record.snapshot_data(db, "c-other", taken.id) is None
    assert await record.snapshot_data(db, cid, taken.id + 1) is None
    assert await record.snapshot_count(db, cid) == 1


async def test_one_person_joining_from_many_tabs_at_once_is_one_member(db: Database) -> None:
    pw, pk, cid = await _active(db)
    await asyncio.gather(*(consultations.record_member(db, cid, p) for p in [pw] * 6 + [pk] * 3))
    members = await consultations.members(db, cid, set())
    assert sorted(m.name for m in members) == ["Dr K", "Dr W"]
