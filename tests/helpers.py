"""Shared test helpers: a real signaling server on 127.0.0.1 and account factories."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx

from clinic_ui import STATIC_DIR
from signaling.config import HashCost, ServerConfig
from signaling.schema import Role, ServerMessage
from signaling.server.app import create_app
from signaling.server.services import Services
from signaling.storage import accounts
from signaling.storage.database import sqlite_url
from telemed.serve import start_server

#: The shared recordings and device captures beside the checkout (absent from a user's clone).
SHARED = Path(__file__).resolve().parents[2] / "shared"

SECRET = "test-secret-key-0123456789abcdef-0123456789"
TEST_HASH_COST = HashCost(time_cost=1, memory_kib=64, parallelism=1)
PASSWORD = "correct horse battery"


@functools.cache
def client_tls() -> ssl.SSLContext:
    """httpx's default client context (verify against its CA bundle), made once for the run:
    pass it as ``verify=`` to a client made per request. Each client otherwise loads the CA
    bundle anew, tens of milliseconds of CPU and most of a request to a local server (the
    property tests over HTTP make hundreds of clients)."""
    return httpx.create_ssl_context()


def make_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "database_url": sqlite_url(tmp_path / "signaling.sqlite3"),
        "secret_key": SECRET,
        # Argon2 at its default cost takes most of a test's time: the cost is not under test.
        "hash_cost": TEST_HASH_COST,
        # Files the server keeps (DICOM instances) beside the database.
        "data_dir": tmp_path,
    }
    values.update(overrides)
    return ServerConfig(**values)


@dataclass
class LiveServer:
    config: ServerConfig
    base_url: str
    services: Services

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    async def add_user(self, username: str, role: Role, site: str) -> accounts.Account:
        return await accounts.add_user(
            self.services.db, username, PASSWORD, role, site, username, self.services.hasher
        )

    async def add_gateway(self, name: str, site: str, key: str) -> accounts.Account:
        return await accounts.add_gateway(self.services.db, name, site, key, self.services.hasher)

    async def token(self, username: str, password: str = PASSWORD) -> str:
        async with httpx.AsyncClient(base_url=self.base_url, verify=client_tls()) as http:
            response = await http.post(
                "/api/auth/login", json={"username": username, "password": password}
            )
            response.raise_for_status()
            return cast(str, response.json()["token"])


@contextlib.asynccontextmanager
async def run_server(
    config: ServerConfig, *, sock: socket.socket | None = None
) -> AsyncIterator[LiveServer]:
    """Serve ``config`` with uvicorn on 127.0.0.1 in this event loop: on ``sock`` when given
    (bound by the caller, e.g. to serve again on the same port), else on a free port."""
    app = create_app(config, static_dir=STATIC_DIR)
    server, task, port = await start_server(app, config, sock=sock, log_level="warning")
    try:
        yield LiveServer(config, f"http://127.0.0.1:{port}", cast(Services, app.state.services))
    finally:
        server.should_exit = True
        await task


async def eventually(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    *,
    what: str | None = None,
) -> Any:
    """Poll ``predicate`` (sync, or returning an awaitable) until it returns something true,
    and return that. After ``timeout`` seconds, fail with an :class:`AssertionError` naming
    what was awaited (``what``, else the predicate's source) and the last value seen.

    The one polling helper of the suite: the timeout is a bound on a hang, never a timing
    assertion, so keep it generous. Exceptions from the predicate propagate at once."""
    last: object = None
    try:
        async with asyncio.timeout(timeout) as deadline:
            while True:
                value = predicate()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                last = value
                await asyncio.sleep(interval)
    except TimeoutError:
        if not deadline.expired():
            raise  # the predicate's own TimeoutError, not ours
        raise AssertionError(
            f"not true within {timeout} s: {what or _describe(predicate)} (last: {last!r})"
        ) from None


def _describe(predicate: Callable[[], object]) -> str:
    try:
        return " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        return repr(predicate)


T = TypeVar("T")


async def next_of_type(recv: Any, kind: type[T], timeout: float = 5.0) -> T:
    """Read messages until one of ``kind`` arrives (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message: ServerMessage = await recv(timeout=max(0.01, deadline - loop.time()))
        if isinstance(message, kind):
            return message


def run_telemed(
    *args: str, data_dir: Path | None = None, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``telemed`` command as a user would (a subprocess), capturing its output."""
    env = {**os.environ}
    if data_dir is not None:
        env["TELEMED_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "telemed", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
