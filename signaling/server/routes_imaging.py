"""Images in a consultation, over HTTP: the patient's consent, and DICOM instances stored
with STOW-RS (PS3.18 10.5). Reading them back: :mod:`signaling.server.routes_dicomweb`.

``PUT /api/consultations/{id}/imaging-consent`` body ``{"consent": true|false}``: a doctor
or technician of the requesting (bedside) site records or withdraws the patient's consent
to identified images crossing the border; audited (``imaging.consent``: value and the one
before) and pushed to both sites as the consultation changed. 403 for anyone else (a
gateway, the consulting site, an administrator), 409 once the consultation has ended.

``POST /api/consultations/{id}/dicomweb/studies``: ``multipart/related;
type="application/dicom"``, one Part 10 file per part, each with ``Content-Type:
application/dicom`` and optionally ``Content-Digest: sha-256=:...:`` (RFC 9530). From a
gateway of the requesting site or a clinician of either site, while the consultation is
active or after it closed (a gateway forwards what it held during an outage). The body is
read up to ``imaging_max_bytes`` (413 past it); its framing, each part's digest and pydicom's
reading of it are checked in a worker thread (:mod:`signaling.imaging.stow`). A part is
refused alone (its failure reason in FailedSOPSequence) when its digest does not match,
pydicom cannot read it or its UIDs are wrong, when it is not de-identified (Patient
Identity Removed is not YES) and the consultation has no imaging consent (0x0124), or when
its SOP Instance UID is stored already with other bytes (0x0111; the same bytes again are
stored already: success). A stored instance is kept byte for byte
(:mod:`signaling.imaging.files`), indexed, audited (``imaging.stored``) and announced to
the room (``imaging.stored``). The answer: 200 (all stored), 202 (some), 409 (none), in
``application/dicom+json``, with ``X-Telemed-Stored-SHA256: <sop>=<hex>,...``. A body whose
framing breaks (truncated, too many parts, oversized headers) is refused whole with 400,
another content type with 415, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, StrictBool
from starlette.requests import ClientDisconnect

from signaling.api_models import ConsultationOut
from signaling.auth import Principal
from signaling.errors import (
    ConsultationNotFound,
    InvalidMultipart,
    NotActive,
    NotPermitted,
)
from signaling.imaging.dicom import DUPLICATE_SOP_INSTANCE, NOT_AUTHORISED, OUT_OF_RESOURCES
from signaling.imaging.files import InstanceFiles, InstanceKey
from signaling.imaging.multipart import MultipartLimits, parse_media_type, related_boundary
from signaling.imaging.renderer import Renderer
from signaling.imaging.stow import (
    DICOM,
    DICOM_JSON,
    Checked,
    Failed,
    Referenced,
    answer,
    check_upload,
)
from signaling.schema import ConsultationState, ImagingStored, encode
from signaling.server.deps import CurrentPrincipal, ServicesDep
from signaling.server.routes_consultations import visible
from signaling.server.services import Services, source_addr
from signaling.storage import consultations as store
from signaling.storage import imaging
from signaling.storage.models import ConsultationRow, ImagingInstanceRow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/consultations", tags=["imaging"])

#: Renders at once: each holds a decoded image in memory (a 512x512 CT is small; a
#: multi-frame ultrasound decodes one frame, but a big X-ray is tens of MB).
RENDER_SLOTS = 2


@dataclass
class ImagingState:
    """What the imaging routes share, on ``app.state.imaging`` (built by ``create_app``)."""

    #: None: the server keeps no files (no data directory): uploads are refused.
    files: InstanceFiles | None
    #: None: rendered images are answered with 503.
    renderer: Renderer | None
    render_slots: asyncio.Semaphore


def install(app_state: object, data_dir: Path | None, renderer: Renderer | None) -> None:
    """Put the :class:`ImagingState` on ``app_state`` (``app.state``)."""
    files = InstanceFiles(data_dir / "imaging") if data_dir is not None else None
    app_state.imaging = ImagingState(files, renderer, asyncio.Semaphore(RENDER_SLOTS))  # type: ignore[attr-defined]


def imaging_of(request: Request) -> ImagingState:
    state: ImagingState = request.app.state.imaging
    return state


def dicomweb_base(request: Request, consultation_id: str) -> str:
    """The absolute URL of the consultation's DICOMweb service (for RetrieveURLs)."""
    return f"{str(request.base_url).rstrip('/')}/api/consultations/{consultation_id}/dicomweb"


def instance_url(base: str, study: str, series: str, sop: str) -> str:
    return f"{base}/studies/{study}/series/{series}/instances/{sop}"


# -- consent ---------------------------------------------------------------------------------


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consent: StrictBool


