"""Account administration (issue 10, finding 6 and the password policy): ``telemed users
disable|enable|list|reset-password``, run as a separate process against the database of a
running server, which must notice through the database alone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import update

from signaling.auth import password_problem
from signaling.schema import CloseCode, Role
from signaling.storage.models import UserRow
from tests.helpers import PASSWORD, LiveServer, make_config, run_server
from tests.signaling.sockets import api, auth, connect, recv

NEW_PASSWORD = "plum orchard lantern 42"


def _telemed_on(
    server: LiveServer, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The ``telemed`` command on the live server's database, as an administrator runs it."""
    env = {**os.environ, "TELEMED_DATABASE_URL": server.config.database_url}
    return subprocess.run(
        [sys.executable, "-m", "telemed", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


async def _cli(server: LiveServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_telemed_on, server, *args, stdin=stdin)


async def _login(server: LiveServer, username: str, password: str) -> int:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        return response.status_code


@pytest.mark.slow
@pytest.mark.cpu
async def test_disable_ends_every_session_and_socket_of_the_account(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path, activity_flush_s=0.2)) as server:
        # The app's lifespan starts the services' tasks (the session watch among them).
        try:
            await server.add_user("dw", Role.DOCTOR, "wonju")
            await server.add_user("tw", Role.TECHNICIAN, "wonju")
            tokens = [await server.token("dw"), await server.token("dw")]
            other = await server.token("tw")
            ws, _ = await connect(server, tokens[0])
            other_ws, _ = await connect(server, other)

            disabled = await _cli(server, "users", "disable", "dw")
            assert disabled.returncode == 0, disabled.stderr
            assert "2 sessions ended" in disabled.stdout

            # The open socket is told and closed (by the server's watch of ended sessions).
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await recv(ws, timeout=10)
            assert ws.close_code == CloseCode.SESSION_EXPIRED
            for token in tokens:
                assert (await api(server, "GET", "/api/auth/me", token)).status_code == 401
                assert (await api(server, "POST", "/api/auth/refresh", token)).status_code == 401
                created = await api(
                    server,
                    "POST",
                    "/api/consultations",
                    token,
                    json={"consulting_site": "koriyama", "consent_cross_border": True},
                )
                assert created.status_code == 401
            assert await _login(server, "dw", PASSWORD) == 401
            # Nobody else's session or socket is touched.
            assert (await api(server, "GET", "/api/auth/me", other)).status_code == 200
            await other_ws.send('{"type":"ping","nonce":1}')
            assert await recv(other_ws) == {"type": "pong", "nonce": 1}
            await other_ws.close()

            enabled = await _cli(server, "users", "enable", "dw")
            assert enabled.returncode == 0, enabled.stderr
            assert await _login(server, "dw", PASSWORD) == 200
            # Enabling opens no old session again.
            assert (await api(server, "GET", "/api/auth/me", tokens[1])).status_code == 401
        finally:
            await server.services.stop()
        report = await server.services.audit.verify()
        assert report.ok


async def test_refresh_checks_the_account_again(server: LiveServer) -> None:
    account = await server.add_user("dw", Role.DOCTOR, "wonju")
    token = await server.token("dw")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.post("/api/auth/refresh", headers=auth(token))).status_code == 200
        # Deactivated behind the server's back (another tool, another process): the session
        # is still open, but a refresh must not extend it.
        async with server.services.db.session() as session:
            await session.execute(
                update(UserRow).where(UserRow.id == account.id).values(active=False)
            )
        refused = await http.post("/api/auth/refresh", headers=auth(token))
        assert refused.status_code == 401
        assert "disabled" in refused.json()["detail"]
        # ...and the session has ended with it.
        assert (await http.get("/api/auth/me", headers=auth(token))).status_code == 401


@pytest.mark.slow
@pytest.mark.cpu
async def test_list_and_reset_password(server: LiveServer) -> None:
    await server.add_user("dw", Role.DOCTOR, "wonju")
    await server.add_user("dk", Role.DOCTOR, "koriyama")
    token = await server.token("dw")
    assert (await _cli(server, "users", "disable", "dk")).returncode == 0
    listed = await _cli(server, "users", "list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(lines) == {"dw", "dk"}
    assert "doctor" in lines["dw"] and "wonju" in lines["dw"] and "active" in lines["dw"]
    assert "disabled" in lines["dk"]

    reset = await _cli(
        server, "users", "reset-password", "dw", "--password-stdin", stdin=NEW_PASSWORD + "\n"
    )
    assert reset.returncode == 0, reset.stderr
    assert "1 session ended" in reset.stdout
    assert (await api(server, "GET", "/api/auth/me", token)).status_code == 401
    assert await _login(server, "dw", PASSWORD) == 401
    assert await _login(server, "dw", NEW_PASSWORD) == 200

    missing = await _cli(server, "users", "disable", "nobody")
    assert missing.returncode == 1
    assert "no user 'nobody'" in missing.stderr


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pw 1", "at least 12"),
        ("password1234", "common"),
        ("qwertyuiopasdf", "guess"),
        ("nurse.wonju-2026!", "user name"),
        ("Nurse Kim Seoyeon", "user name"),
        ("koriyama-hospital", "site"),
        ("aaaaaaaaaaaaaaaa", "guess"),
    ],
)
def test_the_password_policy(password: str, reason: str) -> None:
    problem = password_problem(
        password, 12, ("nurse.wonju", "Kim Seoyeon"), ("wonju", "Wonju", "koriyama", "Koriyama")
    )
    assert problem is not None and reason in problem
    assert password_problem(PASSWORD, 12, ("nurse.wonju",), ("wonju", "koriyama")) is None


@pytest.mark.slow
@pytest.mark.cpu
async def test_the_commands_hold_passwords_to_the_policy(server: LiveServer) -> None:
    await server.add_user("dw", Role.DOCTOR, "wonju")
    added = await _cli(
        server,
        "users",
        "add",
        "nurse.wonju",
        "--role",
        "technician",
        "--site",
        "wonju",
        "--password-stdin",
        stdin="password1234\n",
    )
    assert added.returncode == 1
    assert "common" in added.stderr, added.stderr
    reset = await _cli(
        server, "users", "reset-password", "dw", "--password-stdin", stdin="short pw 1\n"
    )
    assert reset.returncode == 1
    assert "at least 12" in reset.stderr, reset.stderr
    assert await _login(server, "dw", PASSWORD) == 200
