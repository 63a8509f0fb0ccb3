"""The gateway's store-and-forward journal: what the bedside measured, kept until the server
has it.

Every numeric the gateway measures (device values and derived ones, at most one per
parameter, device and second: the latest) and every change of an alarm or of the alarm
limits is appended here, tagged with the consultation the gateway is in at that moment
(nothing is kept while it is in none: there is no record to keep it with). An uploader
(:mod:`signaling.uploader`) sends what is pending to ``POST /api/consultations/{id}/record``
in batches, oldest first, and forgets what the server took; while the server or the link
is down, entries wait here and are backfilled when it returns. The journal feeds the
server's record only: the live tiles never see it.

The API (all three are cheap, synchronous, for the event loop; each raises ``ValueError``
with the reason for an entry the server would refuse)::

    journal = Journal(JournalStore.open(data_dir / "journal.sqlite3"), consultation=lambda: cid)
    journal.add_numeric(numeric)  # media.rtc.events.Numeric, or its fields as a mapping
    journal.add_alarm(alarm)      # media.rtc.events.Alarm: its start and every change
    journal.add_limits(limits)    # media.rtc.events.AlarmLimits: whenever they change

An append goes to a small bounded buffer in memory (:data:`BUFFER_MAX` entries; the
oldest dropped and counted past it); :meth:`Journal.flush` moves the buffer to the store
in a worker thread, which the uploader does before each batch (every couple of seconds).
A crash loses at most what the buffer held.

The store (:class:`JournalStore`) is one SQLite file (WAL; every write one transaction, so
a process killed mid-write leaves a readable journal; a file that is not a readable
database is set aside and a new one started). It is bounded by age and count
(:class:`JournalLimits`; by default 24 hours, and 1.5 million entries: a day of a dozen
parameters at 1 Hz): the oldest entries are dropped first, counted in
:attr:`JournalStore.dropped`, with a warning in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from signaling.api_models import AlarmIn, LimitsIn, NumericIn

log = logging.getLogger(__name__)

Kind = Literal["numeric", "alarm", "limits"]
#: The ``record`` body's list each kind of entry travels in.
BODY_KEYS: dict[str, str] = {"numeric": "numerics", "alarm": "alarms", "limits": "limits"}
#: Entries waiting in memory for the next flush at most.
BUFFER_MAX = 20_000


@dataclass(frozen=True)
class JournalLimits:
    """How much the journal keeps while the server cannot take it."""

    #: Entries older than this (by the time they were measured) are dropped.
    max_age_s: float = 24 * 3600.0
    #: At most this many entries; past it the oldest are dropped.
    max_entries: int = 1_500_000


@dataclass(frozen=True)
class Entry:
    """One journal entry. ``key`` makes a numeric unique per parameter, device and second
    (a later one of the same second replaces it); None for alarms and limits, of which
    every change is kept. ``at``: when it was measured (s since the epoch)."""

    consultation_id: str
    kind: Kind
    key: str | None
    at: float
    body: str


@dataclass(frozen=True)
class Batch:
    """Pending entries of one consultation, oldest first, and the ``record`` body for them."""

    consultation_id: str
    seqs: list[int]
    body: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.seqs)


def _fields(item: BaseModel | Mapping[str, Any]) -> Mapping[str, Any]:
    return item.model_dump() if isinstance(item, BaseModel) else item


def _validate(model: type[NumericIn] | type[AlarmIn] | type[LimitsIn], item: Any) -> Any:
    try:
        return model.model_validate(_fields(item))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise ValueError(f"not journaled: {where}: {first['msg']}") from None


def numeric_entry(consultation_id: str, numeric: BaseModel | Mapping[str, Any]) -> Entry:
    """A numeric as a journal entry (its fields as the server takes them). Pure."""
    value: NumericIn = _validate(NumericIn, numeric)
    key = "\x1f".join(
        (consultation_id, value.device, value.code, str(int(value.derived)), str(int(value.time)))
    )
    body = value.model_dump_json()  # value: null is "no value", not a missing field
    return Entry(consultation_id, "numeric", key, value.time, body)


def alarm_entry(consultation_id: str, alarm: BaseModel | Mapping[str, Any]) -> Entry:
    value: AlarmIn = _validate(AlarmIn, alarm)
    at = max(value.started, value.ended or 0.0, value.acknowledged_at or 0.0)
    return Entry(consultation_id, "alarm", None, at, value.model_dump_json(exclude_none=True))


def limits_entry(consultation_id: str, limits: BaseModel | Mapping[str, Any]) -> Entry:
    value: LimitsIn = _validate(LimitsIn, limits)
    return Entry(consultation_id, "limits", None, value.time, value.model_dump_json())


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    consultation TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT UNIQUE,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_at ON entries (at);
"""


