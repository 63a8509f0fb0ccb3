"""Consultations and their members, and the access rules that go with them."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from signaling.auth import Principal
from signaling.consultation_fsm import TRANSITIONS, ConsultationEvent, next_state
from signaling.errors import ConsultationNotFound, InvalidRequest, NotPermitted
from signaling.patient import view_for
from signaling.schema import (
    ConsultationAction,
    ConsultationInfo,
    ConsultationState,
    ConsultationSummary,
    Member,
    PrincipalKind,
    Role,
)
from signaling.storage.database import Database
from signaling.storage.models import (
    ConsultationRow,
    GatewayRow,
    MemberRow,
    PatientRow,
    SiteRow,
    UserRow,
    utcnow,
)

if TYPE_CHECKING:
    from signaling.api_models import PatientIn


def info(row: ConsultationRow) -> ConsultationInfo:
    return ConsultationInfo(
        id=row.id,
        requesting_site=row.requesting_site,
        consulting_site=row.consulting_site,
        state=ConsultationState(row.state),
        consent_cross_border=row.consent_cross_border,
        imaging_consent=row.imaging_consent,
    )


def describe(principal: Principal, row: ConsultationRow) -> ConsultationSummary:
    """The consultation as ``principal`` sees it (over HTTP and in ``consultation`` messages)."""
    return ConsultationSummary(
        **info(row).model_dump(),
        reason=row.reason,
        created_at=row.created_at.isoformat(),
        accepted_at=row.accepted_at.isoformat() if row.accepted_at else None,
        ended_at=row.ended_at.isoformat() if row.ended_at else None,
        allowed_actions=allowed_actions(principal, row),
        patient=view_for(principal, row),
    )


def involves(principal: Principal, row: ConsultationRow) -> bool:
    return principal.site in (row.requesting_site, row.consulting_site)


def may_view(principal: Principal, row: ConsultationRow) -> bool:
    """Admins see every consultation; clinicians and gateways those of their own site."""
    if principal.role is Role.ADMIN:
        return True
    return involves(principal, row) and principal.role is not Role.ENGINEER


def may_join(principal: Principal, row: ConsultationRow) -> bool:
    """Members are the two sites' doctors, technicians and gateways."""
    allowed = principal.kind is PrincipalKind.GATEWAY or principal.is_clinician
    return allowed and involves(principal, row)


def may_take_snapshot(principal: Principal, row: ConsultationRow) -> bool:
    """Snapshots are taken by the clinicians of the two sites (not gateways, not admins)."""
    return (
        principal.kind is PrincipalKind.USER and principal.is_clinician and involves(principal, row)
    )


async def create(
    db: Database,
    principal: Principal,
    consulting_site: str,
    consent_cross_border: bool,
    reason: str,
    patient: PatientIn | None = None,
) -> ConsultationRow:
    """A doctor or technician at the requesting (patient's) site asks another site, about
    ``patient`` when given.

    Raises :class:`NotPermitted` or :class:`InvalidRequest`."""
    if principal.kind is not PrincipalKind.USER or not principal.is_clinician:
        raise NotPermitted("only doctors and technicians request consultations")
    if consulting_site == principal.site:
        raise InvalidRequest("the consulting site must be another site")
    now = utcnow()
    if patient is not None and patient.birth_year is not None and patient.birth_year > now.year:
        raise InvalidRequest(f"year of birth {patient.birth_year} is in the future")
    async with db.session() as session:
        if await session.get(SiteRow, consulting_site) is None:
            raise InvalidRequest(f"unknown site {consulting_site!r}")
        cid = f"c-{secrets.token_hex(8)}"
        row = ConsultationRow(
            id=cid,
            requesting_site=principal.site,
            consulting_site=consulting_site,
            state=str(ConsultationState.REQUESTED),
            consent_cross_border=consent_cross_border,
            imaging_consent=False,
            reason=reason,
            created_by=principal.id,
            created_at=now,
            patient=_patient_row(cid, patient) if patient is not None else None,
        )
        session.add(row)
    return row


def _patient_row(consultation_id: str, patient: PatientIn) -> PatientRow:
    return PatientRow(
        consultation_id=consultation_id,
        pseudonym=patient.pseudonym,
        birth_year=patient.birth_year,
        age=patient.age,
        sex=str(patient.sex),
        ward=patient.ward,
        bed=patient.bed,
        reason=patient.reason,
        allergies=json.dumps(patient.allergies, ensure_ascii=False),
        name=patient.name,
        name_romanised=patient.name_romanised,
    )


async def get(db: Database, consultation_id: str) -> ConsultationRow | None:
    async with db.session() as session:
        return await session.get(ConsultationRow, consultation_id)


