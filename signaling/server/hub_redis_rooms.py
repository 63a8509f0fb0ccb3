"""A shared room as one process sees it, and the members of it on other processes.

A room's members are in Redis (``members:<id>``, a hash) with a counter (``seq:<id>``):
every join and leave increments it and publishes its event, numbered, on the room's
channel. :class:`SharedRoom` mirrors the members from those events, and gives each local
connection only the events numbered after the snapshot its own join returned (no
``peer-joined`` of a peer it was told of in ``joined``). Sans-I/O: no awaits, nothing sent
to Redis here.

Peer ids name their process (``p-<process>-<random>``, :func:`process_of`): what is sent to a
peer on another process (:class:`RemotePeer`) or to a room's members on every other process
(:class:`RoomCast`) goes through a :class:`Relay`, the hub, which publishes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from signaling.schema import Peer, PeerJoined, PeerLeft, PrincipalKind, encode
from signaling.server.hub import Connection, Room

#: Events held for a room until its first snapshot arrives (one join's round trip).
EARLY_LIMIT = 10000


def process_of(peer_id: str) -> str:
    """The process a shared hub's peer id names (``p-<process>-<random>``)."""
    return peer_id.split("-", 2)[1]


class Relay(Protocol):
    """What the members of other processes are reached through (the hub)."""

    def direct(self, consultation_id: str, peer_id: str, text: str) -> None:
        """Give ``text`` to ``peer_id`` on its process, if it is still in the room then."""

    def cast(self, consultation_id: str, text: str) -> None:
        """Give ``text`` to the room's members on every other process."""


@dataclass
class Place:
    """A local connection in a shared room: ``seq`` is its snapshot's number (None while
    its join is on its way; the events meanwhile wait in ``early``)."""

    conn: Connection
    seq: int | None = None
    early: list[tuple[int, str]] = field(default_factory=list)


class EarlyOverflow(Exception):
    """A room's events outgrew the wait for its first snapshot (:data:`EARLY_LIMIT`)."""


@dataclass
class SharedRoom(Room):
    """A room as one process sees it: ``connections`` (and ``places``) its own members;
    ``members`` everyone's, as of event number ``seq`` (-1: no snapshot yet, events wait in
    ``early``). ``subscribed``: the subscription to the room's channel, confirmed."""

    members: dict[str, Peer] = field(default_factory=dict)
    seq: int = -1
    early: list[tuple[int, str, Peer | None]] = field(default_factory=list)
    places: dict[str, Place] = field(default_factory=dict)
    subscribed: asyncio.Future[None] | None = None

    def event(self, seq: int, peer_id: str, peer: Peer | None, reason: str) -> None:
        """A join (``peer``) or leave (``reason``) numbered ``seq``, from any process: the
        mirror follows it and the local connections are told (each after its ``joined``).
        Raises :class:`EarlyOverflow`."""
        if self.seq < 0:
            if len(self.early) >= EARLY_LIMIT:
                raise EarlyOverflow
            self.early.append((seq, peer_id, peer))
        elif seq > self.seq:
            self._mirror(seq, peer_id, peer)
        notice: PeerJoined | PeerLeft
        if peer is not None:
            notice = PeerJoined(consultation_id=self.info.id, peer=peer)
        else:
            notice = PeerLeft(consultation_id=self.info.id, peer_id=peer_id, reason=reason)
        text = encode(notice)
        for place in self.places.values():
            if place.conn.peer_id == peer_id:
                continue
            if place.seq is None:
                place.early.append((seq, text))
            elif seq > place.seq:
                place.conn.send_text(text)

    def snapshot(self, place: Place, seq: int, members: dict[str, Peer]) -> None:
        """``place``'s join returned ``members`` as of event ``seq``: the mirror starts (or
        moves on) from there, and what ``place`` was held follows, the events after it only."""
        if seq > self.seq:
            first = self.seq < 0
            self.members, self.seq = members, seq
            if first:
                for event_seq, peer_id, peer in self.early:
                    if event_seq > seq:
                        self._mirror(event_seq, peer_id, peer)
                self.early = []
        place.seq = seq
        for event_seq, text in place.early:
            if event_seq > seq:
                place.conn.send_text(text)
        place.early = []

    def _mirror(self, seq: int, peer_id: str, peer: Peer | None) -> None:
        if peer is not None:
            self.members[peer_id] = peer
        else:
            self.members.pop(peer_id, None)
        self.seq = seq


class RemotePeer:
    """A peer on another process: what is sent to it is published to its process."""

    __slots__ = ("_cid", "_relay", "peer")

    def __init__(self, relay: Relay, consultation_id: str, peer: Peer) -> None:
        self._relay = relay
        self._cid = consultation_id
        self.peer = peer

    @property
    def peer_id(self) -> str:
        return self.peer.peer_id

    @property
    def kind(self) -> PrincipalKind:
        return self.peer.kind

    def send_text(self, text: str) -> None:
        self._relay.direct(self._cid, self.peer.peer_id, text)


class RoomCast:
    """The room's members on every other process, as one member of a room: what is sent to
    it is published once on the room's channel. It has no peer id of its own and counts as
    a user."""

    __slots__ = ("_cid", "_relay")

    def __init__(self, relay: Relay, consultation_id: str) -> None:
        self._relay = relay
        self._cid = consultation_id

    @property
    def peer_id(self) -> str:
        return "*"

    @property
    def kind(self) -> PrincipalKind:
        return PrincipalKind.USER

    def send_text(self, text: str) -> None:
        self._relay.cast(self._cid, text)
