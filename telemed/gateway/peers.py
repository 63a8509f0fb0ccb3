"""The gateway's WebRTC connections: one MediaPeer per clinician in the consultation.

The gateway is the offering side: it has the media. Each clinician peer it learns of (the
``joined`` peer list, ``peer-joined``) gets one supervising task, its *link*, which makes a
connection, offers it, and gives it up when it does not open in time, when aiortc says it
failed, when the heartbeat dies, or when the clinician's answer is refused; then it makes the
next one after the :class:`~media.rtc.rebuild.Backoff` delay, for as long as the clinician is
in the consultation (aiortc has no ICE restart: a new connection is the way back). Everything
a link does for its clinician happens in its own task, so a slow offer (gathering candidates
from a TURN server that does not answer) holds up nobody else's signaling.

Clinicians are known by who they are, not by their signaling connection: (kind, account,
the ``instance`` their client names itself with). When the signaling server restarts or a
clinician's socket drops and comes back, the peer id changes and the media does not: the
link carries on, and answers and candidates are routed by the new id. A clinician that is
no longer listed (``peer-left``, or absent from our ``joined`` after *our* reconnection)
keeps an open connection until it dies (the heartbeat says within 3 s when the browser
really went away); only then is the link not rebuilt.

A connection given up is closed in the background with a deadline: closing waits for the
TURN server to release the allocation, which on a dead path takes a minute, and the next
connection must not wait for that.

Every camera of the bedside is a video track of its own on each connection, one
transceiver each (a camera encoded once for every viewer, media.rtc.shared_encoder, gives
each connection a track of the layer its path takes, and its key frame requests go to that
layer); once a connection opens it is told, after the greeting, which media id
carries which camera (a ``cameras`` event: the ids are this connection's own).

The links and the closings are owned here: :meth:`PeerSet.close` cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aiortc import MediaStreamTrack, RTCIceServer

from media.audio.talkback import TalkBack
from media.rtc.events import Camera, Cameras, EventMessage, encode_event
from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.rebuild import Backoff, RebuildPolicy
from media.rtc.shared_encoder import bind_senders
from media.rtc.wire import WirePacket
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.tasks import cancel_and_wait, spawn
from signaling.schema import Answer, Candidate, ClientMessage, Offer, Peer, PrincipalKind

log = logging.getLogger(__name__)

#: An offer whose connection has not opened by then is given up and made again.
OPEN_TIMEOUT_S = RebuildPolicy().open_timeout_s
#: How long a given-up connection may take to close in the background.
CLOSE_DEADLINE_S = 5.0

Send = Callable[[ClientMessage], Awaitable[None]]


def identity(peer: Peer) -> str:
    """Who a peer is across its reconnections: kind, account and the client's instance id
    (its peer id when the client names no instance)."""
    return f"{peer.kind}:{peer.principal_id}:{peer.instance or peer.peer_id}"


@dataclass(frozen=True)
class CameraFeed:
    """A camera as the connections need it: its ``name`` and ``purpose`` (what the viewer
    is told), a new video track for each connection, and its frame size as captured
    (None until known)."""

    name: str
    purpose: Literal["room", "diagnostic"]
    track: Callable[[], MediaStreamTrack]
    size: Callable[[], tuple[int, int] | None]


@dataclass
class _Connection:
    peer: Peer
    media: MediaPeer
    #: The media id of each camera's transceiver on this connection, in the cameras' order.
    mids: list[str | None] = field(default_factory=list)
    #: Takes the clinician's talk-back to the bedside sink (when there is one).
    talkback_task: asyncio.Task[None] | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when what the clinician sent cannot be used (an answer aiortc refuses).
    abandoned: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def label(self) -> str:
        return f"{self.peer.name} ({self.peer.site}, {identity(self.peer)})"


class PeerSet:
    """``send`` puts a message on the signaling socket; ``ice_servers`` gives the servers
    for a new connection (cached by the caller: it is called for every connection);
    ``cameras`` the bedside's cameras, each a video track of every connection (none: no
    video; the first is the one the ``video`` adaptation event describes), ``audio`` a
    new audio track (None: no bedside sound); ``talkback`` plays what clinicians say (None:
    the connection does not ask for their sound); ``greeting`` gives the messages a newly
    opened connection receives first (channel metadata, the latest numerics)."""

    def __init__(
        self,
        send: Send,
        ice_servers: Callable[[], Awaitable[list[RTCIceServer]]],
        cameras: Sequence[CameraFeed],
        greeting: Callable[[], list[str]],
        open_timeout_s: float = OPEN_TIMEOUT_S,
        *,
        audio: Callable[[], MediaStreamTrack] | None = None,
        talkback: TalkBack | None = None,
        on_message: Callable[[Peer, EventMessage], None] | None = None,
        policy: RebuildPolicy | None = None,
        relay_only: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``on_message``: what a clinician's connection sends on the events channel (the
        heartbeat aside), with the clinician it came from. ``policy``: when to give a
        connection up and make the next (its ``open_timeout_s`` is replaced by the argument).
        ``relay_only``: TURN relay candidates only."""
        self._on_message = on_message
        base = policy or RebuildPolicy()
        self._policy = RebuildPolicy(
            open_timeout_s=open_timeout_s,
            first_delay_s=base.first_delay_s,
            max_delay_s=base.max_delay_s,
            stable_s=base.stable_s,
        )
        self._relay_only = relay_only
        self._clock = clock
        self._send = send
        self._ice_servers = ice_servers
        self._cameras = list(cameras)
        self._audio = audio
        self._talkback = talkback
        self._greeting = greeting
        #: By identity: the connection each clinician has now (open or being negotiated),
        #: each present clinician's supervising task, and the clinician as last listed.
        self._connections: dict[str, _Connection] = {}
        self._links: dict[str, asyncio.Task[None]] = {}
        self._present: dict[str, Peer] = {}
        #: A peer id (the current one, or an earlier one of the same client) to its identity.
        self._identities: dict[str, str] = {}
        #: Connections being closed in the background (each bounded by CLOSE_DEADLINE_S).
        self._closing: set[asyncio.Task[None]] = set()
        self.opened_total = 0
        #: Connections given up (not opened in time, failed, heartbeat silent, refused).
        self.deaths = 0

    @property
    def open_peers(self) -> list[str]:
        """The current peer ids of the clinicians with an open connection."""
        return [c.peer.peer_id for c in self._connections.values() if c.opened.is_set()]

    def media_of(self, peer_id: str) -> MediaPeer | None:
        """The open connection to a clinician's current peer id, if any (for status pages,
        benchmarks and tests that read what is sent to one viewer)."""
        connection = self._connection_of(peer_id)
        return connection.media if connection is not None and connection.opened.is_set() else None

    # -- the consultation's membership -----------------------------------------------------

    async def sync(self, peers: list[Peer]) -> None:
        """The consultation's online peers (a ``joined``): connect to new clinicians, keep
        the media of those who are back under a new peer id, let go of the others."""
        present = {identity(p): p for p in peers if _is_clinician(p)}
        for key in list(self._present):
            if key not in present:
                await self._absent(key)
        for key, peer in present.items():
            self._listed(key, peer)

    async def peer_joined(self, peer: Peer) -> None:
        if _is_clinician(peer):
            self._listed(identity(peer), peer)

    async def peer_left(self, peer_id: str, reason: str = "disconnected") -> None:
        """A peer id left the room: ``reason`` as the server gives it. Only a socket that
        dropped (``disconnected``) may come back; a clinician who left, or a consultation
        that closed, ends the connection now."""
        key = self._identities.pop(peer_id, None)
        listed = None if key is None else self._present.get(key)
        # An old id of a client that is back under a new one already: nothing to do.
        if key is not None and listed is not None and listed.peer_id == peer_id:
            if reason == "disconnected":
                await self._absent(key)
            else:
                self._present.pop(key, None)
                await self._drop(key)

    async def left_consultation(self) -> None:
        self._present.clear()
        self._identities.clear()
        for key in list(self._links):
            await self._drop(key)

    def _listed(self, key: str, peer: Peer) -> None:
        known = self._present.get(key)
        if known is not None and known.peer_id != peer.peer_id:
            log.info("%s is back as %s; its media carries on", key, peer.peer_id)
        self._present[key] = peer
        self._identities[peer.peer_id] = key
        connection = self._connections.get(key)
        if connection is not None:
            connection.peer = peer
        if key not in self._links:
            task = spawn(self._link(key), f"peer-{key}")
            self._links[key] = task
            task.add_done_callback(functools.partial(self._link_ended, key))

    async def _absent(self, key: str) -> None:
        """``key`` is no longer listed: an open connection is kept until it dies (the
        clinician's socket may only have dropped), anything else is dropped now."""
        self._present.pop(key, None)
        connection = self._connections.get(key)
        if connection is None or not connection.opened.is_set():
            await self._drop(key)

    # -- negotiation ---------------------------------------------------------------------------

    def _connection_of(self, peer_id: str | None) -> _Connection | None:
        key = self._identities.get(peer_id or "")
        return None if key is None else self._connections.get(key)

    async def answer(self, message: Answer) -> None:
        connection = self._connection_of(message.sender)
        if connection is None:
            log.info("answer from %s, to whom no offer is open: ignored", message.sender)
            return
        try:
            await connection.media.accept_answer(message.sdp)
        except Exception as exc:  # any SDP from the network reaches aiortc's parser
            # A clinician's browser must not bring the bedside down: give this connection
            # up and offer a fresh one, as for a dead link.
            log.warning("answer from %s rejected (%s: %s)", message.sender, type(exc).__name__, exc)
            connection.abandoned.set()

    async def candidate(self, message: Candidate) -> None:
        connection = self._connection_of(message.sender)
        if connection is None:
            return
        try:
            await connection.media.add_candidate(
                message.candidate, message.sdp_mid, message.sdp_mline_index
            )
        except Exception as exc:  # as for answers: input from the network
            log.warning(
                "candidate from %s rejected (%s: %s)", message.sender, type(exc).__name__, exc
            )

    async def offer(self, message: Offer) -> None:
        # Clinicians answer; they do not offer to the gateway. Say so rather than hang.
        log.warning("offer from %s ignored: the gateway is the offering side", message.sender)

    # -- sending ---------------------------------------------------------------------------

    def send_waveform(self, packet: WirePacket) -> None:
        for connection in self._connections.values():
            if connection.opened.is_set():
                connection.media.send_waveform(packet)

    def send_event(self, text: str) -> None:
        for connection in self._connections.values():
            if connection.opened.is_set():
                connection.media.send_event(text)

    # -- links -------------------------------------------------------------------------------

    def _link_ended(self, key: str, task: asyncio.Task[None]) -> None:
        if self._links.get(key) is task:
            del self._links[key]
        if key not in self._present:  # gone: forget its peer ids too
            for peer_id in [p for p, k in self._identities.items() if k == key]:
                del self._identities[peer_id]

    async def _link(self, key: str) -> None:
        """Connect to clinician ``key`` again and again for as long as it is listed. Ends
        when the signaling socket is down (its next ``joined`` brings the clinician back)."""
        backoff = Backoff(self._policy)
        offered = True
        while key in self._present:
            offered_before, offered = offered, True
            try:
                offered = await self._attempt(key, backoff)
            except ConnectionError as exc:
                log.info("offer to %s not sent (%s); waiting for signaling", key, exc)
                return
            except Exception:  # a connection we could not even make: try again later
                log.exception("connection to %s could not be made", key)
            self.deaths += 1
            if key not in self._present:
                return
            if not offered:
                # The first of a run is worth a warning; an outage repeats it every few s.
                level = logging.WARNING if offered_before else logging.INFO
                log.log(level, "no ICE candidate for %s (TURN unreachable?); trying again", key)
            # Nothing to offer: the gather waited out the unreachable TURN server already,
            # so try again soon rather than back off (media back sooner after an outage).
            delay = backoff.failed(self._clock.monotonic(), offered=offered)
            log.info("offering again to %s in %.1f s", key, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, key: str, backoff: Backoff) -> bool:
        """One connection's life: made, offered, opened (or given up), then carried until
        it dies. Returns when it is given up (it is closed in the background): whether it
        was offered at all (False: gathering found no candidate)."""
        videos = [camera.track() for camera in self._cameras]
        audio = self._audio() if self._audio is not None else None
        media = MediaPeer(
            await self._ice_servers(),
            video=videos or None,
            audio=audio,
            receive_audio=self._talkback is not None,
            relay_only=self._relay_only,
        )
        connection = _Connection(self._present[key], media)
        self._connections[key] = connection
        try:
            media.channel.on("open", lambda: self._on_open(connection, backoff))
            if self._talkback is not None:
                connection.talkback_task = spawn(
                    self._play_talkback(connection, self._talkback), f"talkback-{key}"
                )
            sdp = await media.create_offer()
            # A camera encoded once for every viewer takes this viewer's key frame requests.
            bind_senders(media.pc)
            connection.mids = media.video_mids()
            if "a=candidate:" not in sdp:
                # No candidate at all (relay-only with the TURN server unreachable): this
                # connection can never open, so do not wait for its deadline.
                return False
            peer = self._present.get(key, connection.peer)  # its id may have changed meanwhile
            await self._send(Offer(to=peer.peer_id, sdp=sdp))
            log.info("offered to %s (%s, %s)", peer.peer_id, peer.name, peer.site)
            await self._carry(connection)
            return True
        finally:
            if self._connections.get(key) is connection:
                del self._connections[key]
            self._close_later(connection)

    async def _carry(self, connection: _Connection) -> None:
        """Wait for the connection to open (or be given up), then drain its events (the
        clinician's messages are passed on) until it dies."""
        media = connection.media
        peer_id = identity(connection.peer)
        waits = [
            spawn(connection.opened.wait(), f"opened-{peer_id}"),
            spawn(media.failed.wait(), f"failed-{peer_id}"),
            spawn(connection.abandoned.wait(), f"abandoned-{peer_id}"),
        ]
        try:
            async with asyncio.timeout(self._policy.open_timeout_s):
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            log.warning(
                "connection to %s did not open in %.0f s; offering again",
                peer_id,
                self._policy.open_timeout_s,
            )
            return
        finally:
            await cancel_and_wait(waits)
        if not connection.opened.is_set():
            why = "was refused" if connection.abandoned.is_set() else "failed"
            log.warning("connection to %s %s before opening; offering again", peer_id, why)
            return
        while not connection.abandoned.is_set():
            event = await media.events.get()
            if event.kind is PeerEventKind.DEAD:
                break
            if event.kind is PeerEventKind.MESSAGE and event.message is not None:
                self._message(connection.peer, event.message)
        log.warning("connection to %s died; offering again", peer_id)

    def _on_open(self, connection: _Connection, backoff: Backoff) -> None:
        connection.media.start()  # heartbeat from now on
        for text in self._greeting():
            connection.media.send_event(text)
        cameras = self._cameras_of(connection)
        if cameras is not None:
            connection.media.send_event(cameras)
        connection.opened.set()
        backoff.opened(self._clock.monotonic())
        self.opened_total += 1
        log.info("connected to %s (%s)", connection.peer.peer_id, connection.peer.name)

    def _cameras_of(self, connection: _Connection) -> str | None:
        """The ``cameras`` event of this connection (None: the bedside has no camera)."""
        described = []
        for camera, mid in zip(self._cameras, connection.mids, strict=False):
            if mid is None:
                continue
            size = camera.size()
            width, height = size if size is not None else (None, None)
            described.append(
                Camera(
                    name=camera.name, purpose=camera.purpose, mid=mid, width=width, height=height
                )
            )
        return encode_event(Cameras(cameras=described)) if described else None

    def _close_later(self, connection: _Connection) -> None:
        task = spawn(self._close(connection), f"close-{identity(connection.peer)}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, connection: _Connection) -> None:
        if connection.talkback_task is not None:
            await cancel_and_wait([connection.talkback_task])
        try:
            async with asyncio.timeout(CLOSE_DEADLINE_S):
                await connection.media.close()
        except TimeoutError:
            # The TURN server did not confirm the release (a dead path): its allocation
            # times out on its own; nothing of ours is left waiting.
            log.info("connection to %s closed without its TURN release", connection.label)

    def _message(self, peer: Peer, message: EventMessage) -> None:
        if self._on_message is None:
            log.info("message from %s ignored: %r", peer.peer_id, message)
            return
        try:
            self._on_message(peer, message)
        except Exception:  # one bad message must not end this connection's supervision
            log.exception("message from %s failed: %r", peer.peer_id, message)

    async def _play_talkback(self, connection: _Connection, talkback: TalkBack) -> None:
        """The clinician's decoded sound to the bedside's talk-back (which decides whether
        it is talking, and who has the floor)."""
        failed = 0
        try:
            while True:
                frame = await connection.media.audio_frames.get()
                try:
                    talkback.feed(connection.label, frame)
                except Exception:  # a frame we cannot take: skipped, the first said
                    failed += 1
                    if failed == 1:
                        log.exception("talk-back from %s: a frame failed", connection.label)
        finally:
            talkback.forget(connection.label)

    async def _drop(self, key: str) -> None:
        task = self._links.pop(key, None)
        if task is not None:
            await cancel_and_wait([task])

    async def close(self) -> None:
        """Drop every link, and wait for the closings (each bounded by its deadline)."""
        await self.left_consultation()
        if self._closing:
            await asyncio.wait(list(self._closing))


def _is_clinician(peer: Peer) -> bool:
    return peer.kind is PrincipalKind.USER and peer.role.value in ("doctor", "technician")
