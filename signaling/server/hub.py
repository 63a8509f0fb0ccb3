"""Live consultation rooms: who is online where, and delivery of messages between them.

This hub is in-memory and owned by one server process (the embedded default);
:class:`signaling.server.hub_redis.RedisHub` (setting ``hub_url``) keeps the same local
connections and shares rooms, presence and the socket caps with other processes through
Redis. The database keeps what must survive a restart (consultations, members, chat).
The WebSocket handler uses the ``async`` methods (:meth:`Hub.open_socket`,
:meth:`Hub.admit`, :meth:`Hub.join_room`), which a shared hub must await; here they are the
synchronous ones. Each connection has a bounded outbound queue drained
by its own writer task, so a slow client never delays the others: when its queue is full it is
closed (1013, try again later) instead of buffering without limit; a client that has
stopped reading altogether cannot take even the close frame, and is cut off
(:class:`~signaling.server.ws.WsSession`).

Every authenticated connection is in its site's *lobby*: :meth:`Hub.publish` reaches the
clinician sockets of a consultation's two sites whether they are in a room or not.

Presence is per connection: a person with two tabs is two peers with the same
``(kind, principal_id)``, each announced by its own ``peer-joined`` and ``peer-left`` (the
client groups them). A joining connection's deliveries are held until its ``joined`` is
sent (:meth:`Connection.release`), so ``joined`` comes first and every later arrival or
departure follows it, never precedes it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from signaling.auth import Principal
from signaling.errors import SignalingException
from signaling.schema import (
    CloseCode,
    ConsultationInfo,
    ConsultationStateChanged,
    ConsultationSummary,
    ConsultationUpdated,
    Message,
    Peer,
    PeerJoined,
    PeerLeft,
    PrincipalKind,
    encode,
)

log = logging.getLogger(__name__)
_ENDED_REMEMBERED = 4096


class HubUnavailable(SignalingException):
    """The shared hub cannot reach its store (Redis): the socket is closed with 1013 (try
    again later); its client reconnects, perhaps to another process."""


@dataclass(frozen=True)
class Admission:
    """The outcome of :meth:`Hub.open_socket`: ``refused`` 0 when the socket was counted
    (pass this to :meth:`Hub.close_socket` when it closes), else how many sockets from that
    address have been refused since one of its sockets last closed."""

    refused: int
    #: What the hub needs to uncount the socket (a shared hub: the process that counted it).
    token: str = ""


class Member(Protocol):
    """Someone in a room a message can be given to: a local :class:`Connection`, or (with a
    shared hub) a peer on another process, or the room's members on other processes."""

    @property
    def peer_id(self) -> str: ...

    @property
    def kind(self) -> PrincipalKind: ...

    def send_text(self, text: str) -> None: ...


@dataclass(frozen=True)
class CloseRequest:
    code: CloseCode
    reason: str


class Connection:
    """One authenticated WebSocket, as the hub sees it."""

    def __init__(self, peer_id: str, principal: Principal, source_addr: str, queue_size: int):
        self.peer_id = peer_id
        self.principal = principal
        self.source_addr = source_addr
        #: The client's id for itself (``hello``'s ``instance``), shown to peers.
        self.instance: str | None = None
        self.consultation_id: str | None = None
        #: The consultation this connection was in when it ended (closed or cancelled), until
        #: it joins another or leaves: what it sends there is refused as not active.
        self.ended_consultation_id: str | None = None
        # One slot beyond the limit is reserved for the close request on overflow.
        self._limit = queue_size
        self.outbox: asyncio.Queue[str | CloseRequest] = asyncio.Queue(maxsize=queue_size + 1)
        self._closing = False
        #: Called once when a close is requested: the owner of the socket makes sure the
        #: close happens even when the writer is stuck on a client that stopped reading.
        self.on_close_requested: Callable[[], None] | None = None
        # While joining: what arrives for this connection, to be sent after its ``joined``.
        self._held: list[str] | None = None

    @property
    def peer(self) -> Peer:
        p = self.principal
        return Peer(
            peer_id=self.peer_id,
            kind=p.kind,
            principal_id=p.id,
            name=p.name,
            role=p.role,
            site=p.site,
            instance=self.instance,
        )

    @property
    def kind(self) -> PrincipalKind:
        return self.principal.kind

    def send(self, message: Message) -> None:
        self.send_text(encode(message))

    def send_text(self, text: str) -> None:
        """Queue ``text`` for this client without waiting; overflow closes the connection.
        While held (:meth:`hold`), it waits for :meth:`release` in the same bound."""
        if self._closing:
            return
        queued = self.outbox.qsize() + (len(self._held) if self._held is not None else 0)
        if queued >= self._limit:
            log.warning("peer %s is too slow; closing it", self.peer_id)
            self.request_close(CloseCode.TRY_AGAIN_LATER, "send queue overflow")
            return
        if self._held is not None:
            self._held.append(text)
        else:
            self.outbox.put_nowait(text)

    def hold(self) -> None:
        """Keep what is sent from now on until :meth:`release`."""
        if self._held is None:
            self._held = []

    def release(self, first: Message | None = None) -> None:
        """Send ``first``, then what was held meanwhile, in order; stop holding."""
        held, self._held = self._held or [], None
        if first is not None:
            self.send(first)
        for text in held:
            self.send_text(text)

    def request_close(self, code: CloseCode, reason: str) -> None:
        """Ask the writer to close the socket after what is already queued."""
        if not self._closing:
            self._closing = True
            self.outbox.put_nowait(CloseRequest(code, reason))
            if self.on_close_requested is not None:
                self.on_close_requested()

    @property
    def closing(self) -> bool:
        return self._closing


