"""The README's reverse-proxy recipe, run: Debian's nginx with the README's configuration in
front of ``telemed serve`` with the README's settings. Both are taken from README.md here,
so the document cannot drift from what works.

Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3) than nginx's own
(127.0.0.1), so the test sees which address the server counts: with one socket allowed per
address, two clients behind the proxy are both let in (the server reads nginx's
``X-Forwarded-For``), while a second socket from one client is refused even when it claims
another address in its own ``X-Forwarded-For`` (nginx replaces it), and so is one that
claims it to the server directly (only the proxy is believed)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets

from signaling.auth import SecretHasher
from signaling.schema import Role
from signaling.storage import accounts
from signaling.storage.database import Database
from telemed import tls
from telemed.settings import Settings
from tests import nginx
from tests.helpers import SECRET, TEST_HASH_COST
from tests.processes import listening, port_of, start_serve

# Two processes: nginx and the server (~5 s to start); nothing timed.
pytestmark = [pytest.mark.slow, pytest.mark.cpu]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### TLS and a reverse proxy"
USER, PASSWORD = "doctor.proxy", "proxy-test-password-doctor"
TOO_MANY_CONNECTIONS = 4429


def readme_block(language: str) -> str:
    """The first ``language`` code block of the README's TLS section."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start)
    match = re.search(rf"```{language}\n(.*?)```", text[start:end], re.S)
    assert match is not None, f"no {language} block in the README's section {SECTION!r}"
    return match.group(1)