async def list_visible(
    db: Database, principal: Principal, state: ConsultationState | None = None
) -> list[ConsultationRow]:
    query = select(ConsultationRow).order_by(ConsultationRow.created_at.desc())
    if principal.role is Role.ENGINEER:
        return []
    if principal.role is not Role.ADMIN:
        query = query.where(
            or_(
                ConsultationRow.requesting_site == principal.site,
                ConsultationRow.consulting_site == principal.site,
            )
        )
    if state is not None:
        query = query.where(ConsultationRow.state == str(state))
    async with db.session() as session:
        return list(await session.scalars(query.limit(500)))


def _refusal(principal: Principal, row: ConsultationRow, event: ConsultationEvent) -> str | None:
    """Why ``principal`` may not apply ``event`` to ``row`` whatever its state (None: may)."""
    if principal.kind is not PrincipalKind.USER:
        return "gateways cannot change a consultation"
    if event is ConsultationEvent.ACCEPT:
        if principal.role is not Role.DOCTOR or principal.site != row.consulting_site:
            return "only a doctor of the consulting site may accept"
    elif event is ConsultationEvent.CANCEL:
        if not principal.is_clinician or principal.site != row.requesting_site:
            return "only the requesting site may cancel"
    elif principal.role is not Role.DOCTOR or not involves(principal, row):
        return "only a doctor of either site may close"
    return None


def allowed_actions(principal: Principal, row: ConsultationRow) -> list[ConsultationAction]:
    """What ``principal`` may do with the consultation now, by its state and their role and
    site: the one place these rules live (clients are told, never re-derive them)."""
    state = ConsultationState(row.state)
    actions = [
        ConsultationAction(str(event))
        for event in ConsultationEvent
        if (state, event) in TRANSITIONS and _refusal(principal, row, event) is None
    ]
    if state is ConsultationState.ACTIVE and may_join(principal, row):
        actions.append(ConsultationAction.JOIN)
    return actions


async def transition(
    db: Database, principal: Principal, consultation_id: str, event: ConsultationEvent
) -> ConsultationRow:
    """Apply ``event``; raises :class:`ConsultationNotFound`, :class:`NotPermitted` or
    :class:`~signaling.errors.IllegalTransition`."""
    async with db.session() as session:
        row = await session.get(ConsultationRow, consultation_id, with_for_update=True)
        if row is None or not may_view(principal, row):
            raise ConsultationNotFound("no such consultation")
        refusal = _refusal(principal, row, event)
        if refusal is not None:
            raise NotPermitted(refusal)
        new = next_state(ConsultationState(row.state), event)
        row.state = str(new)
        if new is ConsultationState.ACTIVE:
            row.accepted_at = utcnow()
        else:
            row.ended_at = utcnow()
    return row


async def record_member(db: Database, consultation_id: str, principal: Principal) -> None:
    """Note that ``principal`` joined (now). One statement (an upsert), so the same person
    joining from two tabs at once is one member, not a unique-key violation."""
    now = utcnow()
    insert = postgresql_insert if db.dialect == "postgresql" else sqlite_insert
    statement = insert(MemberRow).values(
        consultation_id=consultation_id,
        principal_kind=str(principal.kind),
        principal_id=principal.id,
        first_joined_at=now,
        last_joined_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[
            MemberRow.consultation_id,
            MemberRow.principal_kind,
            MemberRow.principal_id,
        ],
        set_={"last_joined_at": statement.excluded.last_joined_at},
    )
    async with db.session() as session:
        await session.execute(statement)


async def members(
    db: Database, consultation_id: str, online: set[tuple[PrincipalKind, int]]
) -> list[Member]:
    """Everyone who has ever joined (clinicians, then gateways, each in the order they first
    joined), with ``online`` set from the live room."""
    async with db.session() as session:
        users = await session.execute(
            select(UserRow.id, UserRow.display_name, UserRow.role, UserRow.site_code)
            .join(MemberRow, MemberRow.principal_id == UserRow.id)
            .where(
                MemberRow.consultation_id == consultation_id,
                MemberRow.principal_kind == str(PrincipalKind.USER),
            )
            .order_by(MemberRow.first_joined_at)
        )
        gateways = await session.execute(
            select(GatewayRow.id, GatewayRow.name, GatewayRow.site_code)
            .join(MemberRow, MemberRow.principal_id == GatewayRow.id)
            .where(
                MemberRow.consultation_id == consultation_id,
                MemberRow.principal_kind == str(PrincipalKind.GATEWAY),
            )
            .order_by(MemberRow.first_joined_at)
        )
        result = [
            Member(
                kind=PrincipalKind.USER,
                principal_id=uid,
                name=name,
                role=Role(role),
                site=site,
                online=(PrincipalKind.USER, uid) in online,
            )
            for uid, name, role, site in users
        ]
        result += [
            Member(
                kind=PrincipalKind.GATEWAY,
                principal_id=gid,
                name=name,
                role=Role.GATEWAY,
                site=site,
                online=(PrincipalKind.GATEWAY, gid) in online,
            )
            for gid, name, site in gateways
        ]
    return result
