"""The bedside's record over HTTP: a gateway uploads what it measured, the room reads trends.

``POST /api/consultations/{id}/record`` (gateways of the consultation's two sites, while
it is active or after it closed: a gateway backfills what it kept during an outage): body
:class:`~signaling.api_models.RecordIn`, answer :class:`~signaling.api_models.RecordOut`
(rows added or changed; a replayed batch changes nothing). Refusals: 403 (not a gateway of
the two sites), 404 (no such consultation, or not visible), 409 (never accepted, or
cancelled), 413 (larger than ``record_max_bytes``), 422 (not a valid batch; the reason
names the first fault).

``GET /api/consultations/{id}/trends?codes=heart_rate,spo2&since=ISO&until=ISO&step=S``
(whoever may see the consultation; vitals are clinical data, not identifying): body
:class:`~signaling.api_models.TrendsOut`. ``until`` defaults to now, ``since`` to an hour
before it, ``step`` to what gives at most :data:`DEFAULT_POINTS` points; a window may
have at most :data:`MAX_POINTS` steps.

``GET /api/consultations/{id}/export?format=fhir|hl7&step=S&since=ISO&until=ISO``
(whoever may see the consultation): its numerics and alarms as a FHIR R4 Bundle
(``application/fhir+json``) or HL7 v2 ORU^R01 messages in a batch
(``x-application/hl7-v2+er7``), with the patient as the caller may see them
(:mod:`signaling.exports`). The window defaults to the consultation's; ``step`` to 1 s
(every stored value). Audited with the format and the window; 422 when the window at that
step holds more than :data:`~signaling.exports.MAX_EXPORT_VALUES` values.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import ValidationError

from signaling.api_models import RecordIn, RecordOut, TrendsOut
from signaling.errors import InvalidRequest
from signaling.exports import ExportTooLarge, fhir, gather, hl7
from signaling.schema import ConsultationState, PrincipalKind
from signaling.server.deps import CurrentPrincipal, ServicesDep
from signaling.server.routes_consultations import visible
from signaling.server.services import source_addr
from signaling.storage import consultations as store
from signaling.storage import vitals

router = APIRouter(prefix="/api/consultations", tags=["vitals"])

#: Points per series a trend has by default (an hour at 5 s, 8 h at 40 s)...
DEFAULT_POINTS = 720
#: ...and at most (a day at 5 s; 5 h at 1 s).
MAX_POINTS = 20_000
_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")

_RECORD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RecordIn.model_json_schema()}},
    }
}


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"a record upload may have at most {limit} bytes",
        headers={"Connection": "close"},
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


@router.post(
    "/{consultation_id}/record",
    responses={403: {}, 404: {}, 409: {}, 413: {}, 422: {}},
    openapi_extra=_RECORD_BODY,
)
async def upload_record(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> RecordOut:
    """A gateway stores numerics, alarms and alarm limits it measured with the consultation."""
    addr = source_addr(request)
    action = "vitals.record"
    row = await visible(svc, principal, consultation_id, action, addr)

    async def refuse(code: int, reason: str) -> HTTPException:
        await svc.record(
            action, principal, addr, consultation_id=row.id, outcome="denied", detail={"why": code}
        )
        return HTTPException(code, reason)

    if principal.kind is not PrincipalKind.GATEWAY or not store.involves(principal, row):
        raise await refuse(
            status.HTTP_403_FORBIDDEN, "only a gateway of the consultation's sites records"
        )
    state = ConsultationState(row.state)
    if state not in (ConsultationState.ACTIVE, ConsultationState.CLOSED):
        raise await refuse(status.HTTP_409_CONFLICT, f"the consultation is {state}")
    try:
        raw = await _body(request, svc.config.record_max_bytes)
        record = RecordIn.model_validate_json(raw)
    except HTTPException as exc:
        raise await refuse(exc.status_code, str(exc.detail)) from None
    except ValidationError as exc:
        raise await refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, _reason(exc)) from None
    try:
        stored = await vitals.store_record(svc.db, row.id, principal.id, record, svc.now())
    except InvalidRequest as exc:
        raise await refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if stored.numerics or stored.alarms:
        await svc.record(
            action,
            principal,
            addr,
            consultation_id=row.id,
            detail={
                "numerics": len(record.numerics),
                "numerics_stored": stored.numerics,
                "alarms": len(record.alarms),
                "alarms_stored": stored.alarms,
            },
        )
    for limits in stored.limits:
        # The limits the bedside put in force (after a doctor's change, or its defaults).
        await svc.record(
            "alarm.limits.applied",
            principal,
            addr,
            consultation_id=row.id,
            detail={
                "limits": vitals.limits_json(limits),
                "changed_by": limits.changed_by,
                "time": limits.time,
            },
        )
    return RecordOut(numerics=stored.numerics, alarms=stored.alarms, limits=len(stored.limits))


def _epoch(value: datetime) -> float:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.timestamp()


def _codes(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if len(codes) > 64 or any(len(c) > 64 or not set(c) <= _CODE_CHARS for c in codes):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "codes: at most 64 parameter keys (letters, digits, _ . : -), comma-separated",
        )
    return codes


@router.get("/{consultation_id}/trends", responses={404: {}, 422: {}})
async def trends(
    consultation_id: str,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
    codes: Annotated[str | None, Query(max_length=4096)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    step: Annotated[int | None, Query(ge=1, le=86_400)] = None,
) -> TrendsOut:
    """The consultation's numerics over a window, downsampled to ``step`` seconds (the mean
    of each step; gaps kept), and the alarms overlapping it."""
    addr = source_addr(request)
    row = await visible(svc, principal, consultation_id, "vitals.trends", addr)
    wanted = _codes(codes)
    try:
        end = _epoch(until) if until is not None else svc.clock.time()
        start = _epoch(since) if since is not None else end - 3600.0
    except (OverflowError, OSError, ValueError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "time out of range") from None
    if not (0 <= start < end <= 1e11):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "since must be before until (and after 1970)"
        )
    first, last = math.floor(start), math.ceil(end)
    window = last - first
    if step is None:
        step = max(1, math.ceil(window / DEFAULT_POINTS))
    if window / step > MAX_POINTS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{window} s at a step of {step} s is more than {MAX_POINTS} points; "
            f"use a step of at least {math.ceil(window / MAX_POINTS)} s",
        )
    series = await vitals.trends(svc.db, row.id, wanted, first, last, step)
    alarms = await vitals.alarms(svc.db, row.id, first, last)
    await svc.record(
        "vitals.trends",
        principal,
        addr,
        consultation_id=row.id,
        detail={
            "since": first,
            "until": last,
            "step": step,
            "codes": json.dumps(wanted) if wanted else None,
        },
    )
    return TrendsOut(since=first, until=last, step=step, series=series, alarms=alarms)


_EXPORT_TYPES = {
    "fhir": ("application/fhir+json", "json"),
    "hl7": ("x-application/hl7-v2+er7; charset=utf-8", "hl7"),
}


@router.get(
    "/{consultation_id}/export",
    responses={
        200: {"content": {t: {} for t, _ in _EXPORT_TYPES.values()}, "description": "export"},
        404: {},
        422: {},
    },
    response_class=Response,
)
async def export(
    consultation_id: str,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
    format: Literal["fhir", "hl7"] = "fhir",
    step: Annotated[int, Query(ge=1, le=86_400)] = 1,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    """The consultation's numerics and alarms as FHIR R4 or HL7 v2 (IHE PCD-01)."""
    addr = source_addr(request)
    row = await visible(svc, principal, consultation_id, "consultation.export", addr)
    try:
        start = _epoch(since) if since is not None else None
        end = _epoch(until) if until is not None else None
    except (OverflowError, OSError, ValueError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "time out of range") from None
    if start is not None and end is not None and not start < end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since must be before until")
    try:
        data = await gather(
            svc.db, principal, row, now=svc.clock.time(), step=step, since=start, until=end
        )
    except ExportTooLarge as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    builder = fhir.build if format == "fhir" else hl7.build
    # Building and validating thousands of resources is CPU work: off the event loop.
    text = await asyncio.to_thread(builder, data)
    await svc.record(
        "consultation.export",
        principal,
        addr,
        consultation_id=row.id,
        detail={
            "format": format,
            "since": data.since,
            "until": data.until,
            "step": data.step,
            "identified": data.patient.identified if data.patient else None,
        },
    )
    media_type, extension = _EXPORT_TYPES[format]
    return Response(
        content=text.encode(),
        media_type=media_type,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{row.id}.{extension}"',
        },
    )
