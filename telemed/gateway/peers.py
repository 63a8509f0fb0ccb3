"""The gateway's WebRTC connections: one MediaPeer per clinician in the consultation.

The gateway is the offering side: it has the media. It offers to every clinician peer it
learns of (the ``joined`` peer list, ``peer-joined``), applies their answers and trickled
candidates, and closes a connection when its clinician leaves or its heartbeat dies. After a
death it offers again while the clinician is still in the consultation: aiortc has no ICE
restart, so a new connection is the way back.

Each connection has one supervising task, owned here: :meth:`PeerSet.close` cancels and
awaits them all. Dead connections are replaced by :meth:`PeerSet.run`, which the gateway runs
in a task it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack, RTCIceServer

from media.audio.talkback import TalkBack
from media.rtc.events import EventMessage
from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.wire import WirePacket
from runtime.tasks import cancel_and_wait, spawn
from signaling.schema import Answer, Candidate, ClientMessage, Offer, Peer, PrincipalKind

log = logging.getLogger(__name__)

#: How long to wait before offering again to a clinician whose connection died.
REOFFER_DELAY_S = 1.0
#: An offer whose connection has not opened by then is given up and made again: the answer
#: was lost, or ICE found no path (the heartbeat starts only once the channel opens).
OPEN_TIMEOUT_S = 20.0

Send = Callable[[ClientMessage], Awaitable[None]]


@dataclass
class _Connection:
    peer: Peer
    media: MediaPeer
    task: asyncio.Task[None] | None = None
    #: Takes the clinician's talk-back to the bedside sink (when there is one).
    talkback_task: asyncio.Task[None] | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def label(self) -> str:
        return f"{self.peer.name} ({self.peer.site}, {self.peer.peer_id})"


class PeerSet:
    """``send`` puts a message on the signaling socket; ``video`` makes a new video track for
    each connection (None: no camera), ``audio`` a new audio track (None: no bedside sound);
    ``talkback`` plays what clinicians say (None: the connection does not ask for their
    sound); ``greeting`` gives the messages a newly opened connection receives first
    (channel metadata, the latest numerics)."""

    def __init__(
        self,
        send: Send,
        ice_servers: Callable[[], Awaitable[list[RTCIceServer]]],
        video: Callable[[], MediaStreamTrack] | None,
        greeting: Callable[[], list[str]],
        open_timeout_s: float = OPEN_TIMEOUT_S,
        *,
        audio: Callable[[], MediaStreamTrack] | None = None,
        talkback: TalkBack | None = None,
        on_message: Callable[[Peer, EventMessage], None] | None = None,
    ) -> None:
        """``on_message``: what a clinician's connection sends on the events channel (the
        heartbeat aside), with the clinician it came from."""
        self._on_message = on_message
        self._open_timeout_s = open_timeout_s
        self._send = send
        self._ice_servers = ice_servers
        self._video = video
        self._audio = audio
        self._talkback = talkback
        self._greeting = greeting
        self._connections: dict[str, _Connection] = {}
        self._present: dict[str, Peer] = {}
        self._dead: asyncio.Queue[_Connection] = asyncio.Queue(64)
        self.opened_total = 0
        self.deaths = 0

    @property
    def open_peers(self) -> list[str]:
        return [pid for pid, c in self._connections.items() if c.opened.is_set()]

    # -- the consultation's membership -----------------------------------------------------

    async def sync(self, peers: list[Peer]) -> None:
        """The consultation's online peers (a ``joined``): connect to new clinicians, drop
        connections to peers no longer there (their ids change when they reconnect)."""
        self._present = {p.peer_id: p for p in peers if _is_clinician(p)}
        for peer_id in list(self._connections):
            if peer_id not in self._present:
                await self._drop(peer_id)
        for peer in self._present.values():
            if peer.peer_id not in self._connections:
                await self._connect(peer)

    async def peer_joined(self, peer: Peer) -> None:
        if _is_clinician(peer):
            self._present[peer.peer_id] = peer
            if peer.peer_id not in self._connections:
                await self._connect(peer)

    async def peer_left(self, peer_id: str) -> None:
        self._present.pop(peer_id, None)
        await self._drop(peer_id)

    async def left_consultation(self) -> None:
        self._present.clear()
        for peer_id in list(self._connections):
            await self._drop(peer_id)

    # -- negotiation ---------------------------------------------------------------------------

    async def answer(self, message: Answer) -> None:
        connection = self._connections.get(message.sender or "")
        if connection is None:
            log.info("answer from %s, to whom no offer is open: ignored", message.sender)
            return
        try:
            await connection.media.accept_answer(message.sdp)
        except Exception as exc:  # any SDP from the network reaches aiortc's parser
            # A clinician's browser must not bring the bedside down: drop this connection and
            # offer a fresh one, as for a dead link.
            log.warning("answer from %s rejected (%s: %s)", message.sender, type(exc).__name__, exc)
            with contextlib.suppress(asyncio.QueueFull):
                self._dead.put_nowait(connection)

    async def candidate(self, message: Candidate) -> None:
        connection = self._connections.get(message.sender or "")
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

    # -- connections -------------------------------------------------------------------------

    async def _connect(self, peer: Peer) -> None:
        video = self._video() if self._video is not None else None
        audio = self._audio() if self._audio is not None else None
        media = MediaPeer(
            await self._ice_servers(),
            video=video,
            audio=audio,
            receive_audio=self._talkback is not None,
        )
        connection = _Connection(peer, media)
        self._connections[peer.peer_id] = connection
        media.channel.on("open", lambda: self._on_open(connection))
        connection.task = spawn(self._supervise(connection), f"peer-{peer.peer_id}")
        if self._talkback is not None:
            connection.talkback_task = spawn(
                self._play_talkback(connection, self._talkback), f"talkback-{peer.peer_id}"
            )
        sdp = await media.create_offer()
        try:
            await self._send(Offer(to=peer.peer_id, sdp=sdp))
        except ConnectionError as exc:
            # Signaling is down; after it reconnects, its ``joined`` brings the peer back.
            log.info("offer to %s not sent (%s); waiting for signaling", peer.peer_id, exc)
            await self._drop(peer.peer_id)
            return
        log.info("offered to %s (%s, %s)", peer.peer_id, peer.name, peer.site)

    def _on_open(self, connection: _Connection) -> None:
        connection.media.start()  # heartbeat from now on
        for text in self._greeting():
            connection.media.send_event(text)
        connection.opened.set()
        self.opened_total += 1
        log.info("connected to %s (%s)", connection.peer.peer_id, connection.peer.name)

    async def _supervise(self, connection: _Connection) -> None:
        """Wait for the connection to open (or give it up), then drain the peer's events
        (doctors' messages are logged); on death, reconnect."""
        try:
            async with asyncio.timeout(self._open_timeout_s):
                await connection.opened.wait()
        except TimeoutError:
            log.warning(
                "connection to %s did not open in %.0f s; offering again",
                connection.peer.peer_id,
                self._open_timeout_s,
            )
        else:
            while True:
                event = await connection.media.events.get()
                if event.kind is PeerEventKind.DEAD:
                    break
                if event.kind is PeerEventKind.MESSAGE and event.message is not None:
                    self._message(connection.peer, event.message)
            log.warning("connection to %s died; offering again", connection.peer.peer_id)
        self.deaths += 1
        with contextlib.suppress(asyncio.QueueFull):  # full: a restart of it is queued
            self._dead.put_nowait(connection)

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

    async def run(self) -> None:
        """Replace dead connections (run it in a task the gateway owns). A failure to replace
        one is logged and does not stop the others being replaced."""
        while True:
            dead = await self._dead.get()
            try:
                await self._replace(dead)
            except Exception:
                log.exception("could not offer again to %s", dead.peer.peer_id)

    async def _replace(self, dead: _Connection) -> None:
        peer_id = dead.peer.peer_id
        if self._connections.get(peer_id) is not dead:
            return  # already dropped (the clinician left)
        await self._drop(peer_id)
        await asyncio.sleep(REOFFER_DELAY_S)
        peer = self._present.get(peer_id)
        if peer is not None and peer_id not in self._connections:
            await self._connect(peer)

    async def _drop(self, peer_id: str) -> None:
        connection = self._connections.pop(peer_id, None)
        if connection is None:
            return
        tasks = [t for t in (connection.task, connection.talkback_task) if t is not None]
        await cancel_and_wait(tasks)
        await connection.media.close()

    async def close(self) -> None:
        await self.left_consultation()


def _is_clinician(peer: Peer) -> bool:
    return peer.kind is PrincipalKind.USER and peer.role.value in ("doctor", "technician")
