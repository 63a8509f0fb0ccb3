"""The HTTP API's request and response bodies, shared by the server's routes and the Python
client (which returns them typed). The WebSocket messages are in :mod:`signaling.schema`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from signaling.schema import ConsultationSummary, PrincipalKind, Role


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


class ConsultationOut(ConsultationSummary):
    """A consultation as the caller sees it; the same fields a ``consultation`` message of
    the WebSocket carries (:class:`~signaling.schema.ConsultationSummary`)."""


class ParticipantOut(BaseModel):
    """Someone who joined the consultation at least once (a clinician or a gateway)."""

    kind: PrincipalKind
    principal_id: int
    name: str
    role: Role
    site: str


class SummaryOut(BaseModel):
    """What a consultation came to: shown when it ends, and part of its record."""

    consultation: ConsultationOut
    #: When it was accepted (ISO 8601, UTC); None if it never was.
    started_at: str | None
    ended_at: str | None
    #: ended_at - started_at; while active, until now; None if it never started.
    duration_s: float | None
    #: Everyone who ever joined, in the order they first joined.
    participants: list[ParticipantOut]
    #: Stored chat messages and snapshots.
    messages: int
    snapshots: int


class SnapshotOut(BaseModel):
    """A stored bedside snapshot (its bytes are at ``.../snapshots/{id}``)."""

    id: int
    consultation_id: str
    taken_at: datetime
    #: The display name of the clinician who took it.
    taken_by: str
    content_type: str
    bytes: int
    sha256: str


class IceServer(BaseModel):
    """Shaped like the browser's ``RTCIceServer`` dictionary."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServersOut(BaseModel):
    ice_servers: list[IceServer]
    #: When the TURN credentials stop working (None when there is no TURN server).
    expires_at: datetime | None
