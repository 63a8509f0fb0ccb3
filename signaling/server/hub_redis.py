"""Rooms, presence and the socket caps shared by several server processes through Redis
(setting ``hub_url``).

Each process keeps its own connections as :class:`~signaling.server.hub.Hub` does (each
with its bounded outbox and writer); what another process must see is in Redis:

- **Rooms.** A hash per consultation (``members:<id>``: peer id -> the peer's JSON) and a
  counter (``seq:<id>``). Joining and leaving are Lua scripts, so each is one atomic step:
  the peer is added or removed, the counter incremented and the event published on the
  room's channel (``room:<id>``), which a process subscribes to while it has members there.
  A join's script also returns the hash and the counter: the ``joined`` snapshot. The
  process subscribes *before* it runs the script, so every later event reaches it; each
  event carries its number, and a connection is given only the events numbered after its
  snapshot (no ``peer-joined`` of a peer it was told of in ``joined``), held until its
  ``joined`` is sent as in memory. Each process keeps a mirror of its rooms' members, kept
  by the same events: the relay looks a peer up there without asking Redis.
- **Relay.** A peer id names its process (``p-<process>-<random>``): a message to one peer
  on another process is published once on that process's channel (``to:<process>``), with
  the room it was meant for (a peer that has left it meanwhile is not given it). Chat and
  what the routes give a whole room are published once on the room's channel.
- **Consultations.** A change is published on ``all``: every process tells its room (the
  ``consultation-state`` and, when final, the room emptied) and renders the ``consultation``
  message for its own sockets of the two sites from the database (one read per process).
  A logout's ``end_session`` reaches every process the same way.
- **Caps.** Sockets per address and per account are counted in ``addr``/``acct`` (the sum)
  and ``addr:<process>``/``acct:<process>`` (this process's share), checked and counted by
  one script.
- **Liveness.** ``alive:<process>`` expires ``liveness_s`` after its last refresh (every
  quarter of it). Each refresh also runs the reaper: one script that, for a process whose
  key has expired, removes its peers from its rooms (``peer-left``, reason ``server-lost``,
  to every process with members there), drops its share of the caps and forgets it: done
  once, by whichever process gets there first. A killed process's peers are thus gone for
  the others within ``liveness_s`` and a bit.

Every command goes through one ordered queue, sent in pipelined batches on one
connection: what this process does reaches Redis in the order it did it. The queue is
bounded; past its high-water mark the readers of the sockets wait (backpressure, as a
slow outbox would). Messages arrive on one subscriber connection in the order Redis
published them, and are handled without awaiting anything: the relay never waits for the
database; the consultation re-reads are another task's, coalesced per consultation.

When the link to Redis fails (a connection lost, a command failed, the queue past its hard
bound, this process taken for dead after a stall), what this process knows of the others
can no longer be trusted: it closes every socket it holds with 1013 (try again later),
refuses new ones until it is back, and starts again under a new process id. Clients
reconnect (to this process or another, through the proxy) and re-join.

One task owns it all (:meth:`RedisHub.start`, :meth:`RedisHub.stop`): the supervisor,
which reconnects with backoff and runs the reader, writer, heartbeat and subscription tasks
of each connection in a ``TaskGroup``; and the consultation follower.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime.tasks import cancel_and_wait, spawn
from signaling.auth import Principal
from signaling.schema import (
    CloseCode,
    ConsultationInfo,
    ConsultationStateChanged,
    ConsultationSummary,
    Peer,
    PeerJoined,
    PeerLeft,
    PrincipalKind,
    encode,
)
from signaling.server.hub import (
    _ENDED_REMEMBERED,
    Admission,
    Connection,
    Hub,
    HubUnavailable,
    Member,
    Room,
)
from signaling.server.hub_scripts import SCRIPTS
from signaling.storage import consultations as store
from signaling.storage.database import Database
from signaling.storage.models import ConsultationRow

log = logging.getLogger(__name__)

PREFIX = "telemed:"
_ALL = PREFIX + "all"
_ROOM = PREFIX + "room:"
_TO = PREFIX + "to:"
#: Commands waiting for Redis: above HIGH_WATER socket readers wait; past QUEUE_LIMIT the
#: link is taken as lost (Redis has stopped answering).
HIGH_WATER = 5000
QUEUE_LIMIT = 20000
#: Commands sent in one pipelined round trip.
BATCH = 1000
#: Consultations waiting to be re-read for this process's lobby sockets (coalesced).
FOLLOW_LIMIT = 4096
#: Events for a room held until its first snapshot arrives (one join's round trip).
EARLY_LIMIT = 10000
#: How long a final consultation's room stays closed to joins.
ENDED_TTL_S = 86400

#: ``peer-left``'s reason for the peers of a process that stopped answering.
SERVER_LOST = "server-lost"


def _render(row: ConsultationRow, principal: Principal) -> ConsultationSummary | None:
    return store.describe(principal, row) if store.may_view(principal, row) else None


def process_of(peer_id: str) -> str:
    """The process a shared hub's peer id names (``p-<process>-<random>``)."""
    return peer_id.split("-", 2)[1]


