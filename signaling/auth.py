"""Credentials and tokens: argon2 password/key hashing, signed JWTs, the login rate limit.

Hashing is deliberately slow (tens of milliseconds), so the async helpers run it in a worker
thread and the event loop keeps relaying signaling messages meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from signaling.config import HashCost
from signaling.errors import AuthError, TokenExpired
from signaling.schema import PrincipalKind, Role

_ALGORITHM = "HS256"
_SPRAY_FACTOR = 4
_ISSUER = "telemed"
#: zxcvbn's score 3: "safely unguessable", more than 10^8 guesses.
_MIN_GUESS_SCORE = 3


class SecretHasher:
    """Argon2id hashing and checking of passwords and gateway keys at a given cost. Slow on
    purpose (tens of milliseconds): the async methods run it in a worker thread."""

    def __init__(self, cost: HashCost | None = None) -> None:
        cost = cost or HashCost()
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_kib, parallelism=cost.parallelism
        )
        # Checked against when the account does not exist, so that timing does not reveal
        # which names are real.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, stored_hash: str | None, secret: str) -> bool:
        """True when ``secret`` matches ``stored_hash`` (whose own cost applies); a missing
        hash costs the same time."""
        try:
            return self._hasher.verify(stored_hash or self._dummy, secret) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    async def hash_async(self, secret: str) -> str:
        return await asyncio.to_thread(self.hash, secret)

    async def verify_async(self, stored_hash: str | None, secret: str) -> bool:
        return await asyncio.to_thread(self.verify, stored_hash, secret)


def password_problem(
    password: str, min_length: int, user_names: Iterable[str] = (), site_names: Iterable[str] = ()
) -> str | None:
    """Why ``password`` may not be given to an account, or None when it may.

    Refused: shorter than ``min_length``; one of the 30,000 most common passwords (the
    frequency list of the ``zxcvbn`` package, from leaked password sets, compared without
    case); containing one of ``user_names`` (the user name, display name) or ``site_names``
    (site codes and names), the first words an attacker tries; or estimated by zxcvbn as
    guessable within 10^8 guesses (its score below 3), such as keyboard walks, repeats and
    dates. CPU-bound for a long password (milliseconds): call it off the event loop.
    """
    if len(password) < min_length:
        return f"a password needs at least {min_length} characters"
    lowered = password.lower()
    if lowered in _common_passwords():
        return "this is one of the most common passwords"
    users, sites = [n for n in user_names if n], [n for n in site_names if n]
    for names, what in ((users, "the user name"), (sites, "a site's name")):
        for name in names:
            if len(name) >= 3 and name.lower() in lowered:
                return f"a password may not contain {what} ({name!r})"
    from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # (loading it takes 0.2 s)

    result = zxcvbn(password, user_inputs=users + sites)
    if int(result["score"]) < _MIN_GUESS_SCORE:
        hint = result["feedback"]["warning"] or "add another word or two"
        return f"this password is too easy to guess: {hint}"
    return None


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

    return frozenset(FREQUENCY_LISTS["passwords"])


@functools.cache
def default_hasher() -> SecretHasher:
    """A hasher at the default cost, made once (making it costs one hash)."""
    return SecretHasher()


def new_gateway_key() -> str:
    """A fresh gateway key: 256 bits, URL-safe. Shown once; only its hash is stored."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for."""

    kind: PrincipalKind
    id: int
    name: str
    role: Role
    site: str
    session_id: str

    @property
    def is_clinician(self) -> bool:
        return self.role in (Role.DOCTOR, Role.TECHNICIAN)