def _replace(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; ``old`` must be there (the README changed if not)."""
    assert old in text, f"the README's configuration no longer has {old!r}"
    return text.replace(old, new)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    https_url: str
    http_url: str
    server_port: int
    context: ssl.SSLContext


async def _seed(data_dir: Path) -> None:
    config = Settings(data_dir=data_dir, secret_key=SECRET).server_config()
    db = Database(config.database_url)
    try:
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        hasher = SecretHasher(TEST_HASH_COST)
        await accounts.add_user(db, USER, PASSWORD, Role.DOCTOR, "koriyama", USER, hasher)
    finally:
        await db.close()


async def _wait_until_serving(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until ``url`` answers (the server's socket accepts at once: it was bound here)."""
    async with httpx.AsyncClient(verify=False, timeout=30) as http:  # noqa: S501 (liveness only)
        for _ in range(600):
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"{what} exited ({proc.returncode}): {err.decode()}")
            try:
                await http.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"{what} does not answer at {url}")


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    nginx_path = nginx.binary("reverse-proxy")
    cert = tls.demo_certificate(tmp_path / "tls", ["127.0.0.1", "localhost"])
    await _seed(tmp_path / "data")

    # The server, with the README's settings, on a socket bound here.
    (tmp_path / "telemed.toml").write_text(readme_block("toml"))
    sock = listening(64)
    server_port = port_of(sock)
    env = {
        **os.environ,
        "TELEMED_DATA_DIR": str(tmp_path / "data"),
        "TELEMED_SECRET_KEY": SECRET,
        "TELEMED_LOG_LEVEL": "warning",
        # One socket per address: which address the server counts is then visible.
        "TELEMED_SERVER__WS_MAX_PER_ADDRESS": "1",
    }
    server = start_serve(sock, env=env, config=tmp_path / "telemed.toml", stderr=subprocess.PIPE)

    # nginx with the README's site configuration, ports and files made local.
    https_port, http_port = _free_port(), _free_port()
    site = readme_block("nginx")
    site = _replace(site, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    site = _replace(site, "listen [::]:443 ssl;", "")
    site = _replace(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = _replace(site, "listen [::]:80;", "")
    site = _replace(site, "/etc/ssl/telemed/fullchain.pem", str(cert.cert_file))
    site = _replace(site, "/etc/ssl/telemed/privkey.pem", str(cert.key_file))
    site = _replace(site, "http://127.0.0.1:8000", f"http://127.0.0.1:{server_port}")
    proxy = nginx.start(
        nginx_path,
        tmp_path,
        site,
        main=f"master_process off;\nerror_log {tmp_path}/nginx-error.log warn;",
        http="access_log off;",
        stderr=subprocess.PIPE,
    )
    try:
        await _wait_until_serving(f"http://127.0.0.1:{server_port}/healthz", server, "telemed")
        await _wait_until_serving(f"http://127.0.0.1:{http_port}/", proxy, "nginx")
        yield Deployment(
            f"https://127.0.0.1:{https_port}",
            f"http://127.0.0.1:{http_port}",
            server_port,
            ssl.create_default_context(cafile=cert.cert_file),
        )
    finally:
        for proc in (proxy, server):
            proc.terminate()
            proc.communicate(timeout=10)


def _http(deployment: Deployment, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(verify=deployment.context, local_address=source)
    return httpx.AsyncClient(base_url=deployment.https_url, transport=transport)


async def _login(deployment: Deployment, source: str) -> str:
    async with _http(deployment, source) as http:
        r = await http.post("/api/auth/login", json={"username": USER, "password": PASSWORD})
        assert r.status_code == 200, r.text
        # One HSTS header: the server's (nginx adds none).
        assert r.headers.get_list("strict-transport-security") == ["max-age=31536000"]
        assert "connect-src 'self' wss:;" in r.headers["content-security-policy"]
        return str(r.json()["token"])


async def _hello(
    url: str,
    token: str,
    source: str,
    context: ssl.SSLContext | None,
    forged: str | None = None,
) -> tuple[websockets.ClientConnection, dict[str, object]]:
    """A socket from ``source`` (claiming ``forged`` in X-Forwarded-For) after hello: the
    connection and the first message, or a close code as ``{"closed": code}``."""
    headers = {"X-Forwarded-For": forged} if forged else None
    ws = await websockets.connect(
        url, ssl=context, local_addr=(source, 0), additional_headers=headers
    )
    try:
        await ws.send(json.dumps({"type": "hello", "v": 1, "token": token, "client": "proxy"}))
        async with asyncio.timeout(10):
            first = json.loads(await ws.recv())
    except websockets.ConnectionClosed as closed:
        return ws, {"closed": closed.rcvd.code if closed.rcvd else None}
    return ws, first


async def test_readme_nginx_recipe_in_front_of_telemed_serve(deployment: Deployment) -> None:
    wss = deployment.https_url.replace("https:", "wss:") + "/ws"
    token = await _login(deployment, "127.0.0.2")
    opened: list[websockets.ClientConnection] = []
    try:
        # The WebSocket through nginx (the upgrade passed on), from 127.0.0.2.
        ws, first = await _hello(wss, token, "127.0.0.2", deployment.context)
        opened.append(ws)
        assert first.get("type") == "welcome", first
        # Another client behind the same proxy is another address (one socket each allowed).
        ws, first = await _hello(wss, token, "127.0.0.3", deployment.context)
        opened.append(ws)
        assert first.get("type") == "welcome", first
        # 127.0.0.2 again, claiming another address: nginx passes on what it saw.
        ws, first = await _hello(wss, token, "127.0.0.2", deployment.context, "198.51.100.7")
        opened.append(ws)
        assert first == {"closed": TOO_MANY_CONNECTIONS}
        # Straight to the server, claiming another address: not a trusted proxy, not believed.
        direct = f"ws://127.0.0.1:{deployment.server_port}/ws"
        ws, first = await _hello(direct, token, "127.0.0.3", None, "198.51.100.8")
        opened.append(ws)
        assert first == {"closed": TOO_MANY_CONNECTIONS}
    finally:
        for ws in opened:
            await ws.close()
    # Plain HTTP is sent to HTTPS.
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{deployment.http_url}/api/auth/me")
        assert r.status_code == 301
        assert r.headers["location"].startswith("https://127.0.0.1/api/auth/me")
