"""The login rate limit in the database, shared by every server process on it.

An attempt is reserved before its password is checked, in one transaction that inserts a
``pending`` row and then counts: if a limit is exceeded, the row is deleted again and the
attempt refused unchecked. Reservations are serialised across processes, so parallel
requests cannot all pass a count taken before any of them was recorded: on SQLite the
insert comes first and takes the database's single write lock (held to the commit, and the
count then sees every earlier reservation); on PostgreSQL a transaction-scoped advisory lock
comes first. A ``pending`` row counts as a failure until :meth:`finish` records the outcome
(a server killed mid-check leaves one, which ages out with the window).

The table stays bounded: each reservation deletes the rows older than the window, except
the newest ``ok`` of each (account, source), which marks a known address for
``known_address_days``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from signaling.auth import LoginLimits, Refused, Reserved
from signaling.storage.database import Database
from signaling.storage.models import LoginAttemptRow, utcnow

PENDING, FAILED, OK = "pending", "failed", "ok"
#: The PostgreSQL advisory lock key that serialises reservations ("telemed login").
_LOCK_KEY = 0x74656C_6C6F67


class DatabaseLoginAttempts:
    """:class:`signaling.auth.LoginAttempts` on the server's database. ``clock`` gives wall
    time (every process sharing the database should agree on it to a second or so)."""

    def __init__(
        self, db: Database, limits: LoginLimits, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._db = db
        self.limits = limits
        self._now = clock

    async def reserve(self, account: str, source: str) -> Reserved | Refused:
        account, source = account.lower()[:200], source[:64]
        now = self._now()
        window = timedelta(seconds=self.limits.window_s)
        cutoff = now - window
        async with self._db.session() as session:
            if self._db.dialect == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
                )
            # On SQLite this insert is the transaction's first statement: it waits for, then
            # holds, the write lock, and the counts below see every reservation before it.
            row = LoginAttemptRow(account=account, source=source, at=now, outcome=PENDING)
            session.add(row)
            await session.flush()
            counted = and_(
                LoginAttemptRow.outcome.in_((PENDING, FAILED)),
                LoginAttemptRow.at > cutoff,
                LoginAttemptRow.id != row.id,
            )
            pair = and_(LoginAttemptRow.account == account, LoginAttemptRow.source == source)
            last_ok = await session.scalar(
                select(func.max(LoginAttemptRow.at)).where(pair, LoginAttemptRow.outcome == OK)
            )
            known = last_ok is not None and last_ok > now - timedelta(
                days=self.limits.known_address_days
            )
            checks: list[tuple[str, ColumnElement[bool], int]] = [
                (
                    "account",
                    and_(pair, LoginAttemptRow.at > last_ok) if last_ok is not None else pair,
                    self.limits.max_failures,
                ),
                ("address", LoginAttemptRow.source == source, self.limits.per_address),
            ]
            if not known:
                checks.append(
                    ("account-wide", LoginAttemptRow.account == account, self.limits.per_account)
                )
            for name, where, limit in checks:
                count, oldest = (
                    await session.execute(
                        select(func.count(), func.min(LoginAttemptRow.at)).where(counted, where)
                    )
                ).one()
                if count >= limit:
                    await session.delete(row)
                    wait = (oldest + window - now).total_seconds() if oldest else 1.0
                    # (Another reservation may carry a later time than this one's.)
                    return Refused(max(1.0, min(wait, self.limits.window_s)), name)
            await self._prune(session, now, cutoff)
            return Reserved(row.id, account, source)

    async def _prune(self, session: AsyncSession, now: datetime, cutoff: datetime) -> None:
        known_cutoff = now - timedelta(days=self.limits.known_address_days)
        await session.execute(
            delete(LoginAttemptRow).where(
                LoginAttemptRow.at < cutoff,
                or_(LoginAttemptRow.outcome != OK, LoginAttemptRow.at < known_cutoff),
            )
        )

    async def finish(self, attempt: Reserved, succeeded: bool) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(LoginAttemptRow)
                .where(LoginAttemptRow.id == attempt.handle)
                .values(outcome=OK if succeeded else FAILED)
            )
            if succeeded:
                # One ok row per (account, source) is all a known address needs.
                await session.execute(
                    delete(LoginAttemptRow).where(
                        LoginAttemptRow.account == attempt.account,
                        LoginAttemptRow.source == attempt.source,
                        LoginAttemptRow.outcome == OK,
                        LoginAttemptRow.id != attempt.handle,
                    )
                )

    async def count(self) -> int:
        """Rows in the table (for tests and monitoring: it must stay bounded)."""
        async with self._db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(LoginAttemptRow)) or 0)
