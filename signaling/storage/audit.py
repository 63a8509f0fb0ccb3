"""The tamper-evident audit log: an append-only hash chain, anchored outside the database.

Row ``n`` stores ``hash_n = SHA-256(hash_{n-1} || canonical(row_n))`` with ``hash_0`` all zeros,
and the ``audit_head`` row stores the tip. Editing, deleting, inserting or reordering rows, or
cutting off the tail, breaks the chain where it happened; :meth:`AuditLog.verify` finds it.

What the chain alone cannot show: someone who can write the database cuts off the tail *and*
rewinds ``audit_head`` to the new last row (or rewrites the whole chain). Anchors close that
gap: ``telemed audit anchor`` prints the head (sequence number, hash, time) and appends it
to an anchor file outside the database, and ``telemed audit verify --anchor FILE`` checks
that every anchored (sequence, hash) is still in the chain. A row cut or rewritten after it
was anchored is then found. Run ``telemed audit anchor`` periodically, e.g. every 15
minutes from cron (``*/15 * * * * telemed audit anchor --file /mnt/anchors/audit.txt``) or
a systemd timer (``OnCalendar=*:0/15`` on a oneshot service running the command), with the
file on storage the database's host cannot rewrite: another machine's mount, an append-only
file (``chattr +a``), or the printed line mailed or logged elsewhere. What happened since
the last anchor is covered by the chain alone.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from signaling.storage.database import Database
from signaling.storage.models import AuditEventRow, AuditHeadRow, utcnow

log = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
DetailValue = str | int | float | bool | None


@dataclass(frozen=True)
class AuditEvent:
    """What happened, by whom, from where. ``outcome`` is ``ok``, ``denied`` or ``failed``."""

    action: str
    actor_kind: str
    actor_id: int | None
    actor_name: str
    role: str
    site: str
    source_addr: str
    consultation_id: str | None = None
    outcome: str = "ok"
    detail: Mapping[str, DetailValue] = field(default_factory=dict)


def _canonical(seq: int, at: datetime, event: AuditEvent, detail_json: str) -> bytes:
    record = [
        seq,
        at.isoformat(timespec="microseconds"),
        event.actor_kind,
        event.actor_id,
        event.actor_name,
        event.role,
        event.site,
        event.action,
        event.consultation_id,
        event.source_addr,
        event.outcome,
        detail_json,
    ]
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def chain_hash(prev_hash: str, seq: int, at: datetime, event: AuditEvent, detail_json: str) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(seq, at, event, detail_json)).hexdigest()


def _event_of(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        action=row.action,
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        role=row.role,
        site=row.site,
        source_addr=row.source_addr,
        consultation_id=row.consultation_id,
        outcome=row.outcome,
    )


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    tip: str
    #: The first sequence number at which the chain is broken, if any.
    bad_seq: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Anchor:
    """The chain's head at a moment: event ``seq`` had hash ``hash`` at ``at``."""

    seq: int
    hash: str
    at: datetime

    def line(self) -> str:
        """One line of an anchor file: ``seq hash time``."""
        return f"{self.seq} {self.hash} {self.at.isoformat(timespec='seconds')}"

    @classmethod
    def parse(cls, line: str) -> Anchor:
        """The anchor of a line written by :meth:`line`; ValueError for anything else."""
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"an anchor line is 'seq hash time', not {line!r}")
        seq, digest, at = int(parts[0]), parts[1], datetime.fromisoformat(parts[2])
        if seq < 0 or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError(f"not an anchor: {line!r}")
        return cls(seq, digest, at)


def read_anchors(lines: Iterable[str]) -> list[Anchor]:
    """The anchors of an anchor file's lines (blank lines and ``#`` comments skipped)."""
    return [
        Anchor.parse(line) for line in lines if line.strip() and not line.lstrip().startswith("#")
    ]


_Entry = tuple[AuditEvent, str, "asyncio.Future[int]"]


