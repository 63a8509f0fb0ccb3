"""Security headers on every HTTP response, and the API's pages only when asked for."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from signaling.schema import Role
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import connect

#: What every response carries, whatever answered it (a route, a refusal, a static file).
EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
PATHS = [
    ("GET", "/"),
    ("GET", "/js/app.js"),
    ("GET", "/css/app.css"),
    ("GET", "/healthz"),
    ("GET", "/api/consultations"),  # 401
    ("POST", "/api/auth/login"),  # 422
    ("GET", "/no/such/file"),  # 404
    ("DELETE", "/healthz"),  # 405
    ("GET", "/openapi.json"),  # 404: off by default
]


def _directives(policy: str) -> dict[str, list[str]]:
    parts = [p.split() for p in policy.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


async def _responses(server: LiveServer) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        return [await http.request(method, path) for method, path in PATHS]


async def test_every_response_carries_the_headers(server: LiveServer) -> None:
    for response in await _responses(server):
        what = (response.request.method, response.request.url.path, response.status_code)
        for name, value in EXPECTED.items():
            assert response.headers.get(name) == value, (what, name)
        csp = _directives(response.headers["content-security-policy"])
        assert csp["default-src"] == ["'self'"], what
        assert csp["script-src"] == ["'self'"], what  # no inline script, no other origin
        assert csp["frame-ancestors"] == ["'none'"], what
        assert csp["object-src"] == ["'none'"], what
        assert "'self'" in csp["connect-src"], what
        permissions = response.headers["permissions-policy"]
        assert "camera=(self)" in permissions and "microphone=(self)" in permissions, what
        # Plain HTTP: no HSTS (a browser would ignore it, and it would lie).
        assert "strict-transport-security" not in response.headers, what


async def test_https_adds_hsts_and_only_secure_websockets(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path, https=True)) as server:
        for response in await _responses(server):
            assert response.headers["strict-transport-security"].startswith("max-age="), (
                response.request.url.path
            )
            csp = _directives(response.headers["content-security-policy"])
            assert csp["connect-src"] == ["'self'", "wss:"]


@pytest.mark.parametrize("api_docs", [False, True])
async def test_the_api_description_is_served_only_when_configured(
    tmp_path: Path, api_docs: bool
) -> None:
    async with (
        run_server(make_config(tmp_path, api_docs=api_docs)) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        for path in ("/openapi.json", "/docs", "/redoc"):
            response = await http.get(path)
            assert response.status_code == (200 if api_docs else 404), path
        # The clinic app is served either way.
        assert (await http.get("/")).status_code == 200


async def test_the_websocket_still_opens(server: LiveServer) -> None:
    await server.add_user("dw", Role.DOCTOR, "wonju")
    ws, welcome = await connect(server, await server.token("dw"))
    assert welcome["type"] == "welcome"
    await ws.close()