class _Lost(Exception):
    """This process can no longer trust what it knows of the others (said why)."""


@dataclass
class _Place:
    """A local connection in a shared room: ``seq`` is its snapshot's number (None while
    its join is on its way; the events meanwhile wait in ``early``)."""

    conn: Connection
    seq: int | None = None
    early: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class SharedRoom(Room):
    """A room as one process sees it: ``connections`` its own members; ``members``
    everyone's, as of event number ``seq`` (-1: no snapshot yet, events wait in ``early``)."""

    members: dict[str, Peer] = field(default_factory=dict)
    seq: int = -1
    early: list[tuple[int, str, Peer | None]] = field(default_factory=list)
    places: dict[str, _Place] = field(default_factory=dict)
    subscribed: asyncio.Future[None] | None = None


class RemotePeer:
    """A peer on another process: what is sent to it is published to its process."""

    __slots__ = ("_cid", "_hub", "peer")

    def __init__(self, hub: RedisHub, consultation_id: str, peer: Peer) -> None:
        self._hub = hub
        self._cid = consultation_id
        self.peer = peer

    @property
    def peer_id(self) -> str:
        return self.peer.peer_id

    @property
    def kind(self) -> PrincipalKind:
        return self.peer.kind

    def send_text(self, text: str) -> None:
        self._hub._direct(self._cid, self.peer.peer_id, text)


class RoomCast:
    """The room's members on every other process, as one member of :meth:`RedisHub.in_room`:
    what is sent to it is published once on the room's channel. It has no peer id of its own
    and counts as a user."""

    __slots__ = ("_cid", "_hub")

    def __init__(self, hub: RedisHub, consultation_id: str) -> None:
        self._hub = hub
        self._cid = consultation_id

    @property
    def peer_id(self) -> str:
        return "*"

    @property
    def kind(self) -> PrincipalKind:
        return PrincipalKind.USER

    def send_text(self, text: str) -> None:
        self._hub._cast(self._cid, text)


_Add = Callable[[Pipeline], Any]


