"""FastAPI dependencies: the authenticated principal behind every API route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from signaling.auth import Principal
from signaling.errors import AuthError, SessionEnded
from signaling.schema import Role
from signaling.server.services import Services, services_of
from signaling.storage.accounts import touch_session

_bearer = HTTPBearer(auto_error=False, description="token from /api/auth/login")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal of a valid bearer token whose session is live; counts as activity."""
    if credentials is None:
        raise _unauthorized("a bearer token is required")
    svc = services_of(request)
    try:
        principal = svc.tokens.decode(credentials.credentials)
        await touch_session(svc.db, principal.session_id, svc.idle_timeout(principal))
    except SessionEnded as exc:
        raise _unauthorized(f"session ended: {exc.reason}") from None
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None
    return principal


async def admin_principal(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    if principal.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrators only")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
ServicesDep = Annotated[Services, Depends(services_of)]
