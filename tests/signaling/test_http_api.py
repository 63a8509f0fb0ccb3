"""The HTTP API on a real server: login, rate limit, tokens, consultations, ICE servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import pytest

from signaling.config import TurnConfig
from signaling.schema import Role
from tests.helpers import PASSWORD, LiveServer, make_config, run_server


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_health_and_openapi_need_no_token(tmp_path: Path) -> None:
    async with (
        run_server(make_config(tmp_path, api_docs=True)) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        health = (await http.get("/healthz")).json()
        assert health == {"status": "ok", "database": "ok", "connections": 0}
        spec = (await http.get("/openapi.json")).json()
        assert "/api/consultations" in spec["paths"]
        assert (await http.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/consultations", "/api/ice-servers", "/api/sites", "/api/auth/me"]
)
async def test_every_api_route_needs_a_valid_token(server: LiveServer, path: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers=_auth("not-a-token"))).status_code == 401


async def test_login_logout_and_rate_limit(server: LiveServer) -> None:
    await server.add_user("doctor.wonju", Role.DOCTOR, "wonju")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        token = await server.token("doctor.wonju")
        me = (await http.get("/api/auth/me", headers=_auth(token))).json()
        assert me["role"] == "doctor"
        assert me["site"] == "wonju"
        assert (await http.post("/api/auth/logout", headers=_auth(token))).status_code == 204
        refused = await http.get("/api/auth/me", headers=_auth(token))
        assert refused.status_code == 401
        assert "logout" in refused.json()["detail"]

        bad = {"username": "doctor.wonju", "password": "wrong password"}
        for _ in range(server.config.login_max_failures):
            assert (await http.post("/api/auth/login", json=bad)).status_code == 401
        limited = await http.post("/api/auth/login", json=bad)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) > 0
        # The right password is refused too while the limit holds.
        good = {"username": "doctor.wonju", "password": PASSWORD}
        assert (await http.post("/api/auth/login", json=good)).status_code == 429
    report = await server.services.audit.verify()
    assert report.ok
    assert report.rows >= 7


async def test_idle_session_is_logged_out(tmp_path: Path) -> None:
    # Long enough for the login and the first request on a loaded machine (0.3 s was not).
    async with run_server(make_config(tmp_path, inactivity_timeout_s=1.5)) as server:
        await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
        token = await server.token("tech.wonju")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/api/auth/me", headers=_auth(token))).status_code == 200
            await asyncio.sleep(2.0)
            refused = await http.get("/api/auth/me", headers=_auth(token))
            assert refused.status_code == 401
            assert "idle" in refused.json()["detail"]


async def test_consultation_flow_and_permissions(server: LiveServer) -> None:
    for name, role, site in [
        ("doctor.wonju", Role.DOCTOR, "wonju"),
        ("tech.wonju", Role.TECHNICIAN, "wonju"),
        ("doctor.koriyama", Role.DOCTOR, "koriyama"),
        ("engineer", Role.ENGINEER, "koriyama"),
        ("admin", Role.ADMIN, "koriyama"),
    ]:
        await server.add_user(name, role, site)
    tw, dk, dw, eng, adm = [
        await server.token(n)
        for n in ("tech.wonju", "doctor.koriyama", "doctor.wonju", "engineer", "admin")
    ]
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        same_site = await http.post(
            "/api/consultations",
            headers=_auth(tw),
            json={"consulting_site": "wonju", "consent_cross_border": True},
        )
        assert same_site.status_code == 422
        created = await http.post(
            "/api/consultations",
            headers=_auth(tw),
            json={"consulting_site": "koriyama", "consent_cross_border": False, "reason": "ECG"},
        )
        assert created.status_code == 201, created.text
        c = created.json()
        assert (c["requesting_site"], c["state"], c["consent_cross_border"]) == (
            "wonju",
            "requested",
            False,
        )
        cid = c["id"]
        # Only a doctor of the consulting site accepts.
        for token in (tw, dw):
            r = await http.post(f"/api/consultations/{cid}/accept", headers=_auth(token))
            assert r.status_code == 403
        assert (await http.get(f"/api/consultations/{cid}", headers=_auth(eng))).status_code == 404
        assert (await http.get("/api/consultations", headers=_auth(eng))).json() == []
        accepted = await http.post(f"/api/consultations/{cid}/accept", headers=_auth(dk))
        assert accepted.json()["state"] == "active"
        again = await http.post(f"/api/consultations/{cid}/accept", headers=_auth(dk))
        assert again.status_code == 409
        listed = (await http.get("/api/consultations", headers=_auth(adm))).json()
        assert [x["id"] for x in listed] == [cid]
        closed = await http.post(f"/api/consultations/{cid}/close", headers=_auth(dw))
        assert closed.json()["state"] == "closed"
        assert closed.json()["ended_at"]
        missing = await http.post("/api/consultations/c-nothere/close", headers=_auth(dw))
        assert missing.status_code == 404


async def test_ice_servers_give_turn_rest_credentials(tmp_path: Path) -> None:
    turn = TurnConfig(urls=("turn:127.0.0.1:3478?transport=udp",), secret="s3cret", ttl_s=600)
    config = make_config(tmp_path, turn=turn, stun_urls=("stun:127.0.0.1:3478",))
    async with run_server(config) as server:
        await server.add_user("doctor.wonju", Role.DOCTOR, "wonju")
        token = await server.token("doctor.wonju")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            body = (await http.get("/api/ice-servers", headers=_auth(token))).json()
    stun, relay = body["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"], "username": None, "credential": None}
    expiry, user = relay["username"].split(":")
    assert user.startswith("user-")
    expected = base64.b64encode(
        hmac.new(b"s3cret", relay["username"].encode(), hashlib.sha1).digest()
    ).decode()
    assert relay["credential"] == expected
    assert 590 <= int(expiry) - time.time() <= 600
