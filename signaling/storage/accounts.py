"""Accounts (clinicians, gateways), sites and login sessions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from signaling.auth import SecretHasher, default_hasher
from signaling.config import SiteConfig
from signaling.errors import AccountError, SessionEnded
from signaling.schema import PrincipalKind, Role
from signaling.storage.database import Database
from signaling.storage.models import GatewayRow, SessionRow, SiteRow, UserRow, utcnow

CLINICIAN_ROLES = (Role.DOCTOR, Role.TECHNICIAN, Role.ENGINEER, Role.ADMIN)


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
) -> Account:
    if role not in CLINICIAN_ROLES:
        raise AccountError(f"role must be one of {', '.join(CLINICIAN_ROLES)}")
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
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


async def end_session(db: Database, session_id: str, reason: str) -> None:
    async with db.session() as session:
        await session.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id, SessionRow.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=reason)
        )
