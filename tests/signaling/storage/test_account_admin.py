"""Account administration on SQLite and PostgreSQL: list, disable and enable, password reset
(each ending the account's sessions), the password policy, and the session watch that carries
sessions ended by another process to this process's sockets."""

from __future__ import annotations

import pytest

from signaling.auth import Principal
from signaling.config import DEFAULT_SITES
from signaling.errors import AccountError, SessionEnded
from signaling.schema import CloseCode, PrincipalKind, Role
from signaling.server.hub import CloseRequest, Connection, Hub
from signaling.server.session_watch import SessionWatcher
from signaling.storage import accounts
from signaling.storage.database import Database

POLICY = accounts.PasswordPolicy(12, ("wonju", "Wonju", "koriyama", "Koriyama"))
GOOD = "correct horse battery"


async def _seed(db: Database) -> tuple[accounts.Account, accounts.Account]:
    await accounts.sync_sites(db, DEFAULT_SITES)
    dw = await accounts.add_user(db, "dw", GOOD, Role.DOCTOR, "wonju", "Dr W", policy=POLICY)
    dk = await accounts.add_user(db, "dk", GOOD, Role.DOCTOR, "koriyama", "Dr K")
    return dw, dk


async def test_disable_enable_reset_and_list(db: Database) -> None:
    dw, dk = await _seed(db)
    sessions = [await accounts.start_session(db, dw, "10.0.0.1:1") for _ in range(2)]
    other = await accounts.start_session(db, dk, "10.0.0.2:1")
    listed = {u.username: u for u in await accounts.list_users(db)}
    assert (listed["dw"].open_sessions, listed["dw"].active, listed["dw"].site) == (
        2,
        True,
        "wonju",
    )

    assert await accounts.set_user_active(db, "dw", False) == 2
    for sid in sessions:
        with pytest.raises(SessionEnded, match="account disabled"):
            await accounts.touch_session(db, sid, None)
    await accounts.touch_session(db, other, None)
    assert not await accounts.account_active(db, PrincipalKind.USER, dw.id)
    assert await accounts.check_user(db, "dw", GOOD) is None
    listed = {u.username: u for u in await accounts.list_users(db)}
    assert (listed["dw"].open_sessions, listed["dw"].active) == (0, False)

    assert await accounts.set_user_active(db, "dw", True) == 0
    assert await accounts.check_user(db, "dw", GOOD) == dw
    live = await accounts.start_session(db, dw, "10.0.0.1:1")
    assert await accounts.reset_password(db, "dw", "plum orchard lantern 42", policy=POLICY) == 1
    with pytest.raises(SessionEnded, match="password reset"):
        await accounts.touch_session(db, live, None)
    assert await accounts.check_user(db, "dw", GOOD) is None
    assert await accounts.check_user(db, "dw", "plum orchard lantern 42") == dw
    with pytest.raises(AccountError, match="no user"):
        await accounts.set_user_active(db, "nobody", False)


async def test_the_policy_applies_when_given(db: Database) -> None:
    await _seed(db)
    with pytest.raises(AccountError, match="common"):
        await accounts.add_user(db, "x", "password1234", Role.DOCTOR, "wonju", "", policy=POLICY)
    with pytest.raises(AccountError, match="user name"):
        await accounts.add_user(
            db, "x", "Dr Xavier Plum 77", Role.DOCTOR, "wonju", "Xavier", policy=POLICY
        )
    with pytest.raises(AccountError, match="site"):
        await accounts.reset_password(db, "dw", "wonju night shift 9", policy=POLICY)
    with pytest.raises(AccountError, match="at least 12"):
        await accounts.reset_password(db, "dw", "short one", policy=POLICY)
    assert await accounts.check_user(db, "dw", GOOD) is not None


async def test_the_session_watch_closes_sockets_of_sessions_ended_elsewhere(db: Database) -> None:
    dw, dk = await _seed(db)
    ended = await accounts.start_session(db, dw, "10.0.0.1:1")
    kept = await accounts.start_session(db, dk, "10.0.0.1:1")
    hub = Hub()
    conns: dict[str, Connection] = {}
    for account, sid in ((dw, ended), (dk, kept)):
        principal = Principal(
            account.kind, account.id, account.name, account.role, account.site, sid
        )
        conns[sid] = Connection(f"p-{sid[:6]}", principal, "10.0.0.1:1", 8)
        hub.register(conns[sid])
    watcher = SessionWatcher(db, hub, interval_s=1.0)
    assert await watcher.run_once() == []
    elsewhere = Database(db.url)  # the console's process
    try:
        assert await accounts.set_user_active(elsewhere, "dw", False) == 1
    finally:
        await elsewhere.close()
    assert await watcher.run_once() == [ended]
    assert await watcher.run_once() == []  # each ended session is handled once
    request = conns[ended].outbox.get_nowait()
    assert isinstance(request, CloseRequest) and request.code == CloseCode.SESSION_EXPIRED
    assert conns[kept].outbox.empty()
