"""The database login limit on SQLite and PostgreSQL: atomic reservations, the three limits,
known addresses, a bounded table; and audit appends from two processes on one database."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from signaling.auth import LoginLimits, Refused, Reserved
from signaling.storage.audit import AuditEvent, AuditLog
from signaling.storage.database import Database
from signaling.storage.login_attempts import DatabaseLoginAttempts
from signaling.storage.models import utcnow

LIMITS = LoginLimits(max_failures=3, window_s=60, per_address=6, per_account=5)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


async def _fail(attempts: DatabaseLoginAttempts, account: str, source: str) -> Refused | None:
    attempt = await attempts.reserve(account, source)
    if isinstance(attempt, Refused):
        return attempt
    await attempts.finish(attempt, succeeded=False)
    return None


async def test_parallel_reservations_never_exceed_the_limit(db: Database) -> None:
    attempts = DatabaseLoginAttempts(db, LIMITS)
    other = Database(db.url)  # a second process's engine on the same database
    try:
        second = DatabaseLoginAttempts(other, LIMITS)
        results = await asyncio.gather(
            *((attempts, second)[i % 2].reserve("user:doc", "10.0.0.1") for i in range(40))
        )
    finally:
        await other.close()
    reserved = [r for r in results if isinstance(r, Reserved)]
    assert len(reserved) == LIMITS.max_failures
    refused = [r for r in results if isinstance(r, Refused)]
    assert {r.limit for r in refused} == {"account"}
    assert all(0 < r.retry_after_s <= LIMITS.window_s for r in refused)


async def test_the_three_limits_and_the_window(db: Database) -> None:
    clock = Clock()
    attempts = DatabaseLoginAttempts(db, LIMITS, clock)
    for _ in range(3):
        assert await _fail(attempts, "user:Doc", "10.0.0.1") is None
    refused = await _fail(attempts, "user:doc", "10.0.0.1")
    assert refused is not None and refused.limit == "account"
    # Another account from the same address, the same account from another address: allowed
    # until the address's and the account's own limits.
    assert await _fail(attempts, "user:nurse", "10.0.0.1") is None
    assert await _fail(attempts, "user:doc", "10.0.0.2") is None
    assert await _fail(attempts, "user:doc", "10.0.0.3") is None
    refused = await _fail(attempts, "user:doc", "10.0.0.4")  # 5 failures of doc in all
    assert refused is not None and refused.limit == "account-wide"
    for i in range(2):
        assert await _fail(attempts, f"user:sprayed{i}", "10.0.0.1") is None
    refused = await _fail(attempts, "user:someone", "10.0.0.1")  # 6 from this address
    assert refused is not None and refused.limit == "address"
    clock.now += timedelta(seconds=LIMITS.window_s + 1)
    assert await _fail(attempts, "user:doc", "10.0.0.1") is None


async def test_a_known_address_is_not_locked_out_by_failures_elsewhere(db: Database) -> None:
    clock = Clock()
    attempts = DatabaseLoginAttempts(db, LIMITS, clock)
    ok = await attempts.reserve("user:doc", "10.0.0.1")
    assert isinstance(ok, Reserved)
    await attempts.finish(ok, succeeded=True)
    clock.now += timedelta(seconds=1)
    for i in range(LIMITS.per_account):
        assert await _fail(attempts, "user:doc", f"192.0.2.{i}") is None
    refused = await _fail(attempts, "user:doc", "192.0.2.100")
    assert refused is not None and refused.limit == "account-wide"
    # The doctor's own address still gets its attempts.
    again = await attempts.reserve("user:doc", "10.0.0.1")
    assert isinstance(again, Reserved)
    await attempts.finish(again, succeeded=True)


async def test_the_table_stays_bounded(db: Database) -> None:
    clock = Clock()
    attempts = DatabaseLoginAttempts(db, LIMITS, clock)
    for round_ in range(5):
        for i in range(20):
            await _fail(attempts, f"user:u{i}", f"10.0.{round_}.{i}")
        ok = await attempts.reserve("user:doc", "10.0.0.1")
        assert isinstance(ok, Reserved)
        await attempts.finish(ok, succeeded=True)
        clock.now += timedelta(seconds=LIMITS.window_s + 1)
    # The last round's failures, and the one row of the known address.
    assert await attempts.count() <= 20 + 1 + 1


def _event(i: int) -> AuditEvent:
    return AuditEvent("user.login", "user", i, f"u{i}", "doctor", "wonju", "10.0.0.1:1")


async def test_audit_appends_from_two_processes_keep_one_chain(db: Database) -> None:
    other = Database(db.url)
    try:
        logs = (AuditLog(db), AuditLog(other))
        await asyncio.gather(*(logs[i % 2].append(_event(i)) for i in range(40)))
    finally:
        await other.close()
    report = await AuditLog(db).verify()
    assert report.ok, report
    assert report.rows == 40
