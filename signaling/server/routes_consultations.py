"""Consultations over HTTP: request, list, view, accept, cancel, close; their chat record
and summary. Every change is also pushed to the two sites' sockets
(:meth:`~signaling.server.services.Services.consultation_changed`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from signaling.api_models import ConsultationOut, ConsultationRequest, ParticipantOut, SummaryOut
from signaling.auth import Principal
from signaling.consultation_fsm import ConsultationEvent
from signaling.errors import (
    ConsultationError,
    ConsultationNotFound,
    IllegalTransition,
    InvalidRequest,
    NotActive,
    NotPermitted,
)
from signaling.schema import Chat, ConsultationState
from signaling.server.deps import CurrentPrincipal, ServicesDep
from signaling.server.services import Services, source_addr
from signaling.storage import consultations as store
from signaling.storage import record
from signaling.storage.models import ConsultationRow

router = APIRouter(prefix="/api/consultations", tags=["consultations"])


def _out(row: ConsultationRow, principal: Principal) -> ConsultationOut:
    return ConsultationOut(**store.describe(principal, row).model_dump())


#: The HTTP status a refusal is answered with: the storage layer speaks in domain errors.
_STATUS: dict[type[ConsultationError], int] = {
    ConsultationNotFound: status.HTTP_404_NOT_FOUND,
    NotPermitted: status.HTTP_403_FORBIDDEN,
    InvalidRequest: status.HTTP_422_UNPROCESSABLE_CONTENT,
    IllegalTransition: status.HTTP_409_CONFLICT,
    NotActive: status.HTTP_409_CONFLICT,
}


def _http_error(exc: ConsultationError) -> HTTPException:
    return HTTPException(_STATUS[type(exc)], str(exc))


async def visible(
    svc: Services, principal: Principal, consultation_id: str, action: str, addr: str
) -> ConsultationRow:
    """The consultation if ``principal`` may see it; else the refusal is audited as
    ``action`` and a 404 raised (unknown and invisible are not told apart)."""
    row = await store.get(svc.db, consultation_id)
    if row is None or not store.may_view(principal, row):
        await svc.record(
            action, principal, addr, consultation_id=consultation_id[:32], outcome="denied"
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such consultation")
    return row


@router.post("", status_code=status.HTTP_201_CREATED, responses={403: {}, 422: {}})
async def create_consultation(
    body: ConsultationRequest, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> ConsultationOut:
    """Request a consultation from another site; the caller's site is the requesting site."""
    try:
        row = await store.create(
            svc.db,
            principal,
            body.consulting_site,
            body.consent_cross_border,
            body.reason,
            body.patient,
        )
    except ConsultationError as exc:
        await svc.record("consultation.create", principal, source_addr(request), outcome="denied")
        raise _http_error(exc) from None
    await svc.record(
        "consultation.create",
        principal,
        source_addr(request),
        consultation_id=row.id,
        detail={
            "consent_cross_border": row.consent_cross_border,
            "patient": body.patient.pseudonym if body.patient else None,
        },
    )
    svc.consultation_changed(row)
    return _out(row, principal)


@router.get("")
async def list_consultations(
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
    state: ConsultationState | None = None,
) -> list[ConsultationOut]:
    """Consultations involving the caller's site (all of them for an administrator)."""
    rows = await store.list_visible(svc.db, principal, state)
    await svc.record(
        "consultation.list", principal, source_addr(request), detail={"count": len(rows)}
    )
    return [_out(r, principal) for r in rows]


@router.get("/{consultation_id}", responses={404: {}})
async def get_consultation(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> ConsultationOut:
    row = await store.get(svc.db, consultation_id)
    visible = row is not None and store.may_view(principal, row)
    await svc.record(
        "consultation.view",
        principal,
        source_addr(request),
        consultation_id=consultation_id[:32],
        outcome="ok" if visible else "denied",
    )
    if row is None or not visible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such consultation")
    return _out(row, principal)


async def _transition(
    consultation_id: str,
    event: ConsultationEvent,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> ConsultationOut:
    action = f"consultation.{event}"
    addr = source_addr(request)
    try:
        row = await store.transition(svc.db, principal, consultation_id, event)
    except ConsultationError as exc:
        await svc.record(
            action, principal, addr, consultation_id=consultation_id[:32], outcome="denied"
        )
        raise _http_error(exc) from None
    await svc.record(action, principal, addr, consultation_id=row.id)
    svc.consultation_changed(row)
    return _out(row, principal)


_TRANSITION_RESPONSES: dict[int | str, dict[str, object]] = {403: {}, 404: {}, 409: {}}


@router.post("/{consultation_id}/accept", responses=_TRANSITION_RESPONSES)
async def accept(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> ConsultationOut:
    """A doctor of the consulting site accepts: the consultation becomes active."""
    return await _transition(consultation_id, ConsultationEvent.ACCEPT, principal, request, svc)


@router.post("/{consultation_id}/cancel", responses=_TRANSITION_RESPONSES)
async def cancel(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> ConsultationOut:
    """The requesting site withdraws a request that was not yet accepted."""
    return await _transition(consultation_id, ConsultationEvent.CANCEL, principal, request, svc)


@router.post("/{consultation_id}/close", responses=_TRANSITION_RESPONSES)
async def close(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> ConsultationOut:
    """A doctor of either site ends the consultation; its room is emptied."""
    return await _transition(consultation_id, ConsultationEvent.CLOSE, principal, request, svc)


@router.get("/{consultation_id}/chat", responses={404: {}})
async def chat_history(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> list[Chat]:
    """The consultation's stored chat, oldest first, shaped as the WebSocket's ``chat``."""
    addr = source_addr(request)
    row = await visible(svc, principal, consultation_id, "chat.view", addr)
    messages = await record.chat_history(svc.db, row.id)
    await svc.record(
        "chat.view", principal, addr, consultation_id=row.id, detail={"count": len(messages)}
    )
    return messages


@router.get("/{consultation_id}/summary", responses={404: {}})
async def summary(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> SummaryOut:
    """What the consultation came to: when it started and ended, who took part, how much
    was said and kept."""
    addr = source_addr(request)
    row = await visible(svc, principal, consultation_id, "consultation.summary", addr)
    members = await store.members(svc.db, row.id, set())
    messages = await record.chat_count(svc.db, row.id)
    snapshots = await record.snapshot_count(svc.db, row.id)
    duration_s: float | None = None
    if row.accepted_at is not None:
        until = row.ended_at if row.ended_at is not None else svc.now()
        duration_s = max(0.0, (until - row.accepted_at).total_seconds())
    await svc.record("consultation.summary", principal, addr, consultation_id=row.id)
    out = _out(row, principal)
    return SummaryOut(
        consultation=out,
        started_at=out.accepted_at,
        ended_at=out.ended_at,
        duration_s=duration_s,
        participants=[
            ParticipantOut(
                kind=m.kind, principal_id=m.principal_id, name=m.name, role=m.role, site=m.site
            )
            for m in members
        ],
        messages=messages,
        snapshots=snapshots,
    )
