"""Accounts (clinicians, gateways), sites and login sessions."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from signaling.auth import SecretHasher, default_hasher, password_problem
from signaling.config import SiteConfig
from signaling.errors import AccountError, SessionEnded
from signaling.schema import PrincipalKind, Role
from signaling.storage.database import Database
from signaling.storage.models import GatewayRow, SessionRow, SiteRow, UserRow, utcnow

CLINICIAN_ROLES = (Role.DOCTOR, Role.TECHNICIAN, Role.ENGINEER, Role.ADMIN)


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password must satisfy (:func:`signaling.auth.password_problem`)."""

    min_length: int
    #: Site codes and names, which a password may not contain.
    site_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserInfo:
    """A clinician account as ``telemed users list`` shows it."""

    username: str
    display_name: str
    role: str
    site: str
    active: bool
    created_at: datetime
    #: Sessions not ended (some may be idle past their timeout, not yet noticed).
    open_sessions: int


async def _check_password(
    password: str, policy: PasswordPolicy | None, user_names: tuple[str, ...]
) -> None:
    if policy is None:
        problem = "a password needs at least 8 characters" if len(password) < 8 else None
    else:
        problem = await asyncio.to_thread(
            password_problem, password, policy.min_length, user_names, policy.site_names
        )
    if problem is not None:
        raise AccountError(problem)


@dataclass(frozen=True)
class Account:
    kind: PrincipalKind
    id: int
    name: str
    role: Role
    site: str


async def sync_sites(db: Database, sites: tuple[SiteConfig, ...]) -> None:
    """Make the sites table hold the configured sites (added or updated, never deleted,
    since consultations refer to them)."""
    async with db.session() as session:
        for site in sites:
            row = await session.get(SiteRow, site.code)
            if row is None:
                row = SiteRow(code=site.code)
                session.add(row)
            row.name, row.country, row.language = site.name, site.country, site.language
            row.timezone, row.mains_hz = site.timezone, site.mains_hz


async def add_user(
    db: Database,
    username: str,
    password: str,
    role: Role,
    site: str,
    display_name: str,
    hasher: SecretHasher | None = None,
    policy: PasswordPolicy | None = None,
) -> Account:
    """A new clinician account. Its password is held to ``policy`` when one is given (the
    ``telemed users`` command gives the configured one), else to 8 characters at least."""
    if role not in CLINICIAN_ROLES:
        raise AccountError(f"role must be one of {', '.join(CLINICIAN_ROLES)}")
    await _check_password(password, policy, (username, display_name))
    password_hash = await (hasher or default_hasher()).hash_async(password)
    try:
        async with db.session() as session:
            if await session.get(SiteRow, site) is None:
                raise AccountError(f"unknown site {site!r}")
            row = UserRow(
                username=username,
                display_name=display_name or username,
                role=str(role),
                site_code=site,
                password_hash=password_hash,
                active=True,
            )
            session.add(row)
            await session.flush()
            return Account(PrincipalKind.USER, row.id, row.display_name, role, site)
    except IntegrityError:
        raise AccountError(f"user {username!r} exists already") from None


async def add_gateway(
    db: Database, name: str, site: str, key: str, hasher: SecretHasher | None = None
) -> Account:
    key_hash = await (hasher or default_hasher()).hash_async(key)
    try:
        async with db.session() as session:
            if await session.get(SiteRow, site) is None:
                raise AccountError(f"unknown site {site!r}")
            row = GatewayRow(name=name, site_code=site, key_hash=key_hash, active=True)
            session.add(row)
            await session.flush()
            return Account(PrincipalKind.GATEWAY, row.id, name, Role.GATEWAY, site)
    except IntegrityError:
        raise AccountError(f"gateway {name!r} exists already") from None


async def check_user(
    db: Database, username: str, password: str, hasher: SecretHasher | None = None
) -> Account | None:
    """The account when the password matches an active user, else None (constant effort)."""
    async with db.session() as session:
        row = await session.scalar(select(UserRow).where(UserRow.username == username))
    ok = await (hasher or default_hasher()).verify_async(
        row.password_hash if row else None, password
    )
    if row is None or not ok or not row.active:
        return None
    return Account(PrincipalKind.USER, row.id, row.display_name, Role(row.role), row.site_code)


async def list_users(db: Database) -> list[UserInfo]:
    """Every clinician account, by site and name."""
    open_sessions = (
        select(func.count())
        .where(
            SessionRow.principal_kind == str(PrincipalKind.USER),
            SessionRow.principal_id == UserRow.id,
            SessionRow.ended_at.is_(None),
        )
        .scalar_subquery()
    )
    async with db.session() as session:
        rows = await session.execute(
            select(UserRow, open_sessions).order_by(UserRow.site_code, UserRow.username)
        )
        return [
            UserInfo(
                row.username,
                row.display_name,
                row.role,
                row.site_code,
                row.active,
                row.created_at,
                int(count),
            )
            for row, count in rows
        ]


async def _user(session: AsyncSession, username: str) -> UserRow:
    row = await session.scalar(select(UserRow).where(UserRow.username == username))
    if row is None:
        raise AccountError(f"no user {username!r}")
    return row