@dataclass
class Room:
    info: ConsultationInfo
    connections: dict[str, Connection] = field(default_factory=dict)


class Hub:
    """Rooms keyed by consultation id. All methods are synchronous: no awaits, no races."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}
        self._connections: dict[str, Connection] = {}
        # Consultations that recently reached a final state: a join racing with the close
        # must not recreate their room. The race spans one database read, so remembering the
        # last few thousand is plenty, and keeps the set bounded.
        self._ended: OrderedDict[str, None] = OrderedDict()
        # Open sockets per source address (authenticated or not) and per account.
        self._per_address: dict[str, int] = {}
        self._per_account: dict[tuple[PrincipalKind, int], int] = {}
        self._refused_from: dict[str, int] = {}

    # -- what the WebSocket handler calls; a shared hub overrides these ------------------------

    def new_peer_id(self) -> str:
        """A peer id for a new connection, unique among every process of the hub."""
        return f"p-{secrets.token_hex(6)}"

    async def start(self) -> None:
        """Start what the hub owns (nothing here); :meth:`stop` must follow."""

    async def stop(self) -> None:
        """Stop what :meth:`start` started."""

    @property
    def backlogged(self) -> bool:
        """True when the hub's link to other processes is behind: a reader awaits
        :meth:`drained` before relaying more (backpressure). Never, in memory."""
        return False

    async def drained(self) -> None:
        """Return once :attr:`backlogged` is False."""

    async def open_socket(self, host: str, limit: int) -> Admission:
        """:meth:`open_from`, counted wherever the hub counts."""
        return Admission(self.open_from(host, limit))

    def close_socket(self, host: str, admission: Admission) -> int:
        """:meth:`closed_from` for a socket :meth:`open_socket` admitted."""
        return self.closed_from(host)

    async def admit(self, conn: Connection, per_account: int | None = None) -> bool:
        """:meth:`register`, the account's sockets counted wherever the hub counts."""
        return self.register(conn, per_account)

    async def join_room(self, conn: Connection, info: ConsultationInfo) -> list[Peer] | None:
        """:meth:`join`, with the room's members wherever the hub keeps them."""
        return self.join(conn, info)

    def to_room(self, consultation_id: str, text: str) -> None:
        """Give ``text`` to everyone in the consultation's room now."""
        for member in self.in_room(consultation_id):
            member.send_text(text)

    # -- the synchronous core ----------------------------------------------------------------

    def open_from(self, host: str, limit: int) -> int:
        """Count a new socket from ``host`` (before its ``hello``) unless ``limit`` are open
        from there already. Returns 0 when counted (to be matched by :meth:`closed_from`),
        else how many sockets from ``host`` have been refused since one of its sockets last
        closed, this one included (the caller audits the first few one by one)."""
        count = self._per_address.get(host, 0)
        if count >= limit:
            refused = self._refused_from.get(host, 0) + 1
            self._refused_from[host] = refused
            return refused
        self._per_address[host] = count + 1
        return 0

    def closed_from(self, host: str) -> int:
        """A socket counted by :meth:`open_from` closed. Returns how many were refused from
        ``host`` meanwhile (the count starts again)."""
        count = self._per_address.get(host, 0) - 1
        if count > 0:
            self._per_address[host] = count
        else:
            self._per_address.pop(host, None)
        return self._refused_from.pop(host, 0)

    def register(self, conn: Connection, per_account: int | None = None) -> bool:
        """Add an authenticated connection, unless its account has ``per_account`` open
        already (False: refuse it). Checked and counted in one step: no await between."""
        key = (conn.principal.kind, conn.principal.id)
        count = self._per_account.get(key, 0)
        if per_account is not None and count >= per_account:
            return False
        self._per_account[key] = count + 1
        self._connections[conn.peer_id] = conn
        return True

    def unregister(self, conn: Connection, reason: str) -> None:
        self.leave(conn, reason)
        if self._connections.pop(conn.peer_id, None) is not None:
            key = (conn.principal.kind, conn.principal.id)
            count = self._per_account.get(key, 0) - 1
            if count > 0:
                self._per_account[key] = count
            else:
                self._per_account.pop(key, None)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def room(self, consultation_id: str) -> Room | None:
        return self._rooms.get(consultation_id)

    def online(self, consultation_id: str) -> set[tuple[PrincipalKind, int]]:
        room = self._rooms.get(consultation_id)
        if room is None:
            return set()
        return {(c.principal.kind, c.principal.id) for c in room.connections.values()}

    def join(self, conn: Connection, info: ConsultationInfo) -> list[Peer] | None:
        """Add ``conn`` to the room; tell the others. Returns everyone online, ``conn`` too,
        or None when the consultation has ended meanwhile.

        From here ``conn``'s deliveries are held: the caller sends its ``joined`` with
        :meth:`Connection.release` (also when it gives up, with ``None``), so that nothing
        that happens after this snapshot of the peers reaches it before ``joined``."""
        if info.id in self._ended:
            return None
        room = self._rooms.setdefault(info.id, Room(info))
        room.info = info
        joined = PeerJoined(consultation_id=info.id, peer=conn.peer)
        for other in room.connections.values():
            other.send(joined)
        room.connections[conn.peer_id] = conn
        conn.consultation_id = info.id
        conn.ended_consultation_id = None
        conn.hold()
        return [c.peer for c in room.connections.values()]

    def leave(self, conn: Connection, reason: str) -> None:
        """Remove ``conn`` from its room (if any) and tell those who stay."""
        cid = conn.consultation_id
        if cid is None:
            return
        conn.consultation_id = None
        room = self._rooms.get(cid)
        if room is None or room.connections.pop(conn.peer_id, None) is None:
            return
        left = PeerLeft(consultation_id=cid, peer_id=conn.peer_id, reason=reason)
        for other in room.connections.values():
            other.send(left)
        if not room.connections:
            del self._rooms[cid]

    def peer_in_room(self, conn: Connection, peer_id: str) -> Member | None:
        """The connection ``peer_id`` when it is in the same room as ``conn``; else None."""
        if conn.consultation_id is None or peer_id == conn.peer_id:
            return None
        room = self._rooms.get(conn.consultation_id)
        return room.connections.get(peer_id) if room else None

    def others(self, conn: Connection) -> Sequence[Member]:
        if conn.consultation_id is None:
            return []
        room = self._rooms[conn.consultation_id]
        return [c for pid, c in room.connections.items() if pid != conn.peer_id]

    def everyone(self, conn: Connection) -> Sequence[Member]:
        if conn.consultation_id is None:
            return []
        return list(self._rooms[conn.consultation_id].connections.values())

    def in_room(self, consultation_id: str) -> Sequence[Member]:
        """The connections in the consultation's room now (none when it has no room)."""
        room = self._rooms.get(consultation_id)
        return list(room.connections.values()) if room else []

    def publish(
        self,
        sites: frozenset[str],
        render: Callable[[Principal], ConsultationSummary | None],
        consultation_id: str | None = None,
    ) -> int:
        """Send a ``consultation`` message to every connection of ``sites`` (clinicians and
        gateways: a gateway follows its site's consultations by these, not by polling), in a
        room or not, each with ``render(principal)``: the consultation as that principal sees
        it, or None for one who may not see it. Returns how many connections were told here.
        ``consultation_id``: which consultation (a shared hub has other processes render it
        for their own connections)."""
        told = 0
        for conn in list(self._connections.values()):
            principal = conn.principal
            if principal.site not in sites:
                continue
            summary = render(principal)
            if summary is not None:
                conn.send(ConsultationUpdated(consultation=summary))
                told += 1
        return told

    def _ended_now(self, consultation_id: str) -> None:
        """Remember that ``consultation_id`` reached a final state (the last few thousand),
        so a join racing with its close does not recreate its room."""
        self._ended[consultation_id] = None
        while len(self._ended) > _ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    def state_changed(self, info: ConsultationInfo, final: bool) -> None:
        """A consultation was accepted/closed/cancelled: tell its room; a final state empties it."""
        if final:
            self._ended_now(info.id)
        room = self._rooms.get(info.id)
        if room is None:
            return
        room.info = info
        notice = ConsultationStateChanged(consultation=info)
        for conn in room.connections.values():
            conn.send(notice)
        if final:
            for conn in room.connections.values():
                conn.consultation_id = None
                conn.ended_consultation_id = info.id
            del self._rooms[info.id]

    def end_session(self, session_id: str, *, everywhere: bool = True) -> None:
        """Close every socket opened with a token of this (now ended) session; a shared hub
        tells its other processes too unless ``everywhere`` is False (each process's session
        watch finds the session in the database itself)."""
        for conn in self._connections.values():
            if conn.principal.session_id == session_id:
                conn.request_close(CloseCode.SESSION_EXPIRED, "session ended")

    def close_all(self, code: CloseCode, reason: str) -> None:
        """Close this process's sockets (it is shutting down); other processes keep theirs."""
        for conn in self._connections.values():
            conn.request_close(code, reason)
