"""Sites, ICE servers (STUN/TURN with expiring credentials), audit check, health."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from signaling.api_models import IceServer, IceServersOut
from signaling.config import SiteConfig
from signaling.server.deps import AdminPrincipal, CurrentPrincipal, ServicesDep
from signaling.server.services import source_addr
from signaling.turn import turn_credential

log = logging.getLogger(__name__)

router = APIRouter(tags=["misc"])


@router.get("/api/sites")
async def sites(_: CurrentPrincipal, svc: ServicesDep) -> list[SiteConfig]:
    return list(svc.config.sites)


@router.get("/api/ice-servers")
async def ice_servers(
    principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> IceServersOut:
    """ICE servers for a peer connection; TURN credentials in the TURN REST form."""
    servers: list[IceServer] = []
    if svc.config.stun_urls:
        servers.append(IceServer(urls=list(svc.config.stun_urls)))
    expires_at = None
    turn = svc.config.turn
    if turn is not None:
        cred = turn_credential(
            turn.secret.get_secret_value(),
            f"{principal.kind}-{principal.id}",
            time.time(),
            turn.ttl_s,
        )
        servers.append(
            IceServer(urls=list(turn.urls), username=cred.username, credential=cred.password)
        )
        expires_at = datetime.fromtimestamp(cred.expires_at, UTC)
    await svc.record("ice.credentials", principal, source_addr(request))
    return IceServersOut(ice_servers=servers, expires_at=expires_at)


class AuditVerifyOut(BaseModel):
    ok: bool
    rows: int
    tip: str
    bad_seq: int | None
    reason: str


@router.get("/api/audit/verify")
async def audit_verify(
    principal: AdminPrincipal, request: Request, svc: ServicesDep
) -> AuditVerifyOut:
    """Walk the audit hash chain (administrators)."""
    report = await svc.audit.verify()
    await svc.record("audit.verify", principal, source_addr(request), outcome="ok")
    return AuditVerifyOut(
        ok=report.ok, rows=report.rows, tip=report.tip, bad_seq=report.bad_seq, reason=report.reason
    )


class Health(BaseModel):
    status: str
    database: str
    connections: int


@router.get("/healthz")
async def health(svc: ServicesDep) -> Health:
    """Liveness and database reachability; needs no token and reveals no data."""
    try:
        async with svc.db.session() as session:
            await session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # any failure means "not ok"; the reason goes to the server log
        log.exception("health check: the database is unreachable")
        database = "unreachable"
    return Health(
        status="ok" if database == "ok" else "degraded",
        database=database,
        connections=svc.hub.connection_count,
    )