class AuditLog:
    """Appends events and verifies the chain. One instance per process."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Serialises writes within this process; the row lock on audit_head does the same
        # across processes on PostgreSQL, BEGIN IMMEDIATE on SQLite.
        self._lock = asyncio.Lock()
        #: Events waiting for the next write, each with the future of its sequence number.
        self._pending: list[_Entry] = []
        #: The write in progress (awaited by the lock's holder, or by the next one).
        self._writing: asyncio.Task[list[int]] | None = None

    async def append(self, event: AuditEvent) -> int:
        """Append ``event``; returns its sequence number once it is committed.

        Group commit: the events appended while a write is in progress are written
        together, in order, in the next transaction, by whichever append takes the lock
        first. Each is committed before its ``append`` returns, but 500 sockets connecting
        at once wait for a few commits instead of 500 one after another (a commit is a disk
        flush on PostgreSQL). On an SQLite file the transaction runs in one go in the
        database's write thread (:meth:`Database.write`): the write lock is never held
        across the event loop's turns, and another process holding it past the busy timeout
        is waited for with backoff.

        Cancelled, the event is still written (by the next append, or :meth:`flush`): an
        audit row is not lost because its caller went away. A write that fails is logged
        (how many events, their actions) and raised to every append in its batch."""
        detail_json = json.dumps(dict(event.detail), ensure_ascii=False, sort_keys=True)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((event, detail_json, future))
        try:
            async with self._lock:
                if not future.done():
                    await self._write_pending()
            return await future
        except asyncio.CancelledError:
            # Pending, being written or written: either way nobody waits for it now.
            if future.done() and not future.cancelled():
                future.exception()  # (retrieved: a failure was logged by _settle)
            future.cancel()
            raise

    async def flush(self) -> None:
        """Write what is pending (events whose appends were cancelled) and wait for a write
        in progress. Call before the database is closed. A failure is logged, not raised."""
        async with self._lock:
            await self._write_pending()

    async def _write_pending(self) -> None:
        """Write every pending event in one transaction; call with the lock held. The
        write is a task of its own that settles the events' futures when it ends: cancelled
        meanwhile, the caller leaves it running (a write in a thread cannot be stopped, and
        a batch half known would be written twice or lost), and the next caller waits for
        it before writing, so the chain keeps the order of the appends."""
        if self._writing is not None:
            await asyncio.wait([self._writing])
            self._writing = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        write = self._writing = asyncio.create_task(self._write(batch), name="audit-write")
        write.add_done_callback(functools.partial(self._settle, batch))
        await asyncio.wait([write])
        self._writing = None

    @staticmethod
    def _settle(batch: list[_Entry], write: asyncio.Task[list[int]]) -> None:
        error: BaseException | None = (
            asyncio.CancelledError() if write.cancelled() else write.exception()
        )
        if error is not None:
            actions = ",".join(sorted({event.action for event, _, _ in batch}))
            log.error("audit: %d events NOT written (%s): %r", len(batch), actions, error)
        for i, (_, _, future) in enumerate(batch):
            if future.done():
                continue  # its append was cancelled: nobody waits for it
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(write.result()[i])

    async def _write(self, batch: list[_Entry]) -> list[int]:
        items = [(event, detail_json) for event, detail_json, _ in batch]
        if self._db.writes_in_thread:
            return await self._db.write(functools.partial(_write_sqlite, items))
        async with self._db.session() as session:
            if self._db.dialect == "sqlite":
                # (An SQLite database without a file of its own.) A write first takes the
                # write lock, so the head read next is the latest.
                await session.execute(
                    update(AuditHeadRow)
                    .where(AuditHeadRow.id == 1)
                    .values(last_seq=AuditHeadRow.last_seq)
                )
            head = await session.scalar(
                select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
            )
            if head is None:
                head = AuditHeadRow(id=1, last_seq=0, last_hash=GENESIS_HASH)
                session.add(head)
            rows = _chained(head.last_seq, head.last_hash, items)
            session.add_all(AuditEventRow(**row) for row in rows)
            if rows:
                head.last_seq = rows[-1]["seq"]
                head.last_hash = rows[-1]["hash"]
        return [row["seq"] for row in rows]

    async def head(self) -> Anchor:
        """The chain's head now, to be kept outside the database."""
        async with self._db.session() as session:
            head = await session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1))
        seq, digest = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
        return Anchor(seq, digest, utcnow())

    async def check_anchors(self, anchors: Iterable[Anchor]) -> VerifyReport:
        """Verify the chain, then that every anchored (seq, hash) is still in it: a tail
        cut (and the head rewound) or rewritten since an anchor is found."""
        report = await self.verify()
        if not report.ok:
            return report
        wanted = {a.seq: a for a in anchors}
        found: dict[int, str] = {0: GENESIS_HASH}
        async with self._db.session() as session:
            for chunk in _chunks(sorted(s for s in wanted if s > 0), 500):
                rows = await session.execute(
                    select(AuditEventRow.seq, AuditEventRow.hash).where(
                        AuditEventRow.seq.in_(chunk)
                    )
                )
                found.update((seq, digest) for seq, digest in rows)
        for seq in sorted(wanted):
            anchor = wanted[seq]
            if seq not in found:
                return VerifyReport(
                    False,
                    report.rows,
                    report.tip,
                    seq,
                    f"anchored event {seq} (anchored at {anchor.at.isoformat()}) is missing: "
                    "the chain was cut after it was anchored",
                )
            if found[seq] != anchor.hash:
                return VerifyReport(
                    False,
                    report.rows,
                    report.tip,
                    seq,
                    f"anchored event {seq} (anchored at {anchor.at.isoformat()}) has another "
                    "hash: the chain was rewritten after it was anchored",
                )
        return report

    async def verify(self) -> VerifyReport:
        """Walk the chain up to its head; report the first row that does not match.

        Appends may go on meanwhile: each commits its row with the head, so the head is read
        first and the walk stops at its row; rows appended after it are the next verify's.
        A walk that ends short of the head (rows removed at the end, the head left) or at
        another hash than the head's fails."""
        async with self._db.session() as session:
            head = await session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1))
        head_seq, head_hash = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
        expected_seq, prev = 1, GENESIS_HASH
        async with self._db.session() as session:
            result = await session.stream_scalars(
                select(AuditEventRow)
                .where(AuditEventRow.seq <= head_seq)
                .order_by(AuditEventRow.seq)
                .execution_options(yield_per=500)
            )
            async for row in result:
                broken = _check_row(row, expected_seq, prev)
                if broken is not None:
                    return broken
                prev, expected_seq = row.hash, row.seq + 1
        rows = expected_seq - 1
        if (rows, prev) != (head_seq, head_hash):
            return VerifyReport(
                False, rows, prev, rows + 1, "chain tip does not match (rows removed at the end)"
            )
        return VerifyReport(True, rows, prev)


