"""The session checks of hello, many in one query (SessionChecks), on SQLite and PostgreSQL:
each caller gets its own session's state, ended and unknown sessions are told apart, and the
checks asked for while one query runs are made together by the next."""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from signaling.config import DEFAULT_SITES
from signaling.schema import Role
from signaling.storage import accounts
from signaling.storage.database import Database

GOOD = "correct horse battery"


async def test_many_checks_at_once_take_few_queries(db: Database) -> None:
    await accounts.sync_sites(db, DEFAULT_SITES)
    dw = await accounts.add_user(db, "dw", GOOD, Role.DOCTOR, "wonju", "Dr W")
    sessions = [await accounts.start_session(db, dw, f"10.0.0.1:{i}") for i in range(200)]
    await accounts.end_session(db, sessions[7], "logout")
    checks = accounts.SessionChecks(db)
    queries: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM sessions" in statement:
            queries.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        ids = [*sessions, "no-such-session"] * 2  # each asked twice: both answered
        states = await asyncio.gather(*(checks.state(sid) for sid in ids))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    by_id = dict(zip(ids, states, strict=True))
    assert by_id["no-such-session"] is None
    ended = by_id[sessions[7]]
    assert ended is not None and ended.end_reason == "logout"
    for sid in sessions[:7] + sessions[8:]:
        state = by_id[sid]
        assert state is not None and state.end_reason is None
    # The first check reads alone; the 401 asked meanwhile are read together (one query
    # per 500 ids): one by one they were 402 queries.
    assert len(queries) <= 3, len(queries)


async def test_a_cancelled_check_leaves_the_others_answered(db: Database) -> None:
    await accounts.sync_sites(db, DEFAULT_SITES)
    dw = await accounts.add_user(db, "dw", GOOD, Role.DOCTOR, "wonju", "Dr W")
    sid = await accounts.start_session(db, dw, "10.0.0.1:1")
    checks = accounts.SessionChecks(db)
    tasks = [asyncio.create_task(checks.state(sid)) for _ in range(20)]
    await asyncio.sleep(0)
    tasks[0].cancel()  # the one reading for the others
    tasks[5].cancel()  # one waiting
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert isinstance(done[5], asyncio.CancelledError)
    for i, state in enumerate(done):
        if i not in (0, 5):
            assert isinstance(state, accounts.SessionState) and state.end_reason is None