class TokenService:
    """Issues and checks short-lived HS256 tokens naming principal, role, site and session."""

    def __init__(self, secret_key: str, ttl_s: int) -> None:
        if len(secret_key) < 32:
            raise ValueError("the token secret key must be at least 32 characters")
        self._key = secret_key
        self.ttl_s = ttl_s

    def issue(self, principal: Principal, now: datetime | None = None) -> tuple[str, datetime]:
        now = now or datetime.now(UTC)
        expires = now + timedelta(seconds=self.ttl_s)
        claims = {
            "iss": _ISSUER,
            "sub": f"{principal.kind}:{principal.id}",
            "kind": str(principal.kind),
            "pid": principal.id,
            "name": principal.name,
            "role": str(principal.role),
            "site": principal.site,
            "sid": principal.session_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), expires

    def decode(self, token: str) -> Principal:
        """The principal of a valid token. Raises :class:`TokenExpired` for an expired one,
        :class:`AuthError` for any other."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "sid"]},
            )
            return Principal(
                kind=PrincipalKind(claims["kind"]),
                id=int(claims["pid"]),
                name=str(claims["name"]),
                role=Role(claims["role"]),
                site=str(claims["site"]),
                session_id=str(claims["sid"]),
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token expired") from None
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
            raise AuthError("invalid token") from None


@dataclass(frozen=True)
class LoginLimits:
    """How many failed (or still unchecked) logins are allowed within ``window_s``:

    - ``max_failures`` per (account, source address): the guessing of one account;
    - ``per_address`` per address over all accounts: password spraying;
    - ``per_account`` per account over all addresses: guessing from many addresses. An
      address the account has logged in from before (within ``known_address_days``) is
      exempt from this one, so an attacker elsewhere cannot lock the account's owner out;
      for everyone else it is a delay of at most one window after the last counted
      failure, never a lockout that needs an administrator.
    """

    max_failures: int
    window_s: float
    per_address: int
    per_account: int
    known_address_days: float = 30.0

    @classmethod
    def of(cls, max_failures: int, window_s: float) -> LoginLimits:
        """The server's limits from its two settings (the wider ones a fixed multiple)."""
        wide = max_failures * _SPRAY_FACTOR
        return cls(max_failures, window_s, per_address=wide, per_account=wide)


@dataclass(frozen=True)
class Reserved:
    """A login attempt may go ahead: check the password, then report the outcome with
    :meth:`LoginAttempts.finish`. ``handle`` is the store's own."""

    handle: int
    account: str
    source: str


@dataclass(frozen=True)
class Refused:
    """A login attempt refused unchecked: ``limit`` names the one reached (``account``,
    ``address`` or ``account-wide``); another attempt may succeed after ``retry_after_s``."""

    retry_after_s: float
    limit: str


class LoginAttempts(Protocol):
    """The login rate limit shared by every server process (the database now; a shared
    store such as Redis later).

    An attempt is *reserved* before its password is checked: the reservation counts as a
    failure until it is finished, and no more reservations are granted than the limits
    allow, however many requests arrive at once."""

    async def reserve(self, account: str, source: str) -> Reserved | Refused:
        """Reserve one attempt at ``account`` (``kind:name``) from ``source`` (an address),
        atomically over every process sharing the store."""
        ...

    async def finish(self, attempt: Reserved, succeeded: bool) -> None:
        """Record the attempt's outcome: a success lets its (account, address) start afresh
        and makes the address known to the account."""
        ...


class LoginLimiter:
    """Sliding-window limit on failed logins per (account, source address), and per address
    over all accounts (``_SPRAY_FACTOR`` times as many), in this process's memory only.

    Not atomic over a password check, and not shared between processes: the server uses
    :class:`LoginAttempts` (``signaling.storage.login_attempts``) instead.

    Memory is bounded: at most ``max_keys`` keys are tracked, the least recently failed
    dropped first. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._now = clock

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        window = self._failures.get(key)
        if window is None:
            return deque()
        cutoff = self._now() - self.window_s
        while window and window[0] <= cutoff:
            window.popleft()
        if not window:
            del self._failures[key]
        return window

    def retry_after(self, account: str, source: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        wait = 0.0
        for key, limit in self._keys(account, source):
            window = self._recent(key)
            if len(window) >= limit:
                wait = max(wait, window[0] + self.window_s - self._now())
        return max(0.0, wait)

    def _keys(self, account: str, source: str) -> list[tuple[tuple[str, str], int]]:
        # Per account and address, and per address over all accounts (password spraying).
        return [
            ((account.lower(), source), self.max_failures),
            (("*", source), self.max_failures * _SPRAY_FACTOR),
        ]

    def failed(self, account: str, source: str) -> None:
        for key, _ in self._keys(account, source):
            window = self._recent(key)
            window.append(self._now())
            self._failures[key] = window
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, account: str, source: str) -> None:
        self._failures.pop((account.lower(), source), None)
