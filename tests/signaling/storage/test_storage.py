"""The storage layer against real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from signaling.auth import Principal
from signaling.config import DEFAULT_SITES
from signaling.consultation_fsm import ConsultationEvent
from signaling.errors import AccountError, IllegalTransition, NotPermitted, SessionEnded
from signaling.schema import ConsultationAction, ConsultationState, PrincipalKind, Role
from signaling.storage import accounts, consultations
from signaling.storage.audit import AuditEvent, AuditLog
from signaling.storage.database import Database
from signaling.storage.models import Base, utcnow


async def test_migrations_build_exactly_the_models(db: Database) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    assert await db.current_revision() == Database.head_revision()


async def test_migrate_is_idempotent(db: Database) -> None:
    await db.migrate()
    assert await db.current_revision() == Database.head_revision()


async def _seed(db: Database) -> tuple[accounts.Account, accounts.Account]:
    await accounts.sync_sites(db, DEFAULT_SITES)
    doctor_w = await accounts.add_user(db, "dw", "password-w", Role.DOCTOR, "wonju", "Dr W")
    doctor_k = await accounts.add_user(db, "dk", "password-k", Role.DOCTOR, "koriyama", "Dr K")
    return doctor_w, doctor_k


def _principal(account: accounts.Account, session: str = "s") -> Principal:
    return Principal(account.kind, account.id, account.name, account.role, account.site, session)


async def test_accounts_and_passwords(db: Database) -> None:
    doctor_w, _ = await _seed(db)
    assert await accounts.check_user(db, "dw", "password-w") == doctor_w
    assert await accounts.check_user(db, "dw", "wrong") is None
    assert await accounts.check_user(db, "nobody", "password-w") is None
    with pytest.raises(AccountError, match="exists already"):
        await accounts.add_user(db, "dw", "password-x", Role.DOCTOR, "wonju", "")
    with pytest.raises(AccountError, match="unknown site"):
        await accounts.add_user(db, "x", "password-x", Role.DOCTOR, "atlantis", "")
    with pytest.raises(AccountError, match="role"):
        await accounts.add_user(db, "x", "password-x", Role.GATEWAY, "wonju", "")
    gw = await accounts.add_gateway(db, "bedside-1", "wonju", "k" * 40)
    assert await accounts.check_gateway(db, "bedside-1", "k" * 40) == gw
    assert await accounts.check_gateway(db, "bedside-1", "k" * 39) is None


async def test_sessions_end_on_logout_and_idleness(db: Database) -> None:
    doctor_w, _ = await _seed(db)
    sid = await accounts.start_session(db, doctor_w, "127.0.0.1:1")
    idle = timedelta(minutes=15)
    await accounts.touch_session(db, sid, idle)
    later = utcnow() + timedelta(minutes=16)
    with pytest.raises(SessionEnded, match="idle"):
        await accounts.touch_session(db, sid, idle, now=later)
    # The idle logout was recorded: the session stays ended even when checked "in time".
    with pytest.raises(SessionEnded, match="idle"):
        await accounts.touch_session(db, sid, idle)

    sid2 = await accounts.start_session(db, doctor_w, "127.0.0.1:1")
    await accounts.end_session(db, sid2, "logout")
    with pytest.raises(SessionEnded, match="logout"):
        await accounts.touch_session(db, sid2, None)


async def test_consultation_life_cycle_persists(db: Database) -> None:
    doctor_w, doctor_k = await _seed(db)
    pw, pk = _principal(doctor_w), _principal(doctor_k)
    row = await consultations.create(db, pw, "koriyama", True, "second opinion")
    assert row.state == ConsultationState.REQUESTED
    with pytest.raises(NotPermitted, match="only a doctor of the consulting site"):
        await consultations.transition(db, pw, row.id, ConsultationEvent.ACCEPT)
    # Closing a request cancels it (the requester) or declines it (the consulting doctor).
    assert consultations.allowed_actions(pw, row) == [
        ConsultationAction.CANCEL,
        ConsultationAction.CLOSE,
    ]
    assert consultations.allowed_actions(pk, row) == [
        ConsultationAction.ACCEPT,
        ConsultationAction.CLOSE,
    ]
    accepted = await consultations.transition(db, pk, row.id, ConsultationEvent.ACCEPT)
    assert accepted.state == ConsultationState.ACTIVE
    assert accepted.accepted_at is not None
    with pytest.raises(IllegalTransition):
        await consultations.transition(db, pw, row.id, ConsultationEvent.CANCEL)

    await consultations.record_member(db, row.id, pw)
    await consultations.record_member(db, row.id, pw)  # re-join updates, does not duplicate
    members = await consultations.members(db, row.id, {(PrincipalKind.USER, doctor_w.id)})
    assert [(m.name, m.online) for m in members] == [("Dr W", True)]

    # A new Database object on the same URL (a restarted server) sees the same state.
    again = Database(db.url)
    try:
        stored = await consultations.get(again, row.id)
        assert stored is not None
        assert stored.state == ConsultationState.ACTIVE
        assert stored.consent_cross_border is True
        listed = await consultations.list_visible(again, pk)
        assert [c.id for c in listed] == [row.id]
    finally:
        await again.close()


def _event(action: str, n: int = 0) -> AuditEvent:
    return AuditEvent(
        action=action,
        actor_kind="user",
        actor_id=n,
        actor_name=f"user {n}",
        role="doctor",
        site="wonju",
        source_addr="127.0.0.1:5000",
        consultation_id="c-1",
        detail={"n": n, "note": "서울/東京"},
    )


async def test_audit_chain_verifies(db: Database) -> None:
    log = AuditLog(db)
    seqs = [await log.append(_event("consultation.view", i)) for i in range(20)]
    assert seqs == list(range(1, 21))
    report = await log.verify()
    assert report.ok, report
    assert report.rows == 20


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason"),
    [
        ("UPDATE audit_events SET actor_name = 'someone else' WHERE seq = 7", 7, "contents"),
        ("UPDATE audit_events SET detail = '{}' WHERE seq = 3", 3, "contents"),
        ("DELETE FROM audit_events WHERE seq = 5", 5, "missing"),
        ("DELETE FROM audit_events WHERE seq = 10", 10, "tip"),
        ("UPDATE audit_events SET seq = 100 WHERE seq = 1", 1, "missing"),
    ],
)
async def test_audit_tampering_is_detected(
    db: Database, tamper: str, bad_seq: int, reason: str
) -> None:
    log = AuditLog(db)
    for i in range(10):
        await log.append(_event("consultation.view", i))
    async with db.engine.begin() as conn:
        await conn.execute(text(tamper))
    report = await log.verify()
    assert not report.ok
    assert report.bad_seq == bad_seq
    assert reason in report.reason


async def test_audit_appends_serialise_under_concurrency(db: Database) -> None:
    import asyncio

    log = AuditLog(db)
    await asyncio.gather(*(log.append(_event("ws.connect", i)) for i in range(30)))
    report = await log.verify()
    assert report.ok
    assert report.rows == 30