async def end_sessions_of(
    session: AsyncSession, kind: PrincipalKind, account_id: int, reason: str
) -> int:
    """End every open session of the account (in ``session``'s transaction); how many.

    Every server process notices through the database: HTTP requests on their next token
    check, sockets through :class:`signaling.server.session_watch.SessionWatcher`."""
    result = await session.execute(
        update(SessionRow)
        .where(
            SessionRow.principal_kind == str(kind),
            SessionRow.principal_id == account_id,
            SessionRow.ended_at.is_(None),
        )
        .values(ended_at=utcnow(), end_reason=reason[:32])
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def set_user_active(db: Database, username: str, active: bool) -> int:
    """Enable or disable a clinician account. Disabling ends all its sessions at once (their
    number is returned); enabling opens none again: the user logs in anew."""
    async with db.session() as session:
        row = await _user(session, username)
        row.active = active
        if active:
            return 0
        return await end_sessions_of(session, PrincipalKind.USER, row.id, "account disabled")


async def reset_password(
    db: Database,
    username: str,
    password: str,
    hasher: SecretHasher | None = None,
    policy: PasswordPolicy | None = None,
) -> int:
    """Give a clinician a new password and end all the account's sessions (how many): whoever
    held the old one is signed out everywhere."""
    async with db.session() as session:
        row = await _user(session, username)
        names = (row.username, row.display_name)
    await _check_password(password, policy, names)
    password_hash = await (hasher or default_hasher()).hash_async(password)
    async with db.session() as session:
        row = await _user(session, username)
        row.password_hash = password_hash
        return await end_sessions_of(session, PrincipalKind.USER, row.id, "password reset")


async def account_active(db: Database, kind: PrincipalKind, account_id: int) -> bool:
    """Whether the account still exists and is enabled."""
    table = UserRow if kind is PrincipalKind.USER else GatewayRow
    async with db.session() as session:
        active = await session.scalar(select(table.active).where(table.id == account_id))
    return bool(active)


async def check_gateway(
    db: Database, name: str, key: str, hasher: SecretHasher | None = None
) -> Account | None:
    async with db.session() as session:
        row = await session.scalar(select(GatewayRow).where(GatewayRow.name == name))
    ok = await (hasher or default_hasher()).verify_async(row.key_hash if row else None, key)
    if row is None or not ok or not row.active:
        return None
    return Account(PrincipalKind.GATEWAY, row.id, row.name, Role.GATEWAY, row.site_code)


async def start_session(db: Database, account: Account, source_addr: str) -> str:
    session_id = secrets.token_hex(16)
    now = utcnow()
    async with db.session() as session:
        session.add(
            SessionRow(
                id=session_id,
                principal_kind=str(account.kind),
                principal_id=account.id,
                source_addr=source_addr[:64],
                created_at=now,
                last_active_at=now,
            )
        )
    return session_id


async def touch_session(
    db: Database,
    session_id: str,
    idle_timeout: timedelta | None,
    *,
    activity: bool = True,
    now: datetime | None = None,
) -> datetime:
    """Check the session is live; with ``activity`` record it as active now.

    Returns the time of its last activity. Raises :class:`SessionEnded` when it was ended, or
    has been idle longer than ``idle_timeout`` (it is then ended with reason ``idle``).
    """
    now = now or utcnow()
    ended: SessionEnded | None = None
    async with db.session() as session:
        row = await session.get(SessionRow, session_id)
        if row is None:
            raise SessionEnded("unknown session")
        if row.ended_at is not None:
            raise SessionEnded(row.end_reason or "ended")
        if idle_timeout is not None and now - row.last_active_at > idle_timeout:
            # Record the logout (the transaction commits), then report it.
            row.ended_at, row.end_reason = now, "idle"
            ended = SessionEnded("idle")
        elif activity:
            row.last_active_at = now
        last_active = row.last_active_at
    if ended is not None:
        raise ended
    return last_active


@dataclass(frozen=True)
class SessionState:
    """A session as :class:`SessionChecks` reads it."""

    last_active_at: datetime
    #: Why it ended; None while it is open.
    end_reason: str | None


class SessionChecks:
    """Sessions checked many at once: the checks asked for while one query runs are made
    together by the next, in one query. 500 sockets saying hello at once wait for a few
    queries instead of 500 one after another (on SQLite each waits its turn for the
    database). Read only: ending an idle session is :func:`touch_session`'s."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self._pending: dict[str, list[asyncio.Future[SessionState | None]]] = {}

    async def state(self, session_id: str) -> SessionState | None:
        """The session's state now (read after this call began); None if there is none."""
        future: asyncio.Future[SessionState | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(session_id, []).append(future)
        try:
            async with self._lock:
                if not future.done():
                    await self._read()
        except asyncio.CancelledError:
            waiting = self._pending.get(session_id, [])
            if future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._pending[session_id]
            raise
        except Exception:
            if future.done():
                future.exception()  # the same error, raised here: retrieved
            raise
        return future.result()

    async def _read(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            found: dict[str, SessionState] = {}
            ids = list(batch)
            async with self._db.session() as session:
                for start in range(0, len(ids), 500):
                    rows = await session.execute(
                        select(
                            SessionRow.id,
                            SessionRow.last_active_at,
                            SessionRow.ended_at,
                            SessionRow.end_reason,
                        ).where(SessionRow.id.in_(ids[start : start + 500]))
                    )
                    for sid, last, ended, reason in rows:
                        found[sid] = SessionState(
                            last, None if ended is None else reason or "ended"
                        )
        except BaseException as exc:
            for sid, futures in batch.items():
                for future in futures:
                    if isinstance(exc, asyncio.CancelledError):
                        # Not read: back in the queue, for the next check to read.
                        self._pending.setdefault(sid, []).append(future)
                    else:
                        future.set_exception(exc)
            raise
        for sid, futures in batch.items():
            for future in futures:
                future.set_result(found.get(sid))


async def end_session(db: Database, session_id: str, reason: str) -> None:
    async with db.session() as session:
        await session.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id, SessionRow.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=reason)
        )
