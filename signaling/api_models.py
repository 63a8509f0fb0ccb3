"""The HTTP API's request and response bodies, shared by the server's routes and the Python
client (which returns them typed). The WebSocket messages are in :mod:`signaling.schema`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from signaling.schema import ConsultationAction, ConsultationInfo, PrincipalKind, Role


class UserLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class GatewayLogin(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=1024)


class PrincipalOut(BaseModel):
    kind: PrincipalKind
    id: int
    name: str
    role: Role
    site: str


class TokenOut(BaseModel):
    token: str
    expires_at: datetime
    #: A clinician session ends after this many seconds without activity (None: never).
    idle_timeout_s: float | None
    principal: PrincipalOut


class ConsultationRequest(BaseModel):
    consulting_site: str = Field(min_length=1, max_length=32)
    #: Whether the patient consented to their data crossing the border; without consent
    #: images and vitals leave the site de-identified.
    consent_cross_border: bool
    reason: str = Field(default="", max_length=2000)


class ConsultationOut(ConsultationInfo):
    reason: str
    created_at: str
    accepted_at: str | None
    ended_at: str | None
    #: What the caller may do with it now (by its state, their role and site).
    allowed_actions: list[ConsultationAction]


class IceServer(BaseModel):
    """Shaped like the browser's ``RTCIceServer`` dictionary."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServersOut(BaseModel):
    ice_servers: list[IceServer]
    #: When the TURN credentials stop working (None when there is no TURN server).
    expires_at: datetime | None
