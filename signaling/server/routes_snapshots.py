"""Bedside snapshots over HTTP: taken by the clinicians of an active consultation, kept in
the database with it, listed and viewed by whoever may see the consultation.

``POST /api/consultations/{id}/snapshots`` takes the raw image as the body (``image/jpeg``
or ``image/png``, at most :data:`MAX_SNAPSHOT_BYTES`). Refusals are statuses with a reason:
404 (no such consultation, or not visible), 403 (not a clinician of the two sites), 409
(not active), 415 (another content type), 413 (too large), 422 (the bytes are not a whole
image of the declared type). The body is read in chunks and abandoned past the limit; the
image check and its SHA-256 run in a worker thread. Every taking and every view of an image
is audited with the image's SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status

from signaling.api_models import SnapshotOut
from signaling.errors import ConsultationNotFound, InvalidImage, NotActive
from signaling.images import CONTENT_TYPES, JPEG, ImageInfo, check_image, media_type
from signaling.schema import ConsultationState
from signaling.server.deps import CurrentPrincipal, ServicesDep
from signaling.server.routes_consultations import visible
from signaling.server.services import source_addr
from signaling.storage import consultations as store
from signaling.storage import record

router = APIRouter(prefix="/api/consultations", tags=["snapshots"])

#: The largest snapshot accepted, in bytes (5 MiB: a 1080p JPEG is a few hundred KiB).
MAX_SNAPSHOT_BYTES = 5 * 1024 * 1024
#: Snapshot ids are database integers: anything outside is no snapshot (a 404, not a fault).
SnapshotId = Annotated[int, Path(ge=1, le=2**31 - 1)]

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image's bytes",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in CONTENT_TYPES},
    }
}


def _out(snapshot: record.Snapshot) -> SnapshotOut:
    return SnapshotOut(
        id=snapshot.id,
        consultation_id=snapshot.consultation_id,
        taken_at=snapshot.taken_at,
        taken_by=snapshot.taken_by,
        content_type=snapshot.content_type,
        bytes=snapshot.size,
        sha256=snapshot.sha256,
    )


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"a snapshot may have at most {limit} bytes",
        # The rest of the body is not read: the connection cannot be reused.
        headers={"Connection": "close"},
    )


def _check(data: bytes, content_type: str) -> tuple[ImageInfo, str]:
    """Worker-thread half of a taking: the structural check and the digest."""
    return check_image(data, content_type), hashlib.sha256(data).hexdigest()


@router.post(
    "/{consultation_id}/snapshots",
    status_code=status.HTTP_201_CREATED,
    responses={403: {}, 404: {}, 409: {}, 413: {}, 415: {}, 422: {}},
    openapi_extra=_IMAGE_BODY,
)
async def take_snapshot(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> SnapshotOut:
    """Store a still image of the bedside with the consultation (a clinician of either site,
    while it is active)."""
    addr = source_addr(request)
    action = "snapshot.take"
    row = await visible(svc, principal, consultation_id, action, addr)

    async def refuse(code: int, reason: str) -> HTTPException:
        await svc.record(
            action, principal, addr, consultation_id=row.id, outcome="denied", detail={"why": code}
        )
        return HTTPException(code, reason)

    if not store.may_take_snapshot(principal, row):
        raise await refuse(
            status.HTTP_403_FORBIDDEN, "only the doctors and technicians of the two sites"
        )
    state = ConsultationState(row.state)
    if state is not ConsultationState.ACTIVE:
        raise await refuse(status.HTTP_409_CONFLICT, record.not_active_reason(state))
    content_type = media_type(request.headers.get("content-type"))
    if content_type not in CONTENT_TYPES:
        raise await refuse(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"a snapshot is image/jpeg or image/png, not {content_type[:64] or 'untyped'}",
        )
    try:
        data = await _body(request, MAX_SNAPSHOT_BYTES)
    except HTTPException as exc:
        raise await refuse(exc.status_code, str(exc.detail)) from None
    try:
        info, digest = await asyncio.to_thread(_check, data, content_type)
    except InvalidImage as exc:
        raise await refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    try:
        taken = await record.add_snapshot(
            svc.db, row.id, principal, content_type, data, digest, svc.now()
        )
    except NotActive as exc:  # closed while the image was arriving
        raise await refuse(status.HTTP_409_CONFLICT, str(exc)) from None
    except ConsultationNotFound:
        raise await refuse(status.HTTP_404_NOT_FOUND, "no such consultation") from None
    await svc.record(
        action,
        principal,
        addr,
        consultation_id=row.id,
        detail={
            "snapshot": taken.id,
            "sha256": digest,
            "bytes": taken.size,
            "content_type": content_type,
            "width": info.width,
            "height": info.height,
        },
    )
    return _out(taken)


@router.get("/{consultation_id}/snapshots", responses={404: {}})
async def list_snapshots(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> list[SnapshotOut]:
    """The consultation's snapshots, oldest first (descriptions; the bytes are apart)."""
    addr = source_addr(request)
    row = await visible(svc, principal, consultation_id, "snapshot.list", addr)
    found = await record.snapshots(svc.db, row.id)
    await svc.record(
        "snapshot.list", principal, addr, consultation_id=row.id, detail={"count": len(found)}
    )
    return [_out(s) for s in found]


@router.get(
    "/{consultation_id}/snapshots/{snapshot_id}",
    responses={
        200: {"content": {t: {} for t in CONTENT_TYPES}, "description": "the image"},
        404: {},
    },
    response_class=Response,
)
async def get_snapshot(
    consultation_id: str,
    snapshot_id: SnapshotId,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """The image's bytes, with its content type; never cached."""
    addr = source_addr(request)
    row = await visible(svc, principal, consultation_id, "snapshot.view", addr)
    found = await record.snapshot_data(svc.db, row.id, snapshot_id)
    if found is None:
        await svc.record(
            "snapshot.view",
            principal,
            addr,
            consultation_id=row.id,
            outcome="denied",
            detail={"snapshot": snapshot_id},
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such snapshot")
    snapshot, data = found
    await svc.record(
        "snapshot.view",
        principal,
        addr,
        consultation_id=row.id,
        detail={"snapshot": snapshot.id, "sha256": snapshot.sha256},
    )
    extension = "jpg" if snapshot.content_type == JPEG else "png"
    return Response(
        content=data,
        media_type=snapshot.content_type,
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="snapshot-{snapshot.id}.{extension}"',
        },
    )
