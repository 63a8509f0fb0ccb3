"""Rooms, presence and the socket caps shared by several server processes through Redis
(setting ``hub_url``).

Each process keeps its own connections as :class:`~signaling.server.hub.Hub` does (each
with its bounded outbox and writer); what another process must see is in Redis:

- **Rooms** (:mod:`~signaling.server.hub_redis_rooms`). A hash per consultation
  (``members:<id>``: peer id -> the peer's JSON) and a counter (``seq:<id>``). Joining and
  leaving are Lua scripts (:mod:`~signaling.server.hub_scripts`), so each is one atomic
  step: the peer is added or removed, the counter incremented and the event published on
  the room's channel (``room:<id>``), which a process subscribes to while it has members
  there. A join's script also returns the hash and the counter: the ``joined`` snapshot.
  The process subscribes *before* it runs the script, so every later event reaches it; each
  event carries its number, and a connection is given only the events numbered after its
  snapshot, held until its ``joined`` is sent as in memory. Each process keeps a mirror of
  its rooms' members, kept by the same events: the relay looks a peer up there without
  asking Redis.
- **Relay.** A peer id names its process (``p-<process>-<random>``): a message to one peer
  on another process is published once on that process's channel (``to:<process>``), with
  the room it was meant for (a peer that has left it meanwhile is not given it). Chat and
  what the routes give a whole room are published once on the room's channel. The text
  relayed is the sender's validated text as the process received it (``d<room>\\n<peer
  id>\\n<text>``): the receiving process splits off the header and queues the rest for the
  socket, with no JSON decoding or encoding on the way.
- **Consultations** (:mod:`~signaling.server.hub_redis_follow`). A change is published on
  ``all``: every process tells its room (the ``consultation-state`` and, when final, the
  room emptied) and renders the ``consultation`` message for its own sockets of the two
  sites from the database (one read per process). A logout's ``end_session`` reaches every
  process the same way.
- **Caps.** Sockets per address and per account are counted in ``addr``/``acct`` (the sum)
  and ``addr:<process>``/``acct:<process>`` (this process's share), checked and counted by
  one script.
- **Liveness.** ``alive:<process>`` expires ``liveness_s`` after its last refresh (every
  quarter of it). Each refresh also runs the reaper: one script that, for a process whose
  key has expired, removes its peers from its rooms (``peer-left``, reason ``server-lost``,
  to every process with members there), drops its share of the caps and forgets it: done
  once, by whichever process gets there first. A killed process's peers are thus gone for
  the others within ``liveness_s`` and a bit.

The two connections (:mod:`~signaling.server.hub_redis_link`): every command goes through
one ordered queue on one connection, written as it comes without waiting for the replies
of the commands before it, so what this process does reaches Redis in the order it did it
and a burst of relayed messages costs one write; the queue is bounded, and past its
high-water mark the readers of the sockets wait (backpressure, as a slow outbox would).
Messages arrive on one subscriber connection in the order Redis published them, and are
handled as they are read, without awaiting anything: the relay never waits for the
database; the consultation re-reads are another task's, coalesced per consultation.

When the link to Redis fails (a connection lost, a command failed, the queue past its hard
bound, this process taken for dead after a stall), what this process knows of the others
can no longer be trusted: it closes every socket it holds with 1013 (try again later),
refuses new ones until it is back, and starts again under a new process id. Clients
reconnect (to this process or another, through the proxy) and re-join.

One task owns it all (:meth:`RedisHub.start`, :meth:`RedisHub.stop`): the supervisor,
which reconnects with backoff and runs each session's command link, subscriber and
heartbeat in a ``TaskGroup``; and the consultation follower.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from runtime.tasks import cancel_and_wait, spawn
from signaling.auth import Principal
from signaling.schema import (
    CloseCode,
    ConsultationInfo,
    ConsultationStateChanged,
    ConsultationSummary,
    Peer,
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
)
from signaling.server.hub_redis_follow import Follower
from signaling.server.hub_redis_link import (
    HIGH_WATER,
    QUEUE_LIMIT,
    Arg,
    CommandLink,
    LinkLost,
    Subscriber,
    connect,
)
from signaling.server.hub_redis_rooms import (
    EarlyOverflow,
    Place,
    RemotePeer,
    RoomCast,
    SharedRoom,
    process_of,
)
from signaling.server.hub_scripts import SCRIPTS
from signaling.storage.database import Database

__all__ = ["HIGH_WATER", "QUEUE_LIMIT", "SERVER_LOST", "RedisHub", "SharedRoom", "process_of"]

log = logging.getLogger(__name__)

PREFIX = "telemed:"
_ALL = PREFIX + "all"
_ROOM = PREFIX + "room:"
_TO = PREFIX + "to:"
#: How long a final consultation's room stays closed to joins.
ENDED_TTL_S = 86400

#: ``peer-left``'s reason for the peers of a process that stopped answering.
SERVER_LOST = "server-lost"


def _key(kind: str, *parts: str) -> str:
    return PREFIX + kind + "".join(parts)


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
        self.liveness_s = liveness_s
        self._connect_timeout_s = connect_timeout_s
        #: This process's id in Redis; a new one after each reconnection.
        self.process_id = secrets.token_hex(4)
        self._shared: dict[str, SharedRoom] = {}
        self._up = self._was_up = False
        self._shas: dict[str, str] = {}
        # Each session's two connections; none until the first (these are never running).
        self._link = CommandLink()
        self._link.fail("not started")
        self._subscriber = Subscriber(self._dispatch)
        self._follower = Follower(db, lambda sites, render: Hub.publish(self, sites, render))
        self._supervisor: asyncio.Task[None] | None = None
        self._following: asyncio.Task[None] | None = None

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._following = spawn(self._follower.run(), "hub-follow")
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
                    await self._call("DEL", _key("alive:", self.process_id))
                    await self._call("EVALSHA", self._shas["reap"], 0, PREFIX, SERVER_LOST)
            except (TimeoutError, HubUnavailable):
                log.warning("hub: could not tell Redis this process is ending")
        tasks = [t for t in (self._supervisor, self._following) if t is not None]
        self._supervisor = self._following = None
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
        self.process_id = process = secrets.token_hex(4)
        link = self._link = CommandLink()
        subscriber = self._subscriber = Subscriber(self._dispatch)
        connections = []
        try:
            cmd = await connect(self._url, self._connect_timeout_s)
            connections.append(cmd)
            sub = await connect(self._url, self._connect_timeout_s)
            connections.append(sub)
            async with asyncio.TaskGroup() as group:
                group.create_task(link.run(cmd), name="hub-link")
                group.create_task(subscriber.run(sub), name="hub-subscriber")
                for name, text in SCRIPTS.items():
                    self._shas[name] = await link.call("SCRIPT", "LOAD", text)
                ttl_ms = int(self.liveness_s * 1000)
                await link.call("SET", _key("alive:", process), "1", "PX", ttl_ms)
                await link.call("SADD", _key("procs"), process)
                for channel in (_TO + process, _ALL):
                    await subscriber.subscribe(channel)
                self._up = self._was_up = True
                if not first.done():
                    first.set_result(None)
                log.info("hub: process %s is in the shared hub", process)
                group.create_task(self._beat(), name="hub-beat")
        finally:
            self._up = False
            for conn in connections:
                await conn.disconnect()

    def _lose(self) -> None:
        """The link is gone: every socket here is closed; nothing waits on it any more."""
        self._up = False
        for conn in list(self._connections.values()):
            conn.request_close(CloseCode.TRY_AGAIN_LATER, "the server's hub lost its store")
        for room in self._shared.values():
            for place in room.places.values():
                place.conn.consultation_id = None
        self._shared.clear()
        self._link.fail("the link to Redis was lost")
        self._subscriber.fail("the link to Redis was lost")

    # -- the command link --------------------------------------------------------------------

    def _send(self, *args: Arg) -> None:
        """Queue a command nobody waits for (sent in order with every other)."""
        if self._up:  # else the link is gone: what this process held in Redis is being reaped
            self._link.send(*args)

    async def _call(self, *args: Arg) -> Any:
        """Queue a command and wait for its answer. Raises :class:`HubUnavailable`."""
        if not self._up:
            raise HubUnavailable("the server's hub is not connected to Redis")
        return await self._link.call(*args)

    @property
    def backlogged(self) -> bool:
        return self._link.backlogged

    async def drained(self) -> None:
        while self.backlogged and self._up:
            await self._link.drained()

    async def _beat(self) -> None:
        alive = _key("alive:", self.process_id)
        ttl_ms = int(self.liveness_s * 1000)
        while True:
            await asyncio.sleep(self.liveness_s / 4)
            async with asyncio.timeout(self.liveness_s):
                if not await self._call("EVALSHA", self._shas["beat"], 1, alive, ttl_ms):
                    raise LinkLost("this process was taken for dead (it went unheard too long)")
                reaped = await self._call("EVALSHA", self._shas["reap"], 0, PREFIX, SERVER_LOST)
            if reaped:
                log.warning("hub: server processes %s stopped answering; their peers left", reaped)

    # -- what arrives ------------------------------------------------------------------------

    def _dispatch(self, channel: str, data: str) -> None:
        """One message from the subscriber: a message that cannot be read is logged and
        skipped; a room whose events outgrow its first snapshot's wait loses the link."""
        try:
            self._handle(channel, data)
        except (ValueError, KeyError, IndexError, ValidationError):
            log.exception("hub: a message on %s could not be read; skipped", channel)
        except EarlyOverflow:
            self._link.lose("a room's events outgrew its first snapshot's wait")

    def _handle(self, channel: str, data: str) -> None:
        kind = data[0]
        if kind == "d":  # the relay's hot path first: one peer's message
            cid, peer_id, text = data[1:].split("\n", 2)
            conn = self._connections.get(peer_id)
            if conn is not None and conn.consultation_id == cid:
                conn.send_text(text)
        elif channel.startswith(_ROOM):
            room = self._shared.get(channel[len(_ROOM) :])
            if room is None:
                return
            body = data[1:]
            if kind == "j":
                seq, peer_json = body.split("\n", 1)
                peer = Peer.model_validate_json(peer_json)
                room.event(int(seq), peer.peer_id, peer, "")
            elif kind == "l":
                seq, peer_id, reason = body.split("\n", 2)
                room.event(int(seq), peer_id, None, reason)
            elif kind == "m":
                origin, text = body.split("\n", 1)
                if origin != self.process_id:
                    for place in room.places.values():
                        place.conn.send_text(text)
        elif channel == _ALL:
            payload = json.loads(data[1:])
            if payload["o"] == self.process_id:
                return
            if kind == "s":
                info = ConsultationInfo.model_validate(payload["info"])
                self._state_here(info, bool(payload["final"]))
            elif kind == "c":
                if self._connections:
                    self._follower.later(str(payload["id"]), frozenset(payload["sites"]))
            elif kind == "e":
                Hub.end_session(self, str(payload["session"]))

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
        keys = (_key("addr"), _key("addr:", process))
        if await self._call("EVALSHA", self._shas["open"], 2, *keys, host, limit):
            return Admission(0, process)
        refused = self._refused_from.get(host, 0) + 1
        self._refused_from[host] = refused
        if len(self._refused_from) > _ENDED_REMEMBERED:  # hosts refused here, none open here
            self._refused_from.pop(next(iter(self._refused_from)))
        return Admission(refused)

    def close_socket(self, host: str, admission: Admission) -> int:
        if admission.token:
            keys = (_key("addr"), _key("addr:", admission.token))
            self._send("EVALSHA", self._shas["close"], 2, *keys, host)
        return self._refused_from.pop(host, 0)

    @staticmethod
    def _account(conn: Connection) -> str:
        return f"{conn.principal.kind}:{conn.principal.id}"

    async def admit(self, conn: Connection, per_account: int | None = None) -> bool:
        process = process_of(conn.peer_id)
        if process != self.process_id:
            raise HubUnavailable("the hub reconnected meanwhile")
        keys = (_key("acct"), _key("acct:", process))
        limit = per_account if per_account is not None else 1 << 30
        account = self._account(conn)
        if not await self._call("EVALSHA", self._shas["open"], 2, *keys, account, limit):
            return False
        self._connections[conn.peer_id] = conn
        return True

    def unregister(self, conn: Connection, reason: str) -> None:
        self.leave(conn, reason)
        if self._connections.pop(conn.peer_id, None) is not None:
            keys = (_key("acct"), _key("acct:", process_of(conn.peer_id)))
            self._send("EVALSHA", self._shas["close"], 2, *keys, self._account(conn))

    def room(self, consultation_id: str) -> SharedRoom | None:
        return self._shared.get(consultation_id)

    def online(self, consultation_id: str) -> set[tuple[PrincipalKind, int]]:
        room = self._shared.get(consultation_id)
        if room is None:
            return set()
        return {(p.kind, p.principal_id) for p in room.members.values()}

    def _room_keys(self, cid: str) -> tuple[str, str]:
        return _key("members:", cid), _key("seq:", cid)

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
            room.subscribed = self._subscriber.subscribe(_ROOM + cid)
        room.info = info
        place = room.places[conn.peer_id] = Place(conn)
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
                _key("ended:", cid),
                _key("rooms:", self.process_id),
            )
            peer = conn.peer.model_dump_json()
            # The same client (account and tab) in the room under an older peer id (its
            # socket was on a process that died, or has not timed out yet) is replaced: its
            # peer-left goes out before this join's peer-joined.
            who = (str(conn.principal.kind), str(conn.principal.id), conn.instance or "")
            args = (conn.peer_id, peer, _ROOM + cid, cid, *who)
            answer = await self._call("EVALSHA", self._shas["join"], 4, *keys, *args)
            if answer is None or room.places.get(conn.peer_id) is not place:
                return None  # ended, in Redis or here meanwhile
            seq, flat = int(answer[0]), answer[1]
            snapshot = {
                flat[i]: Peer.model_validate_json(flat[i + 1]) for i in range(0, len(flat), 2)
            }
            room.snapshot(place, seq, snapshot)
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
            self._subscriber.unsubscribe(_ROOM + room.info.id)

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
        keys = (members, seq_key, _key("rooms:", process_of(conn.peer_id)))
        args = (conn.peer_id, _ROOM + cid, reason, cid, "1" if last else "0")
        self._send("EVALSHA", self._shas["leave"], 3, *keys, *args)

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

    def cast(self, consultation_id: str, text: str) -> None:
        """Publish ``text`` once for the room's members on the other processes."""
        self._send("PUBLISH", _ROOM + consultation_id, f"m{self.process_id}\n{text}")

    def direct(self, consultation_id: str, peer_id: str, text: str) -> None:
        """Publish ``text`` to ``peer_id``'s process, for it while it is in the room."""
        data = f"d{consultation_id}\n{peer_id}\n{text}"
        self._send("PUBLISH", _TO + process_of(peer_id), data)

    def _broadcast(self, kind: str, payload: dict[str, Any]) -> None:
        data = kind + json.dumps({"o": self.process_id, **payload}, separators=(",", ":"))
        self._send("PUBLISH", _ALL, data)

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
            keys = (members, seq_key, _key("ended:", info.id))
            self._send("EVALSHA", self._shas["end"], 3, *keys, ENDED_TTL_S)
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
            self._send("SREM", _key("rooms:", self.process_id), info.id)

    def end_session(self, session_id: str, *, everywhere: bool = True) -> None:
        super().end_session(session_id)
        if everywhere:
            self._broadcast("e", {"session": session_id})
