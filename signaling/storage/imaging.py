"""The consultation's images in the database: the index of its stored DICOM instances, and
the patient's consent to identified images crossing the border."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from signaling.auth import Principal
from signaling.consultation_fsm import FINAL_STATES
from signaling.errors import ConsultationNotFound, NotActive, NotPermitted
from signaling.schema import ConsultationState, PrincipalKind
from signaling.storage.consultations import may_view
from signaling.storage.database import Database
from signaling.storage.models import ConsultationRow, ImagingInstanceRow

#: The most instances one listing reads (a consultation holds a few studies: a CT series
#: is a few hundred slices).
MAX_LISTED = 20_000


def may_set_consent(principal: Principal, row: ConsultationRow) -> bool:
    """Consent is the patient's, recorded at their bedside: by a doctor or technician of the
    requesting site (not a gateway, not an administrator)."""
    return (
        principal.kind is PrincipalKind.USER
        and principal.is_clinician
        and principal.site == row.requesting_site
    )


def may_upload(principal: Principal, row: ConsultationRow) -> bool:
    """Instances come from a gateway of the requesting (bedside) site, or a clinician of
    either site."""
    if principal.kind is PrincipalKind.GATEWAY:
        return principal.site == row.requesting_site
    return principal.is_clinician and principal.site in (row.requesting_site, row.consulting_site)


def may_read(principal: Principal, row: ConsultationRow) -> bool:
    """Images are read by the consultation's members: the clinicians of its two sites and
    the gateways of its requesting site (an administrator sees the consultation, not them)."""
    return may_upload(principal, row)


def may_see_instance(
    principal: Principal, row: ConsultationRow, instance: ImagingInstanceRow
) -> bool:
    """An identified instance (stored under the patient's consent) stays at the requesting
    site once the consent is withdrawn, as the patient's identifying fields do
    (:mod:`signaling.patient`); a de-identified one is every reader's."""
    return instance.deidentified or row.imaging_consent or principal.site == row.requesting_site


async def set_consent(
    db: Database, principal: Principal, consultation_id: str, consent: bool
) -> tuple[ConsultationRow, bool]:
    """Record (or withdraw) the patient's consent; returns the consultation and the value it
    had before. Raises :class:`ConsultationNotFound`, :class:`NotPermitted`,
    :class:`NotActive` (it has ended)."""
    async with db.session() as session:
        row = await session.get(ConsultationRow, consultation_id, with_for_update=True)
        if row is None or not may_view(principal, row):
            raise ConsultationNotFound("no such consultation")
        if not may_set_consent(principal, row):
            raise NotPermitted("only a doctor or technician of the requesting site records consent")
        if ConsultationState(row.state) in FINAL_STATES:
            raise NotActive(f"the consultation is {row.state}")
        before = row.imaging_consent
        row.imaging_consent = consent
    return row, before


async def find(db: Database, consultation_id: str, sop: str) -> ImagingInstanceRow | None:
    async with db.session() as session:
        return await session.scalar(
            select(ImagingInstanceRow).where(
                ImagingInstanceRow.consultation_id == consultation_id,
                ImagingInstanceRow.sop_instance_uid == sop,
            )
        )


async def add(db: Database, row: ImagingInstanceRow) -> bool:
    """Index an instance; False (nothing changed) when the consultation has one with its SOP
    Instance UID already."""
    try:
        async with db.session() as session:
            session.add(row)
    except IntegrityError:
        return False
    return True


async def remove(db: Database, row_id: int) -> None:
    """Forget an index row whose file could not be written."""
    async with db.session() as session:
        found = await session.get(ImagingInstanceRow, row_id)
        if found is not None:
            await session.delete(found)


async def stored_before(db: Database, cutoff: datetime, limit: int) -> list[ImagingInstanceRow]:
    """Retention: up to ``limit`` instances stored before ``cutoff``, oldest first."""
    query = (
        select(ImagingInstanceRow)
        .where(ImagingInstanceRow.stored_at < cutoff)
        .order_by(ImagingInstanceRow.stored_at, ImagingInstanceRow.id)
        .limit(limit)
    )
    async with db.session() as session:
        return list(await session.scalars(query))


async def forget(db: Database, row_ids: list[int]) -> int:
    """Retention: delete these index rows (their files already gone); how many went."""
    if not row_ids:
        return 0
    async with db.session() as session:
        result = await session.execute(
            delete(ImagingInstanceRow)
            .where(ImagingInstanceRow.id.in_(row_ids))
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def instances(
    db: Database,
    consultation_id: str,
    study: str | None = None,
    series: str | None = None,
) -> list[ImagingInstanceRow]:
    """The consultation's instances (of one study, or series), in the order they came."""
    query = select(ImagingInstanceRow).where(ImagingInstanceRow.consultation_id == consultation_id)
    if study is not None:
        query = query.where(ImagingInstanceRow.study_instance_uid == study)
    if series is not None:
        query = query.where(ImagingInstanceRow.series_instance_uid == series)
    async with db.session() as session:
        return list(await session.scalars(query.order_by(ImagingInstanceRow.id).limit(MAX_LISTED)))
