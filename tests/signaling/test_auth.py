"""Tokens, password hashing, the login limiter and TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from signaling.auth import (
    LoginLimiter,
    Principal,
    SecretHasher,
    TokenService,
)
from signaling.config import HashCost
from signaling.errors import AuthError
from signaling.schema import PrincipalKind, Role
from signaling.turn import turn_credential
from tests.helpers import TEST_HASH_COST

KEY = "k" * 40
DOCTOR = Principal(PrincipalKind.USER, 7, "doctor", Role.DOCTOR, "wonju", "sess1")


def test_token_round_trip_and_expiry() -> None:
    tokens = TokenService(KEY, ttl_s=60)
    token, expires = tokens.issue(DOCTOR)
    assert tokens.decode(token) == DOCTOR
    assert timedelta(seconds=59) <= expires - datetime.now(UTC) <= timedelta(seconds=60)
    old, _ = tokens.issue(DOCTOR, now=datetime.now(UTC) - timedelta(seconds=120))
    with pytest.raises(AuthError, match="expired"):
        tokens.decode(old)


def test_forged_and_altered_tokens_are_refused() -> None:
    tokens = TokenService(KEY, ttl_s=60)
    token, _ = tokens.issue(DOCTOR)
    claims = jwt.decode(token, options={"verify_signature": False})
    for forged in (
        jwt.encode({**claims, "role": "admin"}, "another key of forty characters...", "HS256"),
        jwt.encode({**claims, "role": "admin"}, "", algorithm="none"),
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
    ):
        with pytest.raises(AuthError, match="invalid"):
            tokens.decode(forged)
    with pytest.raises(ValueError, match="32"):
        TokenService("short", 60)


def test_hashes_verify_only_the_right_secret() -> None:
    hasher = SecretHasher(HashCost(time_cost=2, memory_kib=256, parallelism=1))
    stored = hasher.hash("a long enough password")
    assert stored.startswith("$argon2id$") and "m=256,t=2,p=1" in stored
    assert hasher.verify(stored, "a long enough password")
    assert not hasher.verify(stored, "a long enough passwore")
    assert not hasher.verify(None, "anything")
    assert not hasher.verify("not a hash", "anything")
    # A stored hash carries its own cost: a hasher of another cost checks it all the same.
    assert SecretHasher(TEST_HASH_COST).verify(stored, "a long enough password")


def test_login_limiter_window() -> None:
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window_s=60, max_keys=100, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("Doc", "10.0.0.1") == 0
        limiter.failed("Doc", "10.0.0.1")
    assert limiter.retry_after("doc", "10.0.0.1") == pytest.approx(60)
    assert limiter.retry_after("doc", "10.0.0.2") == 0  # another address is not blocked
    assert limiter.retry_after("nurse", "10.0.0.1") == 0  # nor another account
    now[0] += 61
    assert limiter.retry_after("doc", "10.0.0.1") == 0
    limiter.failed("doc", "10.0.0.1")
    limiter.succeeded("doc", "10.0.0.1")
    assert limiter.retry_after("doc", "10.0.0.1") == 0


def test_login_limiter_stops_password_spraying_from_one_address() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=lambda: now[0])
    for i in range(12):  # two failures each on six accounts: never 3 on one account
        limiter.failed(f"user{i // 2}", "10.0.0.9")
    assert limiter.retry_after("someone-new", "10.0.0.9") > 0
    assert limiter.retry_after("someone-new", "10.0.0.8") == 0


def test_login_limiter_memory_is_bounded() -> None:
    limiter = LoginLimiter(max_failures=3, window_s=60, max_keys=4)
    for i in range(50):
        limiter.failed(f"user{i}", f"10.0.0.{i}")
    assert len(limiter._failures) == 4


def test_turn_rest_credentials() -> None:
    cred = turn_credential("north", "user-7", now=1_700_000_000, ttl_s=3600)
    assert cred.username == "1700003600:user-7"
    digest = hmac.new(b"north", b"1700003600:user-7", hashlib.sha1).digest()
    assert cred.password == base64.b64encode(digest).decode()
    with pytest.raises(ValueError, match=":"):
        turn_credential("north", "a:b", now=0, ttl_s=60)
