"""Reading a consultation's images: QIDO-RS and WADO-RS (PS3.18 10.4, 10.6) under
``/api/consultations/{id}/dicomweb``.

Who may read: the clinicians of the consultation's two sites and the gateways of its
requesting site (:func:`signaling.storage.imaging.may_read`); anyone else who may see the
consultation (an administrator) gets 403, anyone who may not 404. An identified instance
(stored under the patient's consent) is not shown outside the requesting site once the
consent is withdrawn (:func:`~signaling.storage.imaging.may_see_instance`). Every read is
audited.

- QIDO: ``/studies``, ``/series``, ``/instances``, ``/studies/{study}/series``,
  ``/studies/{study}/instances``, ``/studies/{study}/series/{series}/instances``, in
  ``application/dicom+json`` (:mod:`signaling.imaging.qido`); a key it cannot match: 400.
- WADO: ``.../instances/{sop}`` (``multipart/related; type="application/dicom"``, the
  stored file byte for byte), ``/studies/{study}`` and ``/studies/{study}/series/{series}``
  (every instance of the study or series the reader may see, streamed a file at a time),
  ``.../metadata`` (instance or series; bulk data as ``BulkDataURI`` to
  ``.../bulkdata/{tag}``), ``.../frames/{n[,m...]}`` (1-based, native
  pixel data as ``application/octet-stream`` parts; compressed: 406).
- Rendered: ``.../rendered``, ``.../frames/{n}/rendered``, ``.../thumbnail`` (JPEG or PNG
  by ``Accept``; ``window``, ``preset``, ``viewport``, ``quality``:
  :mod:`signaling.imaging.renderer`), rendered by the app's renderer in a worker thread,
  at most :data:`~signaling.server.routes_imaging.RENDER_SLOTS` at once; no renderer: 503;
  a parameter it cannot use: 400; an image it cannot render: 422 with its reason.
  Repeated rendered reads of one instance by one reader are audited as one row and a count
  per minute (:mod:`signaling.server.read_audit`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.responses import StreamingResponse

from signaling.auth import Principal
from signaling.errors import InvalidInstance, InvalidMultipart, InvalidRequest
from signaling.imaging import dicom, qido
from signaling.imaging.files import InstanceKey
from signaling.imaging.multipart import (
    encode_related,
    new_boundary,
    parse_media_type,
    related_end,
    related_part_head,
)
from signaling.imaging.renderer import NotAcceptable, render_request
from signaling.imaging.stow import DICOM, DICOM_JSON
from signaling.server.deps import CurrentPrincipal, ServicesDep
from signaling.server.routes_consultations import visible
from signaling.server.routes_imaging import dicomweb_base, imaging_of, instance_url
from signaling.server.services import Services, source_addr
from signaling.storage import imaging
from signaling.storage.audit import DetailValue
from signaling.storage.models import ConsultationRow, ImagingInstanceRow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/consultations/{consultation_id}/dicomweb", tags=["dicomweb"])

Uid = Annotated[str, Path(max_length=64, pattern=f"^{dicom.UID_PATTERN}$")]
#: The most frames one request may name.
MAX_FRAMES_ASKED = 1000
OCTET_STREAM = "application/octet-stream"
_INSTANCE = "/studies/{study}/series/{series}/instances/{sop}"
#: Reads audited as a row and a count per reader, image and minute (a cine's frames, a
#: viewer's window/level drags): see signaling.server.read_audit.
_COALESCED = frozenset({"imaging.render"})
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


async def _reader(
    svc: Services, principal: Principal, consultation_id: str, action: str, addr: str
) -> ConsultationRow:
    """The consultation if ``principal`` may read its images; 404 or 403 (audited)."""
    row = await visible(svc, principal, consultation_id, action, addr)
    if not imaging.may_read(principal, row):
        await svc.record(action, principal, addr, consultation_id=row.id, outcome="denied")
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "images are for the consultation's members only"
        )
    return row


def _seen(
    principal: Principal, row: ConsultationRow, rows: list[ImagingInstanceRow]
) -> list[ImagingInstanceRow]:
    """The instances ``principal`` may see (identified ones leave the requesting site only
    while the patient's consent stands)."""
    return [r for r in rows if imaging.may_see_instance(principal, row, r)]


def _dicom_json(document: object, code: int = 200) -> Response:
    return Response(
        json.dumps(document, ensure_ascii=False).encode("utf-8"),
        code,
        media_type=DICOM_JSON,
        headers=_NO_STORE,
    )


# -- QIDO-RS ---------------------------------------------------------------------------------


async def _search(
    request: Request,
    svc: Services,
    principal: Principal,
    consultation_id: str,
    level: qido.Level,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    addr = source_addr(request)
    row = await _reader(svc, principal, consultation_id, "imaging.search", addr)
    try:
        query = qido.parse_query(request.query_params.multi_items())
    except InvalidRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    rows = _seen(principal, row, await imaging.instances(svc.db, row.id, study, series))
    base = dicomweb_base(request, row.id)

    def url_of(r: ImagingInstanceRow, at: qido.Level) -> str:
        if at is qido.Level.STUDY:
            return f"{base}/studies/{r.study_instance_uid}"
        if at is qido.Level.SERIES:
            return f"{base}/studies/{r.study_instance_uid}/series/{r.series_instance_uid}"
        return instance_url(base, r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid)

    found = qido.search(rows, level, query, url_of)
    await svc.record(
        "imaging.search",
        principal,
        addr,
        consultation_id=row.id,
        detail={"level": str(level), "count": len(found)},
    )
    return _dicom_json(found)


_QIDO: dict[int | str, dict[str, Any]] = {
    200: {"content": {DICOM_JSON: {}}},
    400: {},
    403: {},
    404: {},
}


@router.get("/studies", responses=_QIDO, response_class=Response)
async def search_studies(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> Response:
    """The consultation's studies (QIDO-RS)."""
    return await _search(request, svc, principal, consultation_id, qido.Level.STUDY)


@router.get("/series", responses=_QIDO, response_class=Response)
async def search_all_series(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> Response:
    """The consultation's series (QIDO-RS)."""
    return await _search(request, svc, principal, consultation_id, qido.Level.SERIES)


@router.get("/instances", responses=_QIDO, response_class=Response)
async def search_all_instances(
    consultation_id: str, principal: CurrentPrincipal, request: Request, svc: ServicesDep
) -> Response:
    """The consultation's instances (QIDO-RS)."""
    return await _search(request, svc, principal, consultation_id, qido.Level.INSTANCE)


@router.get("/studies/{study}/series", responses=_QIDO, response_class=Response)
async def search_series(
    consultation_id: str,
    study: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """A study's series (QIDO-RS)."""
    return await _search(request, svc, principal, consultation_id, qido.Level.SERIES, study)


@router.get("/studies/{study}/instances", responses=_QIDO, response_class=Response)
async def search_study_instances(
    consultation_id: str,
    study: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """A study's instances (QIDO-RS)."""
    return await _search(request, svc, principal, consultation_id, qido.Level.INSTANCE, study)


@router.get("/studies/{study}/series/{series}/instances", responses=_QIDO, response_class=Response)
async def search_instances(
    consultation_id: str,
    study: Uid,
    series: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """A series' instances (QIDO-RS)."""
    return await _search(
        request, svc, principal, consultation_id, qido.Level.INSTANCE, study, series
    )


# -- WADO-RS ---------------------------------------------------------------------------------


async def _instance(
    request: Request,
    svc: Services,
    principal: Principal,
    consultation_id: str,
    action: str,
    study: str,
    series: str,
    sop: str,
) -> tuple[ConsultationRow, ImagingInstanceRow, bytes]:
    """The consultation, the instance's index row and its file's bytes; 403/404."""
    row, found = await _visible(
        request, svc, principal, consultation_id, action, study, series, sop
    )
    return await _read(request, svc, principal, action, row, found)


async def _visible(
    request: Request,
    svc: Services,
    principal: Principal,
    consultation_id: str,
    action: str,
    study: str,
    series: str,
    sop: str,
) -> tuple[ConsultationRow, ImagingInstanceRow]:
    """The consultation and the instance's index row, when ``principal`` may see it; else
    403/404 (audited as denied)."""
    addr = source_addr(request)
    row = await _reader(svc, principal, consultation_id, action, addr)
    found = await imaging.find(svc.db, row.id, sop)
    if (
        found is None
        or found.study_instance_uid != study
        or found.series_instance_uid != series
        or not imaging.may_see_instance(principal, row, found)
    ):
        await svc.record(
            action, principal, addr, consultation_id=row.id, outcome="denied", detail={"sop": sop}
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such instance in this consultation")
    return row, found


async def _read(
    request: Request,
    svc: Services,
    principal: Principal,
    action: str,
    row: ConsultationRow,
    found: ImagingInstanceRow,
) -> tuple[ConsultationRow, ImagingInstanceRow, bytes]:
    """A visible instance's file, its read audited; 404 when the file is not there."""
    addr = source_addr(request)
    study, series, sop = found.study_instance_uid, found.series_instance_uid, found.sop_instance_uid
    files = imaging_of(request).files
    data = None
    if files is not None:
        data = await asyncio.to_thread(files.read, InstanceKey(row.id, study, series, sop))
    if data is None:
        # Indexed but not yet named on disk (a store in progress), or the file was removed.
        log.warning("imaging: the file of %s in %s is missing", sop, row.id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the instance's file is not available")
    detail: dict[str, DetailValue] = {"sop": sop, "sha256": found.sha256}
    if action in _COALESCED:
        await svc.reads.read(action, principal, addr, row.id, sop, detail)
    else:
        await svc.record(action, principal, addr, consultation_id=row.id, detail=detail)
    return row, found, data


def _accepts(accept: str | None, part_type: str) -> bool:
    """True when ``Accept`` allows a multipart/related answer of ``part_type`` parts."""
    if not accept or not accept.strip():
        return True
    for item in accept.split(",")[:32]:
        try:
            media = parse_media_type(item.strip())
        except InvalidMultipart:  # an unparsable range allows nothing
            log.debug("imaging: an Accept range cannot be read: %r", item[:80])
            continue
        if media.type in ("*/*", "multipart/*", part_type):
            return True
        if media.type == "multipart/related" and media.params.get("type", part_type).lower() in (
            part_type,
            "*/*",
        ):
            return True
    return False


def _multipart(parts: list[tuple[list[tuple[str, str]], bytes]], part_type: str) -> Response:
    boundary = new_boundary()
    return Response(
        encode_related(parts, boundary),
        media_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
        headers=_NO_STORE,
    )


def _not_acceptable(what: str) -> HTTPException:
    return HTTPException(status.HTTP_406_NOT_ACCEPTABLE, f"this resource is served as {what}")


_WADO: dict[int | str, dict[str, Any]] = {403: {}, 404: {}, 406: {}}


@router.get(_INSTANCE, responses=_WADO, response_class=Response)
async def retrieve_instance(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """The instance as it was stored, in ``multipart/related; type="application/dicom"``."""
    if not _accepts(request.headers.get("accept"), DICOM):
        raise _not_acceptable(f'multipart/related; type="{DICOM}"')
    _, found, data = await _instance(
        request, svc, principal, consultation_id, "imaging.retrieve", study, series, sop
    )
    syntax = found.transfer_syntax_uid
    return _multipart([([("Content-Type", f"{DICOM}; transfer-syntax={syntax}")], data)], DICOM)


@router.get("/studies/{study}", responses=_WADO, response_class=Response)
async def retrieve_study(
    consultation_id: str,
    study: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """Every instance of the study, as stored, in one ``multipart/related`` answer."""
    return await _retrieve_many(request, svc, principal, consultation_id, study, None)


@router.get("/studies/{study}/series/{series}", responses=_WADO, response_class=Response)
async def retrieve_series(
    consultation_id: str,
    study: Uid,
    series: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """Every instance of the series, as stored, in one ``multipart/related`` answer."""
    return await _retrieve_many(request, svc, principal, consultation_id, study, series)


async def _retrieve_many(
    request: Request,
    svc: Services,
    principal: Principal,
    consultation_id: str,
    study: str,
    series: str | None,
) -> Response:
    """A study or series streamed a file at a time (a study may be larger than memory
    should hold); audited once, with the count. A file that went missing since the index
    was read (retention) is left out and logged: the answer has begun by then."""
    if not _accepts(request.headers.get("accept"), DICOM):
        raise _not_acceptable(f'multipart/related; type="{DICOM}"')
    addr = source_addr(request)
    row = await _reader(svc, principal, consultation_id, "imaging.retrieve", addr)
    rows = _seen(principal, row, await imaging.instances(svc.db, row.id, study, series))
    files = imaging_of(request).files
    if not rows or files is None:
        what = "study" if series is None else "series"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what} in this consultation")
    detail: dict[str, DetailValue] = {"study": study, "count": len(rows)}
    if series is not None:
        detail["series"] = series
    await svc.record("imaging.retrieve", principal, addr, consultation_id=row.id, detail=detail)
    boundary = new_boundary()
    consultation = row.id

    async def parts() -> AsyncIterator[bytes]:
        for found in rows:
            key = InstanceKey(
                consultation, study, found.series_instance_uid, found.sop_instance_uid
            )
            data = await asyncio.to_thread(files.read, key)
            if data is None:
                log.warning("imaging: the file of %s in %s is missing", key.sop, consultation)
                continue
            content = f"{DICOM}; transfer-syntax={found.transfer_syntax_uid}"
            yield related_part_head([("Content-Type", content)], boundary) + data + b"\r\n"
        yield related_end(boundary)

    return StreamingResponse(
        parts(),
        media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}',
        headers=_NO_STORE,
    )


@router.get(_INSTANCE + "/metadata", responses=_WADO, response_class=Response)
async def retrieve_metadata(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """The instance's attributes in DICOM JSON (bulk data as BulkDataURI)."""
    row, _, data = await _instance(
        request, svc, principal, consultation_id, "imaging.metadata", study, series, sop
    )
    url = instance_url(dicomweb_base(request, row.id), study, series, sop)
    document = await _metadata(data, url)
    return _dicom_json([document])


async def _metadata(data: bytes, url: str) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(dicom.metadata, data, lambda tag: f"{url}/bulkdata/{tag}")
    except InvalidInstance as exc:  # stored files were read once: a changed file, logged
        log.warning("imaging: a stored file cannot be read again: %s", exc)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get("/studies/{study}/series/{series}/metadata", responses=_WADO, response_class=Response)
async def retrieve_series_metadata(
    consultation_id: str,
    study: Uid,
    series: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """The attributes of every instance of a series, in DICOM JSON."""
    addr = source_addr(request)
    row = await _reader(svc, principal, consultation_id, "imaging.metadata", addr)
    rows = _seen(principal, row, await imaging.instances(svc.db, row.id, study, series))
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such series in this consultation")
    files = imaging_of(request).files
    base = dicomweb_base(request, row.id)
    documents = []
    for found in rows:
        key = InstanceKey(row.id, study, series, found.sop_instance_uid)
        data = await asyncio.to_thread(files.read, key) if files is not None else None
        if data is None:
            continue  # being stored: the next read has it
        documents.append(
            await _metadata(data, instance_url(base, study, series, found.sop_instance_uid))
        )
    await svc.record(
        "imaging.metadata",
        principal,
        addr,
        consultation_id=row.id,
        detail={"series": series, "count": len(documents)},
    )
    return _dicom_json(documents)


def _frame_numbers(text: str, frames: int) -> list[int]:
    parts = text.split(",")
    if len(parts) > MAX_FRAMES_ASKED or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"frames are 1-based numbers separated by commas (at most {MAX_FRAMES_ASKED})",
        )
    numbers = [int(p) for p in parts]
    for number in numbers:
        if not 1 <= number <= frames:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no frame {number}: the instance has {frames}"
            )
    return numbers


@router.get(_INSTANCE + "/frames/{frames}", responses=_WADO, response_class=Response)
async def retrieve_frames(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    frames: Annotated[str, Path(max_length=8000)],
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """Frames (1-based) as the file holds them: native ones each an
    ``application/octet-stream`` part; compressed ones each its compressed bytes, a part of
    the syntax's media type (``image/jpeg``, ``image/jls``, ``image/jp2``,
    ``image/dicom-rle``) with its ``transfer-syntax``, when ``Accept`` allows that type
    (there is no transcoding: anything else is 406 naming the type to ask for)."""
    accept = request.headers.get("accept")
    row, found = await _visible(
        request, svc, principal, consultation_id, "imaging.frames", study, series, sop
    )
    media_type = dicom.FRAME_MEDIA_TYPES.get(found.transfer_syntax_uid)
    if media_type is None and not _accepts(accept, OCTET_STREAM):
        raise _not_acceptable(f'multipart/related; type="{OCTET_STREAM}"')
    if media_type is not None and not _accepts(accept, media_type):
        raise _not_acceptable(
            f'multipart/related; type="{media_type}" (the frames are stored compressed, '
            f"{found.transfer_syntax_uid})"
        )
    _, found, data = await _read(request, svc, principal, "imaging.frames", row, found)
    numbers = _frame_numbers(frames, found.frames)
    try:
        if media_type is not None:
            held = await asyncio.to_thread(dicom.compressed_frames, data, numbers)
            content = f"{held.media_type}; transfer-syntax={held.transfer_syntax}"
            parts = [([("Content-Type", content)], f) for f in held.frames]
            return _multipart(parts, held.media_type)
        pixels = await asyncio.to_thread(dicom.native_frames, data, numbers)
    except InvalidInstance as exc:
        code = (
            status.HTTP_404_NOT_FOUND
            if exc.status == dicom.DOES_NOT_MATCH_SOP_CLASS
            else status.HTTP_406_NOT_ACCEPTABLE
        )
        raise HTTPException(code, exc.reason) from None
    except IndexError as exc:  # the file has fewer frames than its index said
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return _multipart([([("Content-Type", OCTET_STREAM)], p) for p in pixels], OCTET_STREAM)


@router.get(_INSTANCE + "/bulkdata/{tag}", responses=_WADO, response_class=Response)
async def retrieve_bulkdata(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    tag: Annotated[str, Path(pattern="^[0-9A-Fa-f]{8}$")],
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """The value of one binary attribute (a BulkDataURI of the metadata)."""
    if not _accepts(request.headers.get("accept"), OCTET_STREAM):
        raise _not_acceptable(f'multipart/related; type="{OCTET_STREAM}"')
    _, _, data = await _instance(
        request, svc, principal, consultation_id, "imaging.bulkdata", study, series, sop
    )
    try:
        value = await asyncio.to_thread(dicom.bulk_value, data, int(tag, 16))
    except InvalidInstance as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from None
    if value is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no binary attribute {tag} here")
    return _multipart([([("Content-Type", OCTET_STREAM)], value)], OCTET_STREAM)


# -- rendered --------------------------------------------------------------------------------


async def _rendered(
    request: Request,
    svc: Services,
    principal: Principal,
    consultation_id: str,
    study: str,
    series: str,
    sop: str,
    frame: int | None,
    *,
    thumbnail: bool = False,
) -> Response:
    try:
        asked = render_request(
            request.query_params.multi_items(), request.headers.get("accept"), thumbnail=thumbnail
        )
    except NotAcceptable as exc:
        raise HTTPException(status.HTTP_406_NOT_ACCEPTABLE, str(exc)) from None
    except InvalidRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    _, found, data = await _instance(
        request, svc, principal, consultation_id, "imaging.render", study, series, sop
    )
    state = imaging_of(request)
    renderer = state.renderer
    if renderer is None:  # told only to those who may see the image
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "this server renders no images (no renderer)"
        )
    number = 1 if frame is None else frame
    if not 1 <= number <= found.frames:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no frame {number}: the instance has {found.frames}"
        )
    async with state.render_slots:
        try:
            image = await asyncio.to_thread(
                renderer,
                data,
                frame=number - 1,
                window=asked.window,
                preset=asked.preset,
                media_type=asked.media_type,
                viewport=asked.viewport,
                quality=asked.quality,
            )
        except ValueError as exc:  # the renderer's RenderError: a reason for a person
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"cannot render this image: {exc}"
            ) from None
    return Response(image, media_type=asked.media_type, headers=_NO_STORE)


_RENDERED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the image"},
    400: {},
    403: {},
    404: {},
    406: {},
    422: {},
    503: {},
}


@router.get(_INSTANCE + "/rendered", responses=_RENDERED, response_class=Response)
async def retrieve_rendered(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """The instance's first frame as JPEG or PNG."""
    return await _rendered(request, svc, principal, consultation_id, study, series, sop, None)


@router.get(_INSTANCE + "/frames/{frame}/rendered", responses=_RENDERED, response_class=Response)
async def retrieve_frame_rendered(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    frame: Annotated[int, Path(ge=1, le=65535)],
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """Frame ``frame`` (1-based) as JPEG or PNG."""
    return await _rendered(request, svc, principal, consultation_id, study, series, sop, frame)


@router.get(_INSTANCE + "/thumbnail", responses=_RENDERED, response_class=Response)
async def retrieve_thumbnail(
    consultation_id: str,
    study: Uid,
    series: Uid,
    sop: Uid,
    principal: CurrentPrincipal,
    request: Request,
    svc: ServicesDep,
) -> Response:
    """A small image of the instance's first frame (128x128 unless ``viewport`` says)."""
    return await _rendered(
        request, svc, principal, consultation_id, study, series, sop, None, thumbnail=True
    )
