"""Running the signaling server (``telemed serve``) and the seeded demo (``telemed demo``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from clinic_ui import STATIC_DIR
from signaling.config import ServerConfig
from signaling.errors import AccountError
from signaling.schema import Role
from signaling.server.app import create_app
from signaling.storage import accounts
from signaling.storage.database import Database
from telemed.settings import Settings


def uvicorn_config(
    app: FastAPI, config: ServerConfig, host: str, port: int, log_level: str
) -> uvicorn.Config:
    """How the server is run, shared by ``serve``, ``demo`` and the tests."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # The protocol limit is checked by the app, which answers with an error message;
        # this transport limit only stops absurd frames (closed with 1009).
        ws_max_size=config.ws_max_message_bytes * 4,
        # Measured by benchmarks/signaling_relay.py at 500 consultations: p99 relay latency
        # 47 ms with the sans-I/O implementation against 191 ms with uvicorn's default.
        ws="websockets-sansio",
        lifespan="on",
        proxy_headers=False,
    )


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    config = settings.server_config()
    server = uvicorn.Server(
        uvicorn_config(
            create_app(config, static_dir=STATIC_DIR),
            config,
            host or settings.host,
            port or settings.port,
            settings.log_level,
        )
    )
    server.run()


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: Role
    site: str


#: Demo accounts, seeded only by ``telemed demo`` into its own data directory.
DEMO_ACCOUNTS = (
    DemoAccount("doctor.koriyama", "demo-koriyama-doctor", Role.DOCTOR, "koriyama"),
    DemoAccount("tech.koriyama", "demo-koriyama-tech", Role.TECHNICIAN, "koriyama"),
    DemoAccount("doctor.wonju", "demo-wonju-doctor", Role.DOCTOR, "wonju"),
    DemoAccount("tech.wonju", "demo-wonju-tech", Role.TECHNICIAN, "wonju"),
    DemoAccount("admin", "demo-admin-password", Role.ADMIN, "koriyama"),
)
DEMO_GATEWAY = ("gateway.wonju", "wonju", "demo-gateway-key-wonju-bedside")


async def seed_demo(config: ServerConfig) -> None:
    """Create the demo accounts that do not exist yet."""
    db = Database(config.database_url)
    try:
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        for acc in DEMO_ACCOUNTS:
            with contextlib.suppress(AccountError):  # seeded by an earlier run
                await accounts.add_user(
                    db, acc.username, acc.password, acc.role, acc.site, acc.username
                )
        name, site, key = DEMO_GATEWAY
        with contextlib.suppress(AccountError):
            await accounts.add_gateway(db, name, site, key)
    finally:
        await db.close()