@router.put("/{consultation_id}/imaging-consent", responses={403: {}, 404: {}, 409: {}, 422: {}})
async def set_imaging_consent(
    consultation_id: str,
    body: ConsentIn,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> ConsultationOut:
    """Record or withdraw the patient's consent to identified images crossing the border
    (a doctor or technician of the requesting site)."""
    addr = source_addr(request)
    action = "imaging.consent"
    try:
        row, before = await imaging.set_consent(svc.db, principal, consultation_id, body.consent)
    except (ConsultationNotFound, NotPermitted, NotActive) as exc:
        code = {
            ConsultationNotFound: status.HTTP_404_NOT_FOUND,
            NotPermitted: status.HTTP_403_FORBIDDEN,
            NotActive: status.HTTP_409_CONFLICT,
        }[type(exc)]
        await svc.record(
            action,
            principal,
            addr,
            consultation_id=consultation_id[:32],
            outcome="denied",
            detail={"consent": body.consent, "why": code},
        )
        raise HTTPException(code, str(exc)) from None
    await svc.record(
        action,
        principal,
        addr,
        consultation_id=row.id,
        detail={"consent": body.consent, "before": before},
    )
    svc.consultation_changed(row)
    return ConsultationOut(**store.describe(principal, row).model_dump())


# -- STOW-RS ---------------------------------------------------------------------------------


class Stored(Enum):
    NEW = "new"
    AGAIN = "again"  # the same bytes were stored already


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"an upload may have at most {limit} bytes",
        headers={"Connection": "close"},
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:
        # A truncated upload: nobody is left to answer, but it is refused and audited.
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"the client went away after {len(body)} bytes of the body",
        ) from None
    return bytes(body)


