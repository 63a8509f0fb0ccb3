"""Administrative commands: accounts, gateways, the audit chain, the database schema."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path

from signaling.auth import SecretHasher, new_gateway_key
from signaling.errors import AccountError
from signaling.schema import Role
from signaling.storage import accounts
from signaling.storage.audit import Anchor, AuditEvent, AuditLog, read_anchors
from signaling.storage.database import Database
from telemed.settings import Settings


async def _open(settings: Settings) -> Database:
    db = Database(settings.resolved_database_url())
    await db.migrate()
    await accounts.sync_sites(db, settings.sites)
    return db


async def _audit_cli(db: Database, action: str, detail: dict[str, str | int]) -> None:
    """Account changes made at the console are audited like those made over the API."""
    await AuditLog(db).append(
        AuditEvent(
            action=action,
            actor_kind="console",
            actor_id=None,
            actor_name=getpass.getuser(),
            role="",
            site="",
            source_addr="console",
            detail=detail,
        )
    )


def _policy(settings: Settings) -> accounts.PasswordPolicy:
    names = tuple(name for s in settings.sites for name in (s.code, s.name))
    return accounts.PasswordPolicy(settings.server.password_min_length, names)


async def add_user(
    settings: Settings, username: str, password: str, role: Role, site: str, name: str
) -> int:
    settings.site(site)
    db = await _open(settings)
    try:
        hasher = await asyncio.to_thread(SecretHasher, settings.server.hash_cost)
        account = await accounts.add_user(
            db, username, password, role, site, name, hasher, _policy(settings)
        )
        await _audit_cli(db, "user.create", {"user": username, "role": str(role), "site": site})
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"user {username} created (id {account.id}, {role} at {site})")
    return 0


def _sessions(count: int) -> str:
    return f"{count} session{'' if count == 1 else 's'} ended"


async def set_user_active(settings: Settings, username: str, active: bool) -> int:
    """``users enable|disable``: a disabled account's sessions end at once, in every server
    process on the database (its sockets within the server's session watch interval)."""
    db = await _open(settings)
    try:
        ended = await accounts.set_user_active(db, username, active)
        action = "user.enable" if active else "user.disable"
        await _audit_cli(db, action, {"user": username, "sessions_ended": ended})
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    state = "enabled" if active else f"disabled, {_sessions(ended)}"
    print(f"user {username} {state}")
    return 0


async def reset_password(settings: Settings, username: str, password: str) -> int:
    """``users reset-password``: the new password is held to the policy, and every session
    of the account ends."""
    db = await _open(settings)
    try:
        hasher = await asyncio.to_thread(SecretHasher, settings.server.hash_cost)
        ended = await accounts.reset_password(db, username, password, hasher, _policy(settings))
        await _audit_cli(db, "user.reset_password", {"user": username, "sessions_ended": ended})
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"password of {username} changed, {_sessions(ended)}")
    return 0


async def list_users(settings: Settings) -> int:
    db = await _open(settings)
    try:
        users = await accounts.list_users(db)
    finally:
        await db.close()
    print(f"{'user':24} {'role':10} {'site':10} {'state':8} {'sessions':>8}  name")
    for u in users:
        state = "active" if u.active else "disabled"
        print(
            f"{u.username:24} {u.role:10} {u.site:10} {state:8} {u.open_sessions:8}  "
            f"{u.display_name}"
        )
    return 0


async def add_gateway(settings: Settings, name: str, site: str) -> int:
    settings.site(site)
    key = new_gateway_key()
    db = await _open(settings)
    try:
        hasher = await asyncio.to_thread(SecretHasher, settings.server.hash_cost)
        account = await accounts.add_gateway(db, name, site, key, hasher)
        await _audit_cli(db, "gateway.create", {"gateway": name, "site": site})
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"gateway {name} created (id {account.id}, site {site})")
    print(f"key (shown once; store it in the gateway's settings): {key}")
    return 0


async def verify_audit(settings: Settings, anchor_file: Path | None = None) -> int:
    """``audit verify``: the chain, and with ``anchor_file`` every head anchored in it."""
    anchors = None
    if anchor_file is not None:
        try:
            anchors = await asyncio.to_thread(_read_anchor_file, anchor_file)
        except (OSError, ValueError) as exc:
            print(f"error: anchor file {anchor_file}: {exc}", file=sys.stderr)
            return 2
    db = Database(settings.resolved_database_url())
    try:
        log = AuditLog(db)
        report = await (log.verify() if anchors is None else log.check_anchors(anchors))
    finally:
        await db.close()
    if report.ok:
        checked = f", {len(anchors)} anchors found in it" if anchors is not None else ""
        print(f"audit chain intact: {report.rows} events, tip {report.tip}{checked}")
        return 0
    print(
        f"audit chain BROKEN at event {report.bad_seq}: {report.reason} "
        f"({report.rows} events verified before it)",
        file=sys.stderr,
    )
    return 1


def _read_anchor_file(path: Path) -> list[Anchor]:
    return read_anchors(path.read_text(encoding="utf-8").splitlines())


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def anchor_audit(settings: Settings, anchor_file: Path | None) -> int:
    """``audit anchor``: print the chain's head and append it to the anchor file (synced
    to disk before the command reports success)."""
    path = anchor_file or settings.ensure_data_dir() / "audit-anchors.txt"
    db = Database(settings.resolved_database_url())
    try:
        anchor = await AuditLog(db).head()
    finally:
        await db.close()
    try:
        await asyncio.to_thread(_append_line, path, anchor.line())
    except OSError as exc:
        print(f"error: anchor file {path}: {exc}", file=sys.stderr)
        return 1
    print(anchor.line())
    return 0


async def upgrade_db(settings: Settings) -> int:
    db = Database(settings.resolved_database_url())
    try:
        await db.migrate()
        print(f"database at revision {await db.current_revision()}")
    finally:
        await db.close()
    return 0
