"""The FastAPI application factory. No globals: everything hangs off the app instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from runtime.clock import SYSTEM_CLOCK, Clock
from signaling.auth import LoginLimiter, SecretHasher, TokenService
from signaling.config import ServerConfig
from signaling.imaging.renderer import Renderer
from signaling.schema import CloseCode
from signaling.server import (
    problems,
    routes_auth,
    routes_consultations,
    routes_dicomweb,
    routes_imaging,
    routes_misc,
    routes_snapshots,
    routes_vitals,
)
from signaling.server.activity import ActivityRecorder
from signaling.server.headers import SecurityHeaders
from signaling.server.hub import Hub
from signaling.server.hub_redis import RedisHub
from signaling.server.retention import ImagingRetention, Retention
from signaling.server.services import Services
from signaling.server.ws import TransportAbort, websocket_endpoint
from signaling.storage.accounts import sync_sites
from signaling.storage.audit import AuditLog
from signaling.storage.database import Database

log = logging.getLogger(__name__)


def create_app(
    config: ServerConfig,
    static_dir: Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    renderer: Renderer | None = None,
) -> FastAPI:
    """Build the server. ``static_dir``, when given, is served at ``/`` (the clinic app);
    ``clock`` drives the WebSocket's timeouts, rate limits and stamps; ``renderer`` makes
    the DICOMweb rendered images (without one they are answered with 503)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(config.database_url)
        try:
            async with db.exclusive():  # servers starting together, one at a time
                if config.auto_migrate:
                    await db.migrate()
                await sync_sites(db, config.sites)
            # In memory (one process), or shared with other processes through Redis.
            hub = (
                Hub()
                if config.hub_url is None
                else RedisHub(config.hub_url, db, liveness_s=config.hub_liveness_s)
            )
            await hub.start()
            activity = ActivityRecorder(db, config.activity_flush_s)
            services = app.state.services = Services(
                config=config,
                db=db,
                tokens=TokenService(config.secret_key.get_secret_value(), config.token_ttl_s),
                limiter=LoginLimiter(config.login_max_failures, config.login_window_s),
                audit=AuditLog(db),
                hub=hub,
                activity=activity,
                hasher=await asyncio.to_thread(SecretHasher, config.hash_cost),
                clock=clock,
            )
            imaging_files = app.state.imaging.files
            retention = Retention(
                db,
                config.numerics_retention_days,
                config.retention_interval_s,
                clock=clock,
                imaging=None
                if imaging_files is None
                else ImagingRetention(imaging_files, config.imaging_retention_days, services.audit),
            )
            activity.start()
            retention.start()
            # The session watch (sockets of sessions ended by another process: telemed
            # users disable) and the refusal summaries.
            services.start()
            log.info("signaling server ready (%s)", db.dialect)
            try:
                yield
            finally:
                hub.close_all(CloseCode.GOING_AWAY, "server shutting down")
                await services.stop()
                await retention.stop()
                await activity.stop()
                await hub.stop()
                # Audit events whose appends were cancelled by the shutdown (a socket's
                # close audited as uvicorn gave up on it) are written, not dropped.
                with contextlib.suppress(Exception):  # (a failure is logged by the audit log)
                    await services.audit.flush()
        finally:
            await db.close()

    # The API's description and its pages tell an attacker every route: only on request.
    docs = config.api_docs
    app = FastAPI(
        title="telemed signaling",
        version="1",
        summary="Consultations, authentication, ICE servers and WebRTC signaling",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        swagger_ui_oauth2_redirect_url="/docs/oauth2-redirect" if docs else None,
    )
    problems.install(app)
    # Added after the routes' own layers, so outside them: refusals made inside carry the
    # headers too; the abort function is taken from the server's own send (TransportAbort).
    app.add_middleware(
        SecurityHeaders,
        https=config.https,
        docs_paths=frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"} if docs else ()),
    )
    app.add_middleware(TransportAbort)
    app.include_router(routes_auth.router)
    app.include_router(routes_consultations.router)
    app.include_router(routes_snapshots.router)
    app.include_router(routes_vitals.router)
    routes_imaging.install(app.state, config.data_dir, renderer)
    app.include_router(routes_imaging.router)
    app.include_router(routes_dicomweb.router)
    app.include_router(routes_misc.router)
    app.add_api_websocket_route("/ws", websocket_endpoint)
    if static_dir is not None:
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="clinic_ui")
    return app