class JournalStore:
    """The journal's SQLite file (or memory). Thread-safe: every method takes the store's
    lock; call them from a worker thread (they do disk I/O), never on the event loop."""

    def __init__(self, connection: sqlite3.Connection, limits: JournalLimits) -> None:
        self._db = connection
        self.limits = limits
        self._lock = threading.Lock()
        #: Entries dropped to stay within the limits (since this store was opened).
        self.dropped = 0

    @classmethod
    def open(cls, path: Path | None, limits: JournalLimits | None = None) -> JournalStore:
        """The journal at ``path`` (created if absent; None: in memory only, lost with the
        process). A file that is not a readable journal is renamed aside, logged, and a
        new one begun: the gateway must go on measuring."""
        limits = limits or JournalLimits()
        if path is None:
            return cls(cls._connect(":memory:"), limits)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = cls._connect(str(path))
            if connection.execute("PRAGMA quick_check").fetchone() != ("ok",):
                connection.close()
                raise sqlite3.DatabaseError("quick_check failed")
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            log.error("journal %s is unreadable (%s); kept as %s, starting anew", path, exc, aside)
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            connection = cls._connect(str(path))
        return cls(connection, limits)

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        connection = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        # WAL: a write is one atomic append; NORMAL: no fsync per entry (a power cut may
        # lose the last moments, a killed process nothing it wrote).
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(_SCHEMA)
        return connection

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, entries: list[Entry], now: float | None = None) -> None:
        """Write ``entries`` (one transaction; a numeric replaces an entry of the same key),
        then drop what exceeds the limits."""
        with self._lock:
            if entries:
                with self._transaction():
                    self._db.executemany(
                        "INSERT OR REPLACE INTO entries (consultation, kind, key, at, body) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(e.consultation_id, e.kind, e.key, e.at, e.body) for e in entries],
                    )
            self._enforce_limits(time.time() if now is None else now)

    def _transaction(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind: object, *_: object) -> None:
                db.execute("ROLLBACK" if kind is not None else "COMMIT")

        return _Tx()

    def _enforce_limits(self, now: float) -> None:
        too_old = self._db.execute(
            "DELETE FROM entries WHERE at < ?", (now - self.limits.max_age_s,)
        ).rowcount
        too_many = 0
        # The span of sequence numbers bounds the count from above, from the index alone:
        # the table is counted only when it may be over.
        low, high = self._db.execute("SELECT min(seq), max(seq) FROM entries").fetchone()
        span = 0 if low is None else high - low + 1
        excess = (
            self.count_unlocked() - self.limits.max_entries if span > self.limits.max_entries else 0
        )
        if excess > 0:
            too_many = self._db.execute(
                "DELETE FROM entries WHERE seq IN (SELECT seq FROM entries ORDER BY seq LIMIT ?)",
                (excess,),
            ).rowcount
        if too_old or too_many:
            self.dropped += too_old + too_many
            log.warning(
                "journal full: dropped %d entries older than %.0f h and %d beyond %d "
                "(%d dropped in all): the server has not taken them",
                too_old,
                self.limits.max_age_s / 3600,
                too_many,
                self.limits.max_entries,
                self.dropped,
            )

    def count_unlocked(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def count(self) -> int:
        """How many entries wait for the server."""
        with self._lock:
            return self.count_unlocked()

    def pending(self, limit: int) -> Batch | None:
        """The oldest pending entries of the oldest entry's consultation (at most
        ``limit``), as a ``record`` body; None when nothing is pending."""
        with self._lock:
            first = self._db.execute(
                "SELECT consultation FROM entries ORDER BY seq LIMIT 1"
            ).fetchone()
            if first is None:
                return None
            rows = self._db.execute(
                "SELECT seq, kind, body FROM entries WHERE consultation = ? ORDER BY seq LIMIT ?",
                (first[0], limit),
            ).fetchall()
        body: dict[str, list[Any]] = {"numerics": [], "alarms": [], "limits": []}
        for _, kind, text in rows:
            body[BODY_KEYS[kind]].append(json.loads(text))
        return Batch(first[0], [seq for seq, _, _ in rows], body)

    def remove(self, seqs: list[int]) -> None:
        """Forget entries the server has (or has refused for good)."""
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM entries WHERE seq = ?", [(s,) for s in seqs])


class Journal:
    """What the gateway calls (see the module docstring). ``consultation`` tells which
    consultation the gateway is in now (None: none, and nothing is kept)."""

    def __init__(self, store: JournalStore, consultation: Callable[[], str | None]) -> None:
        self.store = store
        self._consultation = consultation
        self._buffer: OrderedDict[object, Entry] = OrderedDict()
        self._serial = 0
        #: Entries dropped from the memory buffer (a store that could not keep up).
        self.buffer_dropped = 0
        #: Entries appended while in no consultation (not kept).
        self.unattached = 0
        self._flush_lock = asyncio.Lock()

    def _add(self, build: Callable[[str], Entry]) -> None:
        cid = self._consultation()
        if cid is None:
            self.unattached += 1
            return
        entry = build(cid)
        if entry.key is not None:
            self._buffer.pop(entry.key, None)  # the latest of a second replaces it
            self._buffer[entry.key] = entry
        else:
            self._serial += 1
            self._buffer[self._serial] = entry
        while len(self._buffer) > BUFFER_MAX:
            self._buffer.popitem(last=False)
            self.buffer_dropped += 1
            if self.buffer_dropped == 1 or self.buffer_dropped % 1000 == 0:
                log.warning("journal buffer full: %d entries dropped", self.buffer_dropped)

    def add_numeric(self, numeric: BaseModel | Mapping[str, Any]) -> None:
        """A numeric (``media.rtc.events.Numeric`` or its fields)."""
        self._add(lambda cid: numeric_entry(cid, numeric))

    def add_alarm(self, alarm: BaseModel | Mapping[str, Any]) -> None:
        """An alarm's state now (``media.rtc.events.Alarm`` or its fields): call it when it
        starts and after every change (acknowledged, ended...)."""
        self._add(lambda cid: alarm_entry(cid, alarm))

    def add_limits(self, limits: BaseModel | Mapping[str, Any]) -> None:
        """The alarm limits now in force (``media.rtc.events.AlarmLimits`` or its fields)."""
        self._add(lambda cid: limits_entry(cid, limits))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def flush(self) -> None:
        """Move the buffer to the store, in a worker thread."""
        async with self._flush_lock:
            entries = list(self._buffer.values())
            self._buffer.clear()
            try:
                await asyncio.to_thread(self.store.append, entries)
            except BaseException:
                # Not written (a disk fault, or cancelled): back in front of what came since.
                for entry in reversed(entries):
                    key: object = entry.key
                    if key is None:
                        self._serial += 1
                        key = -self._serial
                    if key not in self._buffer:
                        self._buffer[key] = entry
                        self._buffer.move_to_end(key, last=False)
                raise

    async def close(self) -> None:
        """Flush what is buffered and close the store (at the gateway's exit)."""
        try:
            await self.flush()
        finally:
            await asyncio.to_thread(self.store.close)
