"""Typed configuration values for the signaling server.

These are plain value objects. The ``telemed`` entry point reads the environment and files once
and builds a :class:`ServerConfig`; nothing in this package reads the environment itself.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class SiteConfig(BaseModel):
    """One clinic site. ``code`` is the stable identifier used in tokens and the database."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    language: str = Field(pattern=r"^[a-z]{2}$")
    timezone: str
    mains_hz: Literal[50, 60]


DEFAULT_SITES: tuple[SiteConfig, ...] = (
    SiteConfig(
        code="koriyama",
        name="Koriyama",
        country="JP",
        language="ja",
        timezone="Asia/Tokyo",
        mains_hz=50,
    ),
    SiteConfig(
        code="wonju",
        name="Wonju",
        country="KR",
        language="ko",
        timezone="Asia/Seoul",
        mains_hz=60,
    ),
)


class TurnConfig(BaseModel):
    """A TURN service using coturn's ``use-auth-secret`` (TURN REST credentials)."""

    model_config = ConfigDict(frozen=True)

    urls: tuple[str, ...]
    secret: SecretStr
    ttl_s: int = Field(default=3600, ge=60, le=86400)


class HashCost(BaseModel):
    """Argon2id's cost for passwords and gateway keys (argon2-cffi's defaults: about 50 ms
    and 64 MiB a hash here). A stored hash carries its own cost, so changing this affects new
    and changed secrets only; tests use a tiny cost to stay fast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_cost: int = Field(default=3, ge=1)
    memory_kib: int = Field(default=65536, ge=8)
    parallelism: int = Field(default=4, ge=1)


class ServerOptions(BaseModel):
    """The server's tunables; every one has a sensible default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: What hashing a password or a gateway key costs.
    hash_cost: HashCost = HashCost()
    #: Lifetime of an access token; clients refresh before it ends.
    token_ttl_s: int = Field(default=900, ge=10)
    #: A clinician session with no activity for this long is logged out (gateways are exempt).
    inactivity_timeout_s: float = Field(default=900.0, gt=0)
    #: How often activity seen on sockets is written to the session records.
    activity_flush_s: float = Field(default=5.0, gt=0)
    #: Failed logins allowed per (account, source address) within ``login_window_s``.
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    #: Largest accepted WebSocket text message; larger ones get an ``error`` reply.
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Protocol errors a connection may cause before it is closed (policy violation).
    ws_max_errors: int = Field(default=10, ge=1)
    #: Seconds a new connection has to authenticate with ``hello``.
    ws_hello_timeout_s: float = Field(default=10.0, gt=0)
    #: Outbound messages queued per connection; a consumer that falls this far behind is closed.
    ws_send_queue: int = Field(default=256, ge=8)
    #: Messages per second a connection may send on average, and in a burst.
    ws_rate_per_s: float = Field(default=50.0, gt=0)
    ws_burst: int = Field(default=200, ge=1)
    stun_urls: tuple[str, ...] = ()
    turn: TurnConfig | None = None
    #: Apply database migrations at start-up (a deployment may run ``telemed db upgrade`` instead).
    auto_migrate: bool = True
    #: Numerics, alarms and alarm limits the bedside measured are kept this many days (the
    #: audit log's two years by default), then deleted by a task of the server's.
    numerics_retention_days: int = Field(default=730, ge=1)
    #: DICOM instances stored with a consultation are kept this many days after they were
    #: stored (files and index), then deleted by the same task.
    imaging_retention_days: int = Field(default=730, ge=1)
    #: How often that task looks for what to delete.
    retention_interval_s: float = Field(default=3600.0, gt=0)
    #: The largest ``record`` upload a gateway may send, in bytes.
    record_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    #: Deepest nesting of arrays and objects a WebSocket message may have; deeper ones are
    #: refused with an ``error`` reply before they are decoded.
    ws_max_json_depth: int = Field(default=32, ge=4, le=256)
    #: Open WebSockets allowed from one source address, and for one account; the next is
    #: refused (a ward behind one NAT address needs room: one per tab and gateway).
    ws_max_per_address: int = Field(default=64, ge=1)
    ws_max_per_account: int = Field(default=8, ge=1)
    #: Serve the OpenAPI description and its pages (``/docs``, ``/openapi.json``); off in
    #: production, where they tell an attacker every route.
    api_docs: bool = False
    #: The server is reached over HTTPS (its own TLS or a TLS proxy): responses carry HSTS.
    https: bool = False
    #: Reverse proxies (addresses or networks, e.g. ``127.0.0.1``) whose
    #: ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed: a connection from one of
    #: them counts as coming from the address it names (login limits, sockets per address,
    #: the audit). Empty: the headers are ignored and the peer's own address counts.
    trusted_proxies: tuple[str, ...] = ()
    #: With a shared hub (``hub_url``): a server process unheard in Redis for this long is
    #: taken for dead, and its peers are reported gone (``peer-left``, ``server-lost``).
    hub_liveness_s: float = Field(default=10.0, ge=0.5, le=300)
    #: Shortest password a clinician account may be given.
    password_min_length: int = Field(default=12, ge=8)
    #: The largest DICOM upload (one STOW-RS request: a multi-frame ultrasound or a CT
    #: series is tens to hundreds of MB), in bytes; larger ones are refused with 413.
    imaging_max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    #: Instances one STOW-RS request may carry (the gateway sends one per request).
    imaging_max_parts: int = Field(default=100, ge=1, le=10_000)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, proxies: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network"
                ) from None
        return proxies


class ServerConfig(ServerOptions):
    """Everything the signaling server needs; built once by the entry point."""

    database_url: str
    secret_key: SecretStr
    sites: tuple[SiteConfig, ...] = DEFAULT_SITES
    #: Where files the server keeps live (DICOM instances under ``imaging/``). None: the
    #: server keeps no files, and an image upload is refused (503).
    data_dir: Path | None = None
    #: Where live rooms and presence are kept. None: in this process's memory (one server
    #: process). ``redis://host:port/db`` (or ``rediss://``, ``unix://``): in that Redis,
    #: shared by every server process given the same URL (and the same database).
    hub_url: str | None = None

    @field_validator("hub_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"hub_url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        return url

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, sites: tuple[SiteConfig, ...]) -> tuple[SiteConfig, ...]:
        codes = [s.code for s in sites]
        if len(set(codes)) != len(codes):
            raise ValueError(f"site codes must be unique, got {codes}")
        if len(codes) < 2:
            raise ValueError("a consultation needs at least two sites")
        return sites

    def site(self, code: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.code == code), None)