_STOW_BODY = {
    "requestBody": {
        "required": True,
        "description": "Part 10 files, one per part",
        "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    }
}


@router.post(
    "/{consultation_id}/dicomweb/studies",
    responses={
        200: {"content": {DICOM_JSON: {}}, "description": "every instance stored"},
        202: {"content": {DICOM_JSON: {}}, "description": "some stored, some failed"},
        400: {},
        403: {},
        404: {},
        409: {"content": {DICOM_JSON: {}}, "description": "none stored"},
        413: {},
        415: {},
        503: {},
    },
    response_class=Response,
    openapi_extra=_STOW_BODY,
)
async def store_instances(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> Response:
    """Store DICOM instances with the consultation (STOW-RS)."""
    addr = source_addr(request)
    action = "imaging.store"
    row = await visible(svc, principal, consultation_id, action, addr)

    async def refuse(code: int, reason: str) -> HTTPException:
        await svc.record(
            action,
            principal,
            addr,
            consultation_id=row.id,
            outcome="denied",
            detail={"why": code, "reason": reason[:200]},
        )
        return HTTPException(code, reason)

    if not imaging.may_upload(principal, row):
        raise await refuse(
            status.HTTP_403_FORBIDDEN,
            "images are sent by a gateway of the requesting site or a clinician of the two sites",
        )
    state = ConsultationState(row.state)
    if state not in (ConsultationState.ACTIVE, ConsultationState.CLOSED):
        raise await refuse(status.HTTP_409_CONFLICT, f"the consultation is {state}")
    files = imaging_of(request).files
    if files is None:
        raise await refuse(
            status.HTTP_503_SERVICE_UNAVAILABLE, "this server keeps no image files (no data_dir)"
        )
    content_type = request.headers.get("content-type")
    try:
        if parse_media_type(content_type or "").type != "multipart/related":
            raise InvalidMultipart(f'an upload is multipart/related; type="{DICOM}"')
        boundary = related_boundary(content_type, DICOM)
    except InvalidMultipart as exc:
        raise await refuse(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
    try:
        body = await _body(request, svc.config.imaging_max_bytes)
    except HTTPException as exc:
        raise await refuse(exc.status_code, str(exc.detail)) from None
    limits = MultipartLimits(max_parts=svc.config.imaging_max_parts)
    try:
        results = await asyncio.to_thread(check_upload, body, boundary, limits)
    except InvalidMultipart as exc:
        raise await refuse(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    base = dicomweb_base(request, row.id)
    referenced: list[Referenced] = []
    failed: list[Failed] = []
    digests: list[str] = []
    for result in results:
        if isinstance(result, Checked):
            outcome = await _store_one(svc, files, row, principal, result)
            if isinstance(outcome, Stored):
                info = result.info
                url = instance_url(
                    base, info.study_instance_uid, info.series_instance_uid, info.sop_instance_uid
                )
                referenced.append(Referenced(info.sop_class_uid, info.sop_instance_uid, url))
                digests.append(f"{info.sop_instance_uid}={result.sha256}")
                await _stored(svc, row, principal, addr, result, outcome)
                continue
            result = outcome
        failed.append(result)
        log.info("imaging upload to %s: part refused: %s", row.id, result.reason)
        await svc.record(
            "imaging.stored",
            principal,
            addr,
            consultation_id=row.id,
            outcome="denied",
            detail={
                "sop": result.sop_instance_uid,
                "failure": f"0x{result.status:04X}",
                "reason": result.reason[:200],
            },
        )
    code, document = answer(referenced, failed)
    headers = {"X-Telemed-Stored-SHA256": ",".join(digests)} if digests else None
    return Response(
        json.dumps(document).encode("utf-8"), code, headers=headers, media_type=DICOM_JSON
    )


async def _store_one(
    svc: Services, files: InstanceFiles, row: ConsultationRow, principal: Principal, part: Checked
) -> Stored | Failed:
    """Keep one checked instance: its file (staged, then named once indexed) and its index
    row; the duplicate and consent rules applied."""
    info = part.info

    def failure(code: int, reason: str) -> Failed:
        return Failed(code, reason, info.sop_instance_uid, info.sop_class_uid)

    if not info.deidentified and not row.imaging_consent:
        return failure(
            NOT_AUTHORISED,
            "no imaging consent: Patient Identity Removed is not YES",
        )

    key = InstanceKey(
        row.id, info.study_instance_uid, info.series_instance_uid, info.sop_instance_uid
    )

    async def again() -> Stored | Failed:
        existing = await imaging.find(svc.db, row.id, info.sop_instance_uid)
        if existing is None or existing.sha256 != part.sha256:
            return failure(
                DUPLICATE_SOP_INSTANCE, "stored already with other bytes; the first is kept"
            )
        if not await asyncio.to_thread(files.path(key).exists):
            # Indexed, but the server stopped before the file got its name: the same
            # bytes again complete it.
            try:
                staged = await asyncio.to_thread(files.stage, key, part.data)
                await asyncio.to_thread(files.commit, key, staged)
            except OSError as exc:
                log.error("imaging: cannot write %s: %s", info.sop_instance_uid, exc)
                return failure(OUT_OF_RESOURCES, "the server could not write the file")
        return Stored.AGAIN

    if await imaging.find(svc.db, row.id, info.sop_instance_uid) is not None:
        return await again()
    try:
        staged = await asyncio.to_thread(files.stage, key, part.data)
    except OSError as exc:
        log.error("imaging: cannot write %s: %s", info.sop_instance_uid, exc)
        return failure(OUT_OF_RESOURCES, "the server could not write the file")
    index = _index_row(row.id, principal, part, svc)
    if not await imaging.add(svc.db, index):
        await asyncio.to_thread(files.discard, staged)
        return await again()
    try:
        await asyncio.to_thread(files.commit, key, staged)
    except OSError as exc:
        log.error("imaging: cannot name %s: %s", info.sop_instance_uid, exc)
        await imaging.remove(svc.db, index.id)
        await asyncio.to_thread(files.discard, staged)
        return failure(OUT_OF_RESOURCES, "the server could not write the file")
    return Stored.NEW


def _index_row(
    consultation_id: str, principal: Principal, part: Checked, svc: Services
) -> ImagingInstanceRow:
    info = part.info
    return ImagingInstanceRow(
        consultation_id=consultation_id,
        study_instance_uid=info.study_instance_uid,
        series_instance_uid=info.series_instance_uid,
        sop_instance_uid=info.sop_instance_uid,
        sop_class_uid=info.sop_class_uid,
        transfer_syntax_uid=info.transfer_syntax_uid,
        modality=info.modality,
        frames=info.frames,
        rows=info.rows,
        columns=info.columns,
        patient_name=info.patient_name,
        patient_id=info.patient_id,
        study_date=info.study_date,
        study_time=info.study_time,
        study_description=info.study_description,
        accession_number=info.accession_number,
        series_number=info.series_number,
        series_description=info.series_description,
        instance_number=info.instance_number,
        sha256=part.sha256,
        deidentified=info.deidentified,
        size=len(part.data),
        stored_at=svc.now(),
        sender_kind=str(principal.kind),
        sender_id=principal.id,
        sender_name=principal.name[:128],
    )


async def _stored(
    svc: Services,
    row: ConsultationRow,
    principal: Principal,
    addr: str,
    part: Checked,
    outcome: Stored,
) -> None:
    """Audit a stored instance; a new one is announced to the consultation's room."""
    info = part.info
    await svc.record(
        "imaging.stored",
        principal,
        addr,
        consultation_id=row.id,
        detail={
            "sop": info.sop_instance_uid,
            "sop_class": info.sop_class_uid,
            "study": info.study_instance_uid,
            "series": info.series_instance_uid,
            "sha256": part.sha256,
            "deidentified": info.deidentified,
            "bytes": len(part.data),
            "again": outcome is Stored.AGAIN,
        },
    )
    if outcome is Stored.NEW:
        text = encode(
            ImagingStored(
                consultation_id=row.id,
                study=info.study_instance_uid,
                series=info.series_instance_uid,
                sop=info.sop_instance_uid,
                modality=info.modality,
                frames=info.frames,
            )
        )
        for member in svc.hub.in_room(row.id):
            member.send_text(text)