class RedisHub(Hub):
    """The hub shared through the Redis at ``url``. ``db`` is this process's database (for
    rendering another process's consultation changes); ``liveness_s``: how long this process
    may go unheard before the others take it for dead. :meth:`start` before serving (raises
    :class:`HubUnavailable` when Redis cannot be reached within ``connect_timeout_s``),
    :meth:`stop` after."""

    def __init__(
        self,
        url: str,
        db: Database,
        *,
        liveness_s: float = 10.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self._url = url
        self._db = db
        self.liveness_s = liveness_s
        self._connect_timeout_s = connect_timeout_s
        #: This process's id in Redis; a new one after each reconnection.
        self.process_id = secrets.token_hex(4)
        self._shared: dict[str, SharedRoom] = {}
        self._up = self._was_up = False
        self._broken: str | None = None
        self._shas: dict[str, str] = {}
        # The ordered command queue, its batch in flight, and who waits on it.
        self._queue: deque[tuple[_Add, asyncio.Future[Any] | None]] = deque()
        self._inflight: list[tuple[_Add, asyncio.Future[Any] | None]] = []
        self._work = asyncio.Event()
        self._drained_event = asyncio.Event()
        # Subscriptions to change (in order) and who waits for each confirmation.
        self._sub_ops: deque[tuple[bool, str]] = deque()
        self._sub_work = asyncio.Event()
        self._sub_waiters: dict[str, deque[asyncio.Future[None]]] = {}
        # Consultations changed by another process, to render for this one's sockets.
        self._follow_pending: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._follow_work = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._follower = spawn(self._follow(), "hub-follow")
        self._supervisor = spawn(self._supervise(first), "hub-redis")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await asyncio.shield(first)
        except TimeoutError:
            await self.stop()
            raise HubUnavailable(
                f"the hub's Redis (hub_url) did not answer within {self._connect_timeout_s} s"
            ) from None

    async def stop(self) -> None:
        """Leave Redis as a process that ended: its peers are reported gone at once."""
        if self._up:
            try:
                async with asyncio.timeout(2.0):
                    await self._call(lambda p: p.delete(self._key("alive:", self.process_id)))
                    await self._call(
                        lambda p: p.evalsha(self._shas["reap"], 0, PREFIX, SERVER_LOST)
                    )
            except (TimeoutError, HubUnavailable):
                log.warning("hub: could not tell Redis this process is ending")
        tasks = [t for t in (self._supervisor, self._follower) if t is not None]
        self._supervisor = self._follower = None
        await cancel_and_wait(tasks)
        self._lose()  # whoever still waits on Redis is told

    async def _supervise(self, first: asyncio.Future[None]) -> None:
        delay = 0.2
        while True:
            try:
                await self._session(first)
            except Exception as exc:  # every failure of the link: start again
                log.error("hub: the link to Redis failed (%r); closing this process's sockets", exc)
            self._lose()
            await asyncio.sleep(delay)
            delay = 0.2 if self._was_up else min(delay * 2, 5.0)

    async def _session(self, first: asyncio.Future[None]) -> None:
        self._was_up = False
        self.process_id = secrets.token_hex(4)
        self._broken = None
        options: dict[str, Any] = {"decode_responses": True, "retry": Retry(NoBackoff(), 0)}
        cmd = aioredis.Redis.from_url(self._url, socket_timeout=self.liveness_s, **options)
        sub = aioredis.Redis.from_url(self._url, **options)
        pubsub = sub.pubsub()
        try:
            for name, text in SCRIPTS.items():
                self._shas[name] = await cmd.script_load(text)
            ttl_ms = int(self.liveness_s * 1000)
            await cmd.set(self._key("alive:", self.process_id), "1", px=ttl_ms)
            await cmd.sadd(self._key("procs"), self.process_id)
            await pubsub.subscribe(_TO + self.process_id, _ALL)
            self._up = self._was_up = True
            if not first.done():
                first.set_result(None)
            log.info("hub: process %s is in the shared hub", self.process_id)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(pubsub), name="hub-read")
                group.create_task(self._write(cmd), name="hub-write")
                group.create_task(self._beat(), name="hub-beat")
                group.create_task(self._subscriptions(pubsub), name="hub-subscribe")
        finally:
            self._up = False
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await sub.aclose()
            await cmd.aclose()

    def _lose(self) -> None:
        """The link is gone: every socket here is closed; nothing waits on it any more."""
        self._up = False
        for conn in list(self._connections.values()):
            conn.request_close(CloseCode.TRY_AGAIN_LATER, "the server's hub lost its store")
        for room in self._shared.values():
            for place in room.places.values():
                place.conn.consultation_id = None
        self._shared.clear()
        waiting = [*self._inflight, *self._queue]
        self._inflight = []
        self._queue.clear()
        for _, future in waiting:
            if future is not None and not future.done():
                future.set_exception(HubUnavailable("the link to Redis was lost"))
        for waiters in self._sub_waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(HubUnavailable("the link to Redis was lost"))
        self._sub_waiters.clear()
        self._sub_ops.clear()
        self._drained_event.set()

    # -- the command queue -------------------------------------------------------------------

    @staticmethod
    def _key(kind: str, *parts: str) -> str:
        return PREFIX + kind + "".join(parts)

    def _send(self, add: _Add) -> None:
        """Queue a command nobody waits for (sent in order with every other)."""
        if not self._up or self._broken:
            return  # the link is gone: what this process held in Redis is being reaped
        if len(self._queue) >= QUEUE_LIMIT:
            self._broken = f"more than {QUEUE_LIMIT} commands wait for Redis"
            self._work.set()
            return
        self._queue.append((add, None))
        self._work.set()

    async def _call(self, add: _Add) -> Any:
        """Queue a command and wait for its answer. Raises :class:`HubUnavailable`."""
        if not self._up or self._broken:
            raise HubUnavailable("the server's hub is not connected to Redis")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((add, future))
        self._work.set()
        return await asyncio.shield(future)

    @property
    def backlogged(self) -> bool:
        return len(self._queue) >= HIGH_WATER

    async def drained(self) -> None:
        while self.backlogged and self._up:
            self._drained_event.clear()
            await self._drained_event.wait()

    async def _write(self, cmd: aioredis.Redis) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                if self._broken:
                    raise _Lost(self._broken)
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                self._inflight = batch
                pipe = cmd.pipeline(transaction=False)
                for add, _ in batch:
                    add(pipe)
                results = await pipe.execute(raise_on_error=False)
                self._inflight = []
                for (_, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        if future is None:
                            raise _Lost(f"a command failed: {result!r}")
                        if not future.done():
                            future.set_exception(HubUnavailable(repr(result)))
                    elif future is not None and not future.done():
                        future.set_result(result)
                if not self.backlogged:
                    self._drained_event.set()
            if self._broken:
                raise _Lost(self._broken)

    async def _beat(self) -> None:
        alive = self._key("alive:", self.process_id)
        ttl_ms = int(self.liveness_s * 1000)
        while True:
            await asyncio.sleep(self.liveness_s / 4)
            async with asyncio.timeout(self.liveness_s):
                beat = await self._call(lambda p: p.evalsha(self._shas["beat"], 1, alive, ttl_ms))
                if not beat:
                    raise _Lost("this process was taken for dead (it went unheard too long)")
                reaped = await self._call(
                    lambda p: p.evalsha(self._shas["reap"], 0, PREFIX, SERVER_LOST)
                )
            if reaped:
                log.warning("hub: server processes %s stopped answering; their peers left", reaped)

    # -- subscriptions and what arrives ------------------------------------------------------

    def _subscribe(self, channel: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sub_waiters.setdefault(channel, deque()).append(future)
        self._sub_ops.append((True, channel))
        self._sub_work.set()
        return future

    def _unsubscribe(self, channel: str) -> None:
        self._sub_ops.append((False, channel))
        self._sub_work.set()

    async def _subscriptions(self, pubsub: PubSub) -> None:
        while True:
            await self._sub_work.wait()
            self._sub_work.clear()
            while self._sub_ops:
                subscribe, channel = self._sub_ops.popleft()
                if subscribe:
                    await pubsub.subscribe(channel)
                else:
                    await pubsub.unsubscribe(channel)

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                try:
                    self._dispatch(channel, message["data"])
                except (ValueError, KeyError, IndexError, ValidationError):
                    log.exception("hub: a message on %s could not be read; skipped", channel)
            elif kind == "subscribe":
                waiters = self._sub_waiters.get(channel)
                if waiters:
                    future = waiters.popleft()
                    if not waiters:
                        del self._sub_waiters[channel]
                    if not future.done():
                        future.set_result(None)

    def _dispatch(self, channel: str, data: str) -> None:
        kind, body = data[0], data[1:]
        if channel.startswith(_ROOM):
            room = self._shared.get(channel[len(_ROOM) :])
            if room is None:
                return
            if kind == "j":
                seq, peer_json = body.split("\n", 1)
                peer = Peer.model_validate_json(peer_json)
                self._membership(room, int(seq), peer.peer_id, peer, "")
            elif kind == "l":
                seq, peer_id, reason = body.split("\n", 2)
                self._membership(room, int(seq), peer_id, None, reason)
            elif kind == "m":
                origin, text = body.split("\n", 1)
                if origin != self.process_id:
                    for place in room.places.values():
                        place.conn.send_text(text)
        elif channel == _ALL:
            payload = json.loads(body)
            if payload["o"] == self.process_id:
                return
            if kind == "s":
                info = ConsultationInfo.model_validate(payload["info"])
                self._state_here(info, bool(payload["final"]))
            elif kind == "c":
                self._follow_later(str(payload["id"]), frozenset(payload["sites"]))
            elif kind == "e":
                Hub.end_session(self, str(payload["session"]))
        elif kind == "d":
            cid, peer_id, text = body.split("\n", 2)
            conn = self._connections.get(peer_id)
            if conn is not None and conn.consultation_id == cid:
                conn.send_text(text)

    def _membership(
        self, room: SharedRoom, seq: int, peer_id: str, peer: Peer | None, reason: str
    ) -> None:
        """A join (``peer``) or leave (``reason``) numbered ``seq``, from any process."""
        if room.seq < 0:
            if len(room.early) >= EARLY_LIMIT:
                self._broken = "a room's events outgrew its first snapshot's wait"
                self._work.set()
                return
            room.early.append((seq, peer_id, peer))
        elif seq > room.seq:
            self._mirror(room, seq, peer_id, peer)
        event: PeerJoined | PeerLeft
        if peer is not None:
            event = PeerJoined(consultation_id=room.info.id, peer=peer)
        else:
            event = PeerLeft(consultation_id=room.info.id, peer_id=peer_id, reason=reason)
        text = encode(event)
        for place in room.places.values():
            if place.conn.peer_id == peer_id:
                continue
            if place.seq is None:
                place.early.append((seq, text))
            elif seq > place.seq:
                place.conn.send_text(text)

    @staticmethod
    def _mirror(room: SharedRoom, seq: int, peer_id: str, peer: Peer | None) -> None:
        if peer is not None:
            room.members[peer_id] = peer
        else:
            room.members.pop(peer_id, None)
        room.seq = seq

    # -- the hub's API -----------------------------------------------------------------------

    def new_peer_id(self) -> str:
        return f"p-{self.process_id}-{secrets.token_hex(6)}"

    def register(self, conn: Connection, per_account: int | None = None) -> bool:
        raise TypeError("a shared hub counts accounts in Redis: await admit()")

    def open_from(self, host: str, limit: int) -> int:
        raise TypeError("a shared hub counts addresses in Redis: await open_socket()")

    def join(self, conn: Connection, info: ConsultationInfo) -> list[Peer] | None:
        raise TypeError("a shared hub's rooms are in Redis: await join_room()")

    async def open_socket(self, host: str, limit: int) -> Admission:
        process = self.process_id
        keys = (self._key("addr"), self._key("addr:", process))
        if await self._call(lambda p: p.evalsha(self._shas["open"], 2, *keys, host, limit)):
            return Admission(0, process)
        refused = self._refused_from.get(host, 0) + 1
        self._refused_from[host] = refused
        if len(self._refused_from) > _ENDED_REMEMBERED:  # hosts refused here, none open here
            self._refused_from.pop(next(iter(self._refused_from)))
        return Admission(refused)

    def close_socket(self, host: str, admission: Admission) -> int:
        if admission.token:
            keys = (self._key("addr"), self._key("addr:", admission.token))
            self._send(lambda p: p.evalsha(self._shas["close"], 2, *keys, host))
        return self._refused_from.pop(host, 0)

    @staticmethod
    def _account(conn: Connection) -> str:
        return f"{conn.principal.kind}:{conn.principal.id}"

    async def admit(self, conn: Connection, per_account: int | None = None) -> bool:
        process = process_of(conn.peer_id)
        if process != self.process_id:
            raise HubUnavailable("the hub reconnected meanwhile")
        keys = (self._key("acct"), self._key("acct:", process))
        limit = per_account if per_account is not None else 1 << 30
        account = self._account(conn)
        if not await self._call(lambda p: p.evalsha(self._shas["open"], 2, *keys, account, limit)):
            return False
        self._connections[conn.peer_id] = conn
        return True

    def unregister(self, conn: Connection, reason: str) -> None:
        self.leave(conn, reason)
        if self._connections.pop(conn.peer_id, None) is not None:
            keys = (self._key("acct"), self._key("acct:", process_of(conn.peer_id)))
            account = self._account(conn)
            self._send(lambda p: p.evalsha(self._shas["close"], 2, *keys, account))

    def room(self, consultation_id: str) -> SharedRoom | None:
        return self._shared.get(consultation_id)

    def online(self, consultation_id: str) -> set[tuple[PrincipalKind, int]]:
        room = self._shared.get(consultation_id)
        if room is None:
            return set()
        return {(p.kind, p.principal_id) for p in room.members.values()}

    def _room_keys(self, cid: str) -> tuple[str, str]:
        return self._key("members:", cid), self._key("seq:", cid)

    async def join_room(self, conn: Connection, info: ConsultationInfo) -> list[Peer] | None:
        """Add ``conn`` to the room, in Redis; tell the others. Returns everyone in it,
        ``conn`` too, or None when the consultation has ended meanwhile. ``conn`` is held
        from here as :meth:`Hub.join` says. Raises :class:`HubUnavailable`."""
        cid = info.id
        if cid in self._ended:
            return None
        if not self._up:
            raise HubUnavailable("the server's hub is not connected to Redis")
        room = self._shared.get(cid)
        if room is None:
            room = self._shared[cid] = SharedRoom(info)
            room.subscribed = self._subscribe(_ROOM + cid)
        room.info = info
        place = room.places[conn.peer_id] = _Place(conn)
        room.connections[conn.peer_id] = conn
        conn.consultation_id = cid
        conn.ended_consultation_id = None
        conn.hold()
        peers: list[Peer] | None = None
        try:
            assert room.subscribed is not None
            await asyncio.shield(room.subscribed)
            members, seq_key = self._room_keys(cid)
            keys = (
                members,
                seq_key,
                self._key("ended:", cid),
                self._key("rooms:", self.process_id),
            )
            peer = conn.peer.model_dump_json()
            # The same client (account and tab) in the room under an older peer id (its
            # socket was on a process that died, or has not timed out yet) is replaced: its
            # peer-left goes out before this join's peer-joined.
            who = (str(conn.principal.kind), str(conn.principal.id), conn.instance or "")
            answer = await self._call(
                lambda p: p.evalsha(
                    self._shas["join"], 4, *keys, conn.peer_id, peer, _ROOM + cid, cid, *who
                )
            )
            if answer is None or room.places.get(conn.peer_id) is not place:
                return None  # ended, in Redis or here meanwhile
            seq, flat = int(answer[0]), answer[1]
            snapshot = {
                flat[i]: Peer.model_validate_json(flat[i + 1]) for i in range(0, len(flat), 2)
            }
            if seq > room.seq:
                first = room.seq < 0
                room.members, room.seq = snapshot, seq
                if first:
                    for event_seq, peer_id, event_peer in room.early:
                        if event_seq > seq:
                            self._mirror(room, event_seq, peer_id, event_peer)
                    room.early = []
            place.seq = seq
            for event_seq, text in place.early:
                if event_seq > seq:
                    conn.send_text(text)
            place.early = []
            peers = list(snapshot.values())
            return peers
        finally:
            if peers is None:
                if conn.consultation_id == cid:
                    conn.consultation_id = None
                current = self._shared.get(cid)
                if current is not None and current.places.get(conn.peer_id) is place:
                    del current.places[conn.peer_id]
                    current.connections.pop(conn.peer_id, None)
                    if not current.places:
                        self._drop_room(current)
                conn.release(None)

    def _drop_room(self, room: SharedRoom) -> None:
        if self._shared.get(room.info.id) is room:
            del self._shared[room.info.id]
            self._unsubscribe(_ROOM + room.info.id)

    def leave(self, conn: Connection, reason: str) -> None:
        cid = conn.consultation_id
        if cid is None:
            return
        conn.consultation_id = None
        room = self._shared.get(cid)
        if room is None or room.places.pop(conn.peer_id, None) is None:
            return
        room.connections.pop(conn.peer_id, None)
        last = not room.places
        if last:
            self._drop_room(room)
        members, seq_key = self._room_keys(cid)
        keys = (members, seq_key, self._key("rooms:", process_of(conn.peer_id)))
        args = (conn.peer_id, _ROOM + cid, reason, cid, "1" if last else "0")
        self._send(lambda p: p.evalsha(self._shas["leave"], 3, *keys, *args))

    def peer_in_room(self, conn: Connection, peer_id: str) -> Member | None:
        cid = conn.consultation_id
        if cid is None or peer_id == conn.peer_id:
            return None
        room = self._shared.get(cid)
        if room is None:
            return None
        place = room.places.get(peer_id)
        if place is not None:
            return place.conn
        peer = room.members.get(peer_id)
        return RemotePeer(self, cid, peer) if peer is not None else None

    def others(self, conn: Connection) -> Sequence[Member]:
        cid = conn.consultation_id
        room = self._shared.get(cid) if cid is not None else None
        if cid is None or room is None:
            return []
        members: list[Member] = [p.conn for pid, p in room.places.items() if pid != conn.peer_id]
        members.extend(
            RemotePeer(self, cid, peer)
            for pid, peer in room.members.items()
            if pid not in room.places and pid != conn.peer_id
        )
        return members

    def everyone(self, conn: Connection) -> Sequence[Member]:
        if conn.consultation_id is None:
            return []
        return [conn, *self.others(conn)]

    def in_room(self, consultation_id: str) -> Sequence[Member]:
        room = self._shared.get(consultation_id)
        local: list[Member] = [p.conn for p in room.places.values()] if room else []
        return [*local, RoomCast(self, consultation_id)]

    def to_room(self, consultation_id: str, text: str) -> None:
        for member in self.in_room(consultation_id):
            member.send_text(text)

    def _cast(self, cid: str, text: str) -> None:
        channel, data = _ROOM + cid, f"m{self.process_id}\n{text}"
        self._send(lambda p: p.publish(channel, data))

    def _direct(self, cid: str, peer_id: str, text: str) -> None:
        channel, data = _TO + process_of(peer_id), f"d{cid}\n{peer_id}\n{text}"
        self._send(lambda p: p.publish(channel, data))

    def _broadcast(self, kind: str, payload: dict[str, Any]) -> None:
        data = kind + json.dumps({"o": self.process_id, **payload}, separators=(",", ":"))
        self._send(lambda p: p.publish(_ALL, data))

    def publish(
        self,
        sites: frozenset[str],
        render: Callable[[Principal], ConsultationSummary | None],
        consultation_id: str | None = None,
    ) -> int:
        told = super().publish(sites, render)
        if consultation_id is not None:
            self._broadcast("c", {"id": consultation_id, "sites": sorted(sites)})
        return told

    def state_changed(self, info: ConsultationInfo, final: bool) -> None:
        if final:
            members, seq_key = self._room_keys(info.id)
            keys = (members, seq_key, self._key("ended:", info.id))
            self._send(lambda p: p.evalsha(self._shas["end"], 3, *keys, ENDED_TTL_S))
        self._state_here(info, final)
        self._broadcast("s", {"info": info.model_dump(mode="json"), "final": final})

    def _state_here(self, info: ConsultationInfo, final: bool) -> None:
        if final:
            self._ended_now(info.id)
        room = self._shared.get(info.id)
        if room is None:
            return
        room.info = info
        notice = encode(ConsultationStateChanged(consultation=info))
        for place in room.places.values():
            place.conn.send_text(notice)
        if final:
            for place in room.places.values():
                place.conn.consultation_id = None
                place.conn.ended_consultation_id = info.id
            room.places.clear()
            room.connections.clear()
            self._drop_room(room)
            rooms, cid = self._key("rooms:", self.process_id), info.id
            self._send(lambda p: p.srem(rooms, cid))

    def end_session(self, session_id: str, *, everywhere: bool = True) -> None:
        super().end_session(session_id)
        if everywhere:
            self._broadcast("e", {"session": session_id})

    # -- another process's consultation changes, rendered here -------------------------------

    def _follow_later(self, cid: str, sites: frozenset[str]) -> None:
        if not self._connections:
            return
        self._follow_pending[cid] = self._follow_pending.get(cid, frozenset()) | sites
        while len(self._follow_pending) > FOLLOW_LIMIT:
            dropped, _ = self._follow_pending.popitem(last=False)
            log.error("hub: consultation %s's change not rendered here (too many waiting)", dropped)
        self._follow_work.set()

    async def _follow(self) -> None:
        while True:
            await self._follow_work.wait()
            self._follow_work.clear()
            while self._follow_pending:
                cid, sites = self._follow_pending.popitem(last=False)
                try:
                    row = await store.get(self._db, cid)
                except Exception:  # a database outage must not end the follower
                    log.exception("hub: consultation %s could not be read; not rendered", cid)
                    continue
                if row is not None:
                    Hub.publish(self, sites, functools.partial(_render, row))
