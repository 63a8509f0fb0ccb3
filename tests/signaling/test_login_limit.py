"""The login limit under parallel attack, over real HTTP (issue 10, finding 1).

Attempts are reserved in the database before the password is checked, so parallel guesses
cannot all slip past the limit, and every server process on one database shares it. The
password checks are counted by wrapping the server's hasher.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from signaling.auth import SecretHasher
from signaling.schema import Role
from tests.helpers import (
    PASSWORD,
    TEST_HASH_COST,
    LiveServer,
    client_tls,
    make_config,
    run_server,
)


class CountingHasher(SecretHasher):
    """The server's hasher, counting the password checks it makes (from worker threads)."""

    def __init__(self) -> None:
        super().__init__(TEST_HASH_COST)
        self.checks = 0
        self._lock = threading.Lock()

    def verify(self, stored_hash: str | None, secret: str) -> bool:
        with self._lock:
            self.checks += 1
        return super().verify(stored_hash, secret)


def _counting(*servers: LiveServer) -> CountingHasher:
    hasher = CountingHasher()
    for server in servers:
        server.services.hasher = hasher
    return hasher


@pytest_asyncio.fixture
async def live(tmp_path: Path, db_url: str) -> AsyncIterator[LiveServer]:
    """A server on SQLite and on PostgreSQL (whose reservations take an advisory lock)."""
    async with run_server(make_config(tmp_path, database_url=db_url)) as server:
        yield server


async def _guess(base_url: str, username: str, password: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=60, verify=client_tls()) as http:
        response = await http.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) > 0
        return response.status_code


async def test_parallel_guesses_get_at_most_the_limit_of_password_checks(
    live: LiveServer,
) -> None:
    server = live
    await server.add_user("doctor.wonju", Role.DOCTOR, "wonju")
    hasher = _counting(server)
    limit = server.config.login_max_failures
    codes = await asyncio.gather(
        *(_guess(server.base_url, "doctor.wonju", f"guess {i}") for i in range(100))
    )
    # Exactly the limit: at most (the race let all 100 through), and not fewer (a limit
    # that refused everyone would pass "at most").
    assert hasher.checks == limit
    assert codes.count(401) == hasher.checks
    assert codes.count(429) == 100 - hasher.checks
    # The right password after the limit is refused too, unchecked.
    assert await _guess(server.base_url, "doctor.wonju", PASSWORD) == 429
    assert hasher.checks <= limit


async def test_spraying_many_accounts_from_one_address_is_limited(live: LiveServer) -> None:
    server = live
    for i in range(50):
        await server.add_user(f"user{i}", Role.TECHNICIAN, "wonju")
    hasher = _counting(server)
    codes = await asyncio.gather(
        *(_guess(server.base_url, f"user{i}", "wrong password") for i in range(50))
    )
    per_address = 4 * server.config.login_max_failures
    assert hasher.checks == per_address  # 50 were tried before, against a limit of 20
    assert codes.count(401) == hasher.checks
    assert codes.count(429) == 50 - hasher.checks


async def test_two_servers_on_one_database_share_the_limit(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with run_server(config) as first, run_server(config) as second:
        await first.add_user("doctor.wonju", Role.DOCTOR, "wonju")
        hasher = _counting(first, second)
        codes = await asyncio.gather(
            *(
                _guess((first, second)[i % 2].base_url, "doctor.wonju", f"guess {i}")
                for i in range(40)
            )
        )
        assert hasher.checks <= config.login_max_failures
        assert codes.count(401) == hasher.checks
        assert await _guess(second.base_url, "doctor.wonju", PASSWORD) == 429
        assert await _guess(first.base_url, "doctor.wonju", PASSWORD) == 429


async def test_a_success_clears_the_failures_of_its_account_and_address(
    server: LiveServer,
) -> None:
    await server.add_user("doctor.wonju", Role.DOCTOR, "wonju")
    limit = server.config.login_max_failures
    for _ in range(limit - 1):
        assert await _guess(server.base_url, "doctor.wonju", "wrong password") == 401
    assert await _guess(server.base_url, "doctor.wonju", PASSWORD) == 200
    for _ in range(limit - 1):
        assert await _guess(server.base_url, "doctor.wonju", "wrong password") == 401
    assert await _guess(server.base_url, "doctor.wonju", PASSWORD) == 200