def _check_row(row: AuditEventRow, expected_seq: int, prev: str) -> VerifyReport | None:
    """The report of a chain broken at ``row``, or None when ``row`` follows ``prev``."""
    if row.seq != expected_seq:
        return VerifyReport(False, expected_seq - 1, prev, expected_seq, "row missing (gap in seq)")
    if row.prev_hash != prev:
        return VerifyReport(False, row.seq - 1, prev, row.seq, "prev_hash does not match the chain")
    digest = chain_hash(prev, row.seq, row.at, _event_of(row), row.detail)
    if digest != row.hash:
        return VerifyReport(False, row.seq - 1, prev, row.seq, "row contents do not match its hash")
    return None


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _chained(seq: int, prev: str, items: list[tuple[AuditEvent, str]]) -> list[dict[str, Any]]:
    """The rows of ``items`` following event ``seq`` whose hash is ``prev``, in order."""
    rows: list[dict[str, Any]] = []
    for event, detail_json in items:
        seq += 1
        at = utcnow()
        digest = chain_hash(prev, seq, at, event, detail_json)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor_kind": event.actor_kind,
                "actor_id": event.actor_id,
                "actor_name": event.actor_name,
                "role": event.role,
                "site": event.site,
                "action": event.action,
                "consultation_id": event.consultation_id,
                "source_addr": event.source_addr,
                "outcome": event.outcome,
                "detail": detail_json,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return rows


def _write_sqlite(items: list[tuple[AuditEvent, str]], connection: Connection) -> list[int]:
    """Append ``items`` in ``connection``'s transaction (its BEGIN IMMEDIATE holds SQLite's
    write lock, so the head read is the latest of every process). Runs in a worker thread:
    the hashing too."""
    head = connection.execute(
        select(AuditHeadRow.last_seq, AuditHeadRow.last_hash).where(AuditHeadRow.id == 1)
    ).first()
    seq, prev = (head[0], head[1]) if head is not None else (0, GENESIS_HASH)
    rows = _chained(seq, prev, items)
    if not rows:
        return []
    connection.execute(insert(AuditEventRow), rows)
    last_seq, last_hash = rows[-1]["seq"], rows[-1]["hash"]
    if head is None:
        connection.execute(
            insert(AuditHeadRow).values(id=1, last_seq=last_seq, last_hash=last_hash)
        )
    else:
        connection.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == 1)
            .values(last_seq=last_seq, last_hash=last_hash)
        )
    return [int(row["seq"]) for row in rows]
