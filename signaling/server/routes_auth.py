"""Login, token refresh and logout for clinicians and gateways."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, HTTPException, Request, status

from signaling.api_models import GatewayLogin, PrincipalOut, TokenOut, UserLogin
from signaling.auth import Principal, Refused
from signaling.server.deps import CurrentPrincipal, ServicesDep
from signaling.server.services import Services, source_addr
from signaling.storage.accounts import (
    Account,
    account_active,
    check_gateway,
    check_user,
    end_session,
    start_session,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _principal_out(p: Principal) -> PrincipalOut:
    return PrincipalOut(kind=p.kind, id=p.id, name=p.name, role=p.role, site=p.site)


def _issue(svc: Services, principal: Principal) -> TokenOut:
    token, expires = svc.tokens.issue(principal)
    idle = svc.idle_timeout(principal)
    return TokenOut(
        token=token,
        expires_at=expires,
        idle_timeout_s=idle.total_seconds() if idle else None,
        principal=_principal_out(principal),
    )


async def _login(
    svc: Services,
    request: Request,
    kind: str,
    account_name: str,
    check: Callable[[], Awaitable[Account | None]],
) -> TokenOut:
    """Reserve an attempt, then (only then) check the secret with ``check``."""
    addr = source_addr(request)
    host = request.client.host if request.client else "unknown"
    attempt = await svc.attempts.reserve(f"{kind}:{account_name}", host)
    if isinstance(attempt, Refused):
        request.state.refusal_audited = True
        await svc.refused(
            f"{kind}.login",
            addr,
            "rate limited",
            account=account_name,
            detail={"limit": attempt.limit, "retry_after_s": math.ceil(attempt.retry_after_s)},
        )
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            headers={"Retry-After": str(math.ceil(attempt.retry_after_s))},
        )
    # Should the check fail or be cancelled, the reservation stays pending, and counts as a
    # failure until it ages out of the window.
    account = await check()
    await svc.attempts.finish(attempt, succeeded=account is not None)
    if account is None:
        request.state.refusal_audited = True
        await svc.record(
            f"{kind}.login",
            None,
            addr,
            outcome="denied",
            account=account_name,
            detail={"reason": "wrong name or secret"},
        )
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong name or password")
    session_id = await start_session(svc.db, account, addr)
    principal = Principal(
        account.kind, account.id, account.name, account.role, account.site, session_id
    )
    await svc.record(f"{kind}.login", principal, addr)
    return _issue(svc, principal)


@router.post("/login", responses={401: {}, 429: {}})
async def login(body: UserLogin, request: Request, svc: ServicesDep) -> TokenOut:
    """Clinician login. Repeated failures are refused for a while (429): per account and
    address, per address, and per account from addresses it has not logged in from."""
    return await _login(
        svc,
        request,
        "user",
        body.username,
        lambda: check_user(svc.db, body.username, body.password, svc.hasher),
    )


@router.post("/gateway", responses={401: {}, 429: {}})
async def gateway_login(body: GatewayLogin, request: Request, svc: ServicesDep) -> TokenOut:
    """Device gateway login with the key printed by ``telemed gateways add``."""
    return await _login(
        svc,
        request,
        "gateway",
        body.name,
        lambda: check_gateway(svc.db, body.name, body.key, svc.hasher),
    )


@router.post("/refresh", responses={401: {}})
async def refresh(principal: CurrentPrincipal, request: Request, svc: ServicesDep) -> TokenOut:
    """A fresh token for the same session (call before ``expires_at``), while the account is
    still enabled: a disabled one's session ends here."""
    if not await account_active(svc.db, principal.kind, principal.id):
        await end_session(svc.db, principal.session_id, "account disabled")
        svc.hub.end_session(principal.session_id)
        request.state.refusal_audited = True
        await svc.record(
            "session.refresh",
            principal,
            source_addr(request),
            outcome="denied",
            detail={"reason": "account disabled"},
        )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "session ended: account disabled",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return _issue(svc, principal)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentPrincipal, request: Request, svc: ServicesDep) -> None:
    """End the session: every token naming it stops working, open sockets are closed."""
    await end_session(svc.db, principal.session_id, "logout")
    svc.hub.end_session(principal.session_id)
    await svc.record("user.logout", principal, source_addr(request))


@router.get("/me")
async def me(principal: CurrentPrincipal) -> PrincipalOut:
    return _principal_out(principal)
