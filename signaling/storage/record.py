"""What a consultation keeps besides its state: the chat and the bedside snapshots.

Both are added only while the consultation is active. The check and the insert are one
statement (``INSERT ... SELECT ... WHERE state = 'active'``), so a message or an image racing
with the close is either stored before it or refused with :class:`NotActive`, on SQLite and
PostgreSQL alike, without a lock held across statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, select
from sqlalchemy.orm import undefer

from signaling.auth import Principal
from signaling.errors import ConsultationNotFound, NotActive
from signaling.schema import CHAT_REPLAY_MAX, Chat, ConsultationState, encode
from signaling.storage.database import Database
from signaling.storage.models import ChatMessageRow, ConsultationRow, SnapshotRow

#: Replayed chat in ``joined`` stays under this many bytes of JSON (the newest messages
#: first), so that a long consultation's replay fits the clients' message limits (the
#: Python client's is 1 MiB); the whole record is over HTTP.
CHAT_REPLAY_BYTES = 256 * 1024


def not_active_reason(state: ConsultationState) -> str:
    """Why nothing can be added to a consultation in ``state``, said for a person."""
    if state is ConsultationState.REQUESTED:
        return "the consultation has not been accepted yet"
    return "the consultation has ended"


async def _insert_if_active(
    db: Database, consultation_id: str, table: Any, values: dict[str, Any]
) -> int:
    """Insert one row of ``table`` built from ``values`` if the consultation is active, in one
    statement; its id. Raises :class:`ConsultationNotFound` or :class:`NotActive`."""
    columns = list(values)
    source = select(
        *(literal(v, table.__table__.c[k].type).label(k) for k, v in values.items())
    ).where(
        ConsultationRow.id == consultation_id,
        ConsultationRow.state == str(ConsultationState.ACTIVE),
    )
    statement = insert(table).from_select(columns, source).returning(table.id)
    async with db.session() as session:
        new_id = await session.scalar(statement)
        if new_id is not None:
            return int(new_id)
        state = await session.scalar(
            select(ConsultationRow.state).where(ConsultationRow.id == consultation_id)
        )
    if state is None:
        raise ConsultationNotFound("no such consultation")
    raise NotActive(not_active_reason(ConsultationState(state)))


# -- chat ------------------------------------------------------------------------------------


def _chat_of(row: ChatMessageRow) -> Chat:
    return Chat.model_validate(
        {
            "text": row.text,
            "id": row.id,
            "from": row.sender_peer,
            "sender_name": row.sender_name,
            "sender_site": row.sender_site,
            "at": row.at,
        }
    )


async def add_chat(
    db: Database, consultation_id: str, sender: Principal, peer_id: str, text: str, at: datetime
) -> Chat:
    """Store a chat message of an active consultation; the message as relayed (with its
    ``id``). Raises :class:`NotActive` (ended, or not accepted yet) or
    :class:`ConsultationNotFound`."""
    values = {
        "consultation_id": consultation_id,
        "sender_kind": str(sender.kind),
        "sender_id": sender.id,
        "sender_name": sender.name,
        "sender_site": sender.site,
        "sender_peer": peer_id,
        "text": text,
        "at": at,
    }
    new_id = await _insert_if_active(db, consultation_id, ChatMessageRow, values)
    return Chat.model_validate(
        {
            "text": text,
            "id": new_id,
            "from": peer_id,
            "sender_name": sender.name,
            "sender_site": sender.site,
            "at": at,
        }
    )


async def chat_history(db: Database, consultation_id: str) -> list[Chat]:
    """Every stored message of the consultation, oldest first."""
    query = (
        select(ChatMessageRow)
        .where(ChatMessageRow.consultation_id == consultation_id)
        .order_by(ChatMessageRow.id)
    )
    async with db.session() as session:
        return [_chat_of(row) for row in await session.scalars(query)]


async def chat_replay(
    db: Database,
    consultation_id: str,
    limit: int = CHAT_REPLAY_MAX,
    max_bytes: int = CHAT_REPLAY_BYTES,
) -> list[Chat]:
    """The newest stored messages, oldest first, for ``joined``: at most ``limit`` of them
    and at most ``max_bytes`` of encoded JSON (older ones are left to the HTTP record)."""
    query = (
        select(ChatMessageRow)
        .where(ChatMessageRow.consultation_id == consultation_id)
        .order_by(ChatMessageRow.id.desc())
        .limit(limit)
    )
    newest_first: list[Chat] = []
    budget = max_bytes
    async with db.session() as session:
        for row in await session.scalars(query):
            chat = _chat_of(row)
            budget -= len(encode(chat).encode()) + 1  # the comma between them
            if budget < 0:
                break
            newest_first.append(chat)
    return newest_first[::-1]


async def chat_count(db: Database, consultation_id: str) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ChatMessageRow)
            .where(ChatMessageRow.consultation_id == consultation_id)
        )
    return int(count or 0)


# -- snapshots -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A stored snapshot's description (its bytes are read apart: :func:`snapshot_data`)."""

    id: int
    consultation_id: str
    taken_at: datetime
    taken_by: str
    content_type: str
    size: int
    sha256: str


def _snapshot_of(row: SnapshotRow) -> Snapshot:
    return Snapshot(
        id=row.id,
        consultation_id=row.consultation_id,
        taken_at=row.taken_at,
        taken_by=row.taken_by_name,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
    )


async def add_snapshot(
    db: Database,
    consultation_id: str,
    taker: Principal,
    content_type: str,
    data: bytes,
    sha256: str,
    at: datetime,
) -> Snapshot:
    """Store an image (already checked) with an active consultation. Raises
    :class:`NotActive` or :class:`ConsultationNotFound`."""
    values = {
        "consultation_id": consultation_id,
        "taken_at": at,
        "taken_by_kind": str(taker.kind),
        "taken_by_id": taker.id,
        "taken_by_name": taker.name,
        "content_type": content_type,
        "size": len(data),
        "sha256": sha256,
        "data": data,
    }
    new_id = await _insert_if_active(db, consultation_id, SnapshotRow, values)
    return Snapshot(new_id, consultation_id, at, taker.name, content_type, len(data), sha256)


async def snapshots(db: Database, consultation_id: str) -> list[Snapshot]:
    """The consultation's snapshots, oldest first (descriptions only, no image bytes)."""
    query = (
        select(SnapshotRow)
        .where(SnapshotRow.consultation_id == consultation_id)
        .order_by(SnapshotRow.id)
    )
    async with db.session() as session:
        return [_snapshot_of(row) for row in await session.scalars(query)]


async def snapshot_data(
    db: Database, consultation_id: str, snapshot_id: int
) -> tuple[Snapshot, bytes] | None:
    """One snapshot of this consultation with its bytes; None if there is no such one."""
    async with db.session() as session:
        row = await session.get(SnapshotRow, snapshot_id, options=[undefer(SnapshotRow.data)])
        if row is None or row.consultation_id != consultation_id:
            return None
        return _snapshot_of(row), row.data


async def snapshot_count(db: Database, consultation_id: str) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(SnapshotRow)
            .where(SnapshotRow.consultation_id == consultation_id)
        )
    return int(count or 0)
