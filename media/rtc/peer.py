"""One aiortc peer connection carrying what the other site sees, and what it owns.

Two data channels are negotiated out of band (fixed ids, so both sides have them before any
``datachannel`` event): ``waveforms`` unordered with ``maxRetransmits=0`` (a late sample is
worthless), ``events`` reliable and ordered (numerics, alarms, device states, the heartbeat). ICE
servers come from the caller only: never aiortc's default public STUN server.

Video: one transceiver per track sent, in the order given (the first sendrecv, as browsers
have always been offered here; the others sendonly), each adapted to the path on its own
(:mod:`media.rtc.adapt`; a diagnostic track with its higher ceiling); :meth:`video_mids`
says which media id carries which track once the offer is made. A receiver reads every
video track it is sent: the first into :attr:`video_frames`, each by its media id into
:attr:`video_frames_by_mid`. Every video packet sent carries the RTP playout-delay
extension (:mod:`media.rtc.playout_delay`): min = max = 0, render on arrival, until
:meth:`set_playout_delay` raises a track's maximum for a viewer whose path needs a jitter
buffer. The ``video`` event tells the viewer what is sent: the adaptation's rung, the shared
encode's layer and the playout delay in force.

Audio (optional) has one transceiver, whose direction says what each side does: sendrecv
when this side sends a track and takes the other's (the bedside's sound and the doctor's
talk-back), sendonly or recvonly for one of them, no audio m-line for neither. A track whose
frames are already encoded names its codec (``encoded_as``); the transceiver then offers
that codec alone, so the other side cannot pick one the packets are not in.

The peer owns one task (started by :meth:`start`, cancelled and awaited by :meth:`close`)
that sends heartbeats, declares the peer dead after silence, and releases reordered
waveform packets. Everything the caller needs to know arrives on :attr:`events`, a bounded
queue (oldest dropped when nobody reads). Messages on the events channel are read by type
(:mod:`media.rtc.events`); one that is not ours is counted and logged, never passed on.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from media.rtc.adapt import VideoAdapter
from media.rtc.bandwidth import apply_target, follow_path
from media.rtc.events import (
    MAX_PLAYOUT_DELAY_MS,
    EventError,
    EventMessage,
    VideoState,
    encode_event,
    parse_event,
)
from media.rtc.heartbeat import Heartbeat
from media.rtc.jitter import MarkerJitterBuffer, use_marker_release
from media.rtc.playout_delay import MAX_MS as EXTENSION_MAX_MS
from media.rtc.playout_delay import PlayoutDelayExtensionsMap, in_units, use_playout_delay
from media.rtc.reorder import Reorderer
from media.rtc.shared_encoder import LayerTrack
from media.rtc.tracks import _CaptureClockTrack
from media.rtc.wire import WireError, WirePacket, decode, encode
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.queues import DropOldestQueue
from runtime.tasks import spawn

log = logging.getLogger(__name__)
WAVEFORM_CHANNEL_ID = 1
EVENT_CHANNEL_ID = 2
_PUMP_S = 0.05
#: How often the video sender's byte count is read for the adaptation.
_STATS_S = 1.0
#: Decoded audio frames (20 ms each) kept for a reader that falls behind: 0.5 s.
AUDIO_QUEUE_FRAMES = 25
#: What may wait in aiortc's send buffer before packets are dropped: about 2 s of a 500 Hz
#: ECG and a 125 Hz pleth.
WAVEFORM_BUFFER_BYTES = 64 * 1024
EVENT_BUFFER_BYTES = 256 * 1024


class PeerEventKind(enum.StrEnum):
    WAVEFORM = "waveform"
    MESSAGE = "message"
    DEAD = "dead"


@dataclass(frozen=True)
class PeerEvent:
    kind: PeerEventKind
    packet: WirePacket | None = None
    message: EventMessage | None = None


class MediaPeer:
    def __init__(
        self,
        ice_servers: list[RTCIceServer],
        heartbeat: Heartbeat | None = None,
        reorderer: Reorderer | None = None,
        queue_size: int = 1024,
        video: MediaStreamTrack | Sequence[MediaStreamTrack] | None = None,
        receive_video: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        audio: MediaStreamTrack | None = None,
        receive_audio: bool = False,
        relay_only: bool = False,
        adapt_video: bool = True,
    ) -> None:
        """``video``: a track to send (e.g. a PipelineVideoTrack), or several (one camera
        each, one transceiver each); ``receive_video``: ask
        for the other side's video, delivered to :attr:`video_frames` (newest frame only).
        ``audio``: a track to send (e.g. from an AudioFeed); ``receive_audio``: ask for the
        other side's sound, delivered to :attr:`audio_frames` (every frame, bounded).
        ``clock``: monotonic time for the heartbeat, wall time for the packets' times.
        ``relay_only``: gather and use TURN relay candidates only (a site whose network
        allows nothing else, and the WAN tests, which force every packet through a relay).
        ``adapt_video``: fit the video sent to the path (:mod:`media.rtc.adapt`): its
        resolution, frame rate and bitrate follow the receiver's estimate and losses, and
        the viewer is told (a ``video`` event) each time that changes."""
        self._clock = clock
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=ice_servers, iceTransportPolicy=policy)
        )
        videos = [] if video is None else [video] if isinstance(video, MediaStreamTrack) else video
        self._videos: list[MediaStreamTrack] = list(videos)
        # Transceivers are made when this side offers, or joined to the offer's m-lines
        # when it answers (a transceiver no m-line matched breaks aiortc's answer). In order:
        # the first video, the audio, then any further video (kind, track, receive).
        self._media: list[tuple[str, MediaStreamTrack | None, bool]] = [
            ("video", self._videos[0] if self._videos else None, receive_video),
            ("audio", audio, receive_audio),
            *(("video", track, False) for track in self._videos[1:]),
        ]
        self._media_added = False
        #: The transceiver of each video track sent, in the order the tracks were given.
        self._video_transceivers: dict[int, RTCRtpTransceiver] = {}
        #: The adaptation of each video track sent (none: no adaptable video, or not asked
        #: for), with its sender; the first is the one the viewer is told of.
        self.video_adapters: list[tuple[VideoAdapter, RTCRtpSender]] = []
        self._adapt_video = adapt_video
        self._video_told: tuple[str, int | None, float | None, str | None, int] | None = None
        #: The playout-delay extension written on each video track's packets, by the
        #: track's position (media.rtc.playout_delay): min = max = 0 until the viewer asks.
        self._playout: dict[int, PlayoutDelayExtensionsMap] = {}
        self._stats_due = 0.0
        #: The newest decoded frame from the other side (older ones are dropped, counted):
        #: its first video track's.
        self.video_frames: DropOldestQueue[av.VideoFrame] = DropOldestQueue(1)
        #: The newest decoded frame of each video track the other side sends, by media id.
        self.video_frames_by_mid: dict[str, DropOldestQueue[av.VideoFrame]] = {}
        #: Decoded audio from the other side, in order; the oldest dropped past 0.5 s.
        self.audio_frames: DropOldestQueue[av.AudioFrame] = DropOldestQueue(AUDIO_QUEUE_FRAMES)
        self.jitter_buffers: list[MarkerJitterBuffer] = []
        self._marked: list[object] = []
        self._video_tasks: list[asyncio.Task[None]] = []
        self._audio_task: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)
        self.heartbeat = heartbeat or Heartbeat()
        self.reorderer = reorderer or Reorderer()
        self.events: DropOldestQueue[PeerEvent] = DropOldestQueue(queue_size)
        self.bad_packets = 0
        #: Messages on the events channel that were not ours (refused, counted, logged).
        self.bad_events = 0
        #: Outgoing packets and messages dropped because the link was backed up.
        self.waveforms_dropped = 0
        self.events_dropped = 0
        self.waveforms = self.pc.createDataChannel(
            "waveforms", ordered=False, maxRetransmits=0, negotiated=True, id=WAVEFORM_CHANNEL_ID
        )
        self.channel = self.pc.createDataChannel("events", negotiated=True, id=EVENT_CHANNEL_ID)
        self.waveforms.on("message", self._on_waveform)
        self.channel.on("message", self._on_event)
        self._task: asyncio.Task[None] | None = None
        self._declared_dead = False
        #: Set when aiortc gives the connection up (``failed``) or it is closed: the caller
        #: need not wait for an open that will never come, nor for the heartbeat.
        self.failed = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_state)

    def _add_media_to_offer(self) -> None:
        """Offering: one transceiver per kind that is sent or asked for; sendrecv, sendonly
        or recvonly by what this side does, none at all for neither."""
        if self._media_added:
            return
        self._media_added = True
        for position, (kind, track, receive) in enumerate(self._media):
            if track is not None:
                # The first video keeps the sendrecv that browsers have always been offered
                # here; further cameras are sent only.
                both = receive or (kind == "video" and position == 0)
                transceiver = self.pc.addTransceiver(
                    track, direction="sendrecv" if both else "sendonly"
                )
                self._joined(transceiver, track)
            elif receive:
                self.pc.addTransceiver(kind, direction="recvonly")

    def _add_media_to_answer(self) -> None:
        """Answering: aiortc made a recvonly transceiver for each m-line offered; a track of
        ours joins the one of its kind (sendrecv, or sendonly when the other side's media
        is not asked for). What the offer has no m-line for is not sent. Media the other
        side sends is received whether asked for or not (as aiortc does)."""
        if self._media_added:
            return
        self._media_added = True
        for kind, track, receive in self._media:
            if track is None:
                continue
            transceiver = next(
                (t for t in self.pc.getTransceivers() if t.kind == kind and t.sender.track is None),
                None,
            )
            if transceiver is None:
                log.info("the offer has no %s m-line: our %s is not sent", kind, kind)
                continue
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv" if receive else "sendonly"
            self._joined(transceiver, track)

    def _joined(self, transceiver: RTCRtpTransceiver, track: MediaStreamTrack) -> None:
        _only_the_codec_of(transceiver, track)
        if track.kind == "video":
            position = next(k for k, v in enumerate(self._videos) if v is track)
            # Render on arrival until the viewer's path asks for a buffer (set_playout_delay).
            self._playout[position] = use_playout_delay(transceiver.sender)
            self._video_transceivers[position] = transceiver
            self._adapt(transceiver.sender, track)

    def _adapt(self, sender: RTCRtpSender, track: MediaStreamTrack) -> None:
        """Fit a video track of ours to the path, when it can be (a frame track)."""
        if self._adapt_video and isinstance(track, _CaptureClockTrack):
            adapter = VideoAdapter.diagnostic() if track.diagnostic else VideoAdapter()
            track.adapter = adapter
            self.video_adapters.append((adapter, sender))
            follow_path(sender, adapter, self._clock.monotonic, on_rtcp=self._transport_alive)

    @property
    def video_adapter(self) -> VideoAdapter | None:
        """The first video track's adaptation (the one the viewer is told of)."""
        return self.video_adapters[0][0] if self.video_adapters else None

    def video_mids(self) -> list[str | None]:
        """The media id of each video track sent, in the order given (None for a track
        that is not sent, or before the offer or answer is made)."""
        transceivers = self._video_transceivers
        return [
            transceivers[k].mid if k in transceivers else None for k in range(len(self._videos))
        ]

    def set_playout_delay(self, max_ms: int, positions: Sequence[int] | None = None) -> int:
        """Write playout delay min 0, max ``max_ms`` (rounded up to the extension's 10 ms)
        on the packets of the video tracks at ``positions`` (in the order the tracks were
        given; None: every video track sent) from now on, and tell the viewer in the next
        ``video`` event. Returns the maximum written. Raises ValueError for ``max_ms``
        outside 0..40950 or a position with no video track sent."""
        if not 0 <= max_ms <= EXTENSION_MAX_MS:
            raise ValueError(f"playout delay {max_ms} ms out of range")
        chosen = list(self._playout) if positions is None else list(positions)
        missing = [k for k in chosen if k not in self._playout]
        if missing:
            raise ValueError(f"no video track sent at position {missing[0]}")
        written = in_units(max_ms)
        for position in chosen:
            self._playout[position].set_delay(0, written)
        return written

    @property
    def playout_delay_ms(self) -> int:
        """The largest playout-delay maximum written on any of our video tracks (0: render
        on arrival, or no video sent)."""
        return max((m.max_ms for m in self._playout.values()), default=0)

    def playout_delay_of(self, position: int) -> int | None:
        """The playout-delay maximum written on the video track at ``position`` (None: no
        video track sent there)."""
        extensions = self._playout.get(position)
        return None if extensions is None else extensions.max_ms

    @property
    def video_layer(self) -> str | None:
        """The quality layer of the shared encode the first video track is sending now
        (``"720p"``): during a switch, the old one until the new one's key frame; None
        while paused, or for a track encoded per connection."""
        track = self._videos[0] if self._videos else None
        if isinstance(track, LayerTrack) and track.layer is not None:
            return track.layer.spec.name
        return None

    def _transport_alive(self) -> None:
        """Media or RTCP arrived: the path delivers, even if the events channel's heartbeat
        is stuck behind a congested queue (SCTP retransmits in order). A peer is declared
        dead only when nothing at all arrives: rebuilding a congested link only adds an
        offer and a key frame to the congestion (the link was declared dead on a 256 kbit/s
        uplink, and rebuilt, four times a minute)."""
        self.heartbeat.heard(self._clock.monotonic())

    # -- negotiation (the SDP travels through signaling) -----------------------------------

    async def create_offer(self) -> str:
        self._add_media_to_offer()
        self._release_video_on_marker()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_offer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        self._add_media_to_answer()
        self._release_video_on_marker()  # before the answer: no media can have arrived
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def _release_video_on_marker(self) -> None:
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.kind == "video" and receiver not in self._marked:
                self.jitter_buffers.append(use_marker_release(receiver))
                self._marked.append(receiver)

    @property
    def video_dropped(self) -> int:
        """Decoded frames replaced by a newer one before anybody took them."""
        return self.video_frames.dropped

    @property
    def dropped_events(self) -> int:
        """Events dropped because nobody read :attr:`events` in time."""
        return self.events.dropped

    @property
    def audio_dropped(self) -> int:
        """Decoded audio frames dropped because nobody took them in time."""
        return self.audio_frames.dropped

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            # Every video track is read: aiortc queues what is not read, unbounded.
            mid = next(
                (t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), None
            )
            frames: DropOldestQueue[av.VideoFrame] = DropOldestQueue(1)
            self.video_frames_by_mid[mid or f"track-{len(self._video_tasks)}"] = frames
            first = not self._video_tasks
            self._video_tasks.append(spawn(self._read_video(track, frames, first), "video-in"))
        elif track.kind == "audio" and self._audio_task is None:
            # Read even when nobody asked for it: aiortc queues what is not read, unbounded.
            self._audio_task = spawn(self._read_audio(track), "audio-in")

    async def _read_video(
        self, track: MediaStreamTrack, frames: DropOldestQueue[av.VideoFrame], first: bool
    ) -> None:
        try:
            while True:
                frame: av.VideoFrame = await track.recv()  # type: ignore[assignment]
                frames.put_latest(frame)
                if first:
                    self.video_frames.put_latest(frame)
                self._transport_alive()
        except MediaStreamError:
            pass  # the other side stopped sending

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                self.audio_frames.put_latest(await track.recv())  # type: ignore[arg-type]
        except MediaStreamError:
            pass  # the other side stopped sending

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def add_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A candidate the other side trickled (a browser does; aiortc puts all of its own
        in the SDP). An empty string is end-of-candidates, which aiortc needs no word of.

        Raises ValueError for a line that is not an ICE candidate."""
        line = candidate.strip().removeprefix("a=").removeprefix("candidate:")
        if not line:
            return
        try:
            parsed = candidate_from_sdp(line)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not an ICE candidate: {candidate[:80]!r}") from exc
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat and release loop (call once the connection is set up)."""
        if self._task is None:
            self.heartbeat.start(self._clock.monotonic())
            self._task = spawn(self._pump(), "media-peer")

    async def close(self) -> None:
        """Stop the peer's tasks (awaited) and close the connection."""
        tasks = [t for t in (self._task, *self._video_tasks, self._audio_task) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.pc.close()

    def send_waveform(self, packet: WirePacket) -> bool:
        """Send if the channel is open and not backed up; False (nothing queued) otherwise.

        aiortc queues without limit when the link stalls; past ``WAVEFORM_BUFFER_BYTES`` a
        packet is dropped (and counted) instead: a late sample is worthless, and an unbounded
        queue on a live path only adds delay."""
        if self.waveforms.readyState != "open":
            return False
        if self.waveforms.bufferedAmount > WAVEFORM_BUFFER_BYTES:
            self.waveforms_dropped += 1
            return False
        self.waveforms.send(encode(packet))
        return True

    def send_event(self, message: EventMessage | str) -> bool:
        """Send one events-channel message (a model, or its text from
        :func:`~media.rtc.events.encode_event` when it goes to many peers). As
        :meth:`send_waveform`, bounded by ``EVENT_BUFFER_BYTES`` (numerics are resent each
        second, so dropping one under a stall loses nothing for long)."""
        if self.channel.readyState != "open":
            return False
        if self.channel.bufferedAmount > EVENT_BUFFER_BYTES:
            self.events_dropped += 1
            return False
        self.channel.send(message if isinstance(message, str) else encode_event(message))
        return True

    def _put(self, event: PeerEvent) -> None:
        self.events.put_latest(event)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed") and not self.failed.is_set():
            log.info("peer connection %s", state)
            self.failed.set()
            if not self._declared_dead:
                self._declared_dead = True
                self._put(PeerEvent(PeerEventKind.DEAD))

    def _on_waveform(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self.bad_packets += 1
            return
        try:
            packet = decode(message)
        except WireError as exc:
            self.bad_packets += 1
            log.info("bad waveform packet: %s", exc)
            return
        self.heartbeat.heard(self._clock.monotonic())
        now = self._clock.time()  # the packets' times are wall-clock times
        self.reorderer.push(packet, now)
        # In-order packets go out at once; the pump only declares gaps after waiting.
        for ready in self.reorderer.pop(now):
            self._put(PeerEvent(PeerEventKind.WAVEFORM, packet=ready))

    def _on_event(self, data: bytes | str) -> None:
        now = self._clock.monotonic()
        self.heartbeat.heard(now)  # even a message we refuse is a sign of life
        try:
            message = parse_event(data)
        except EventError as exc:
            self.bad_events += 1
            log.info("events channel: refused a message (%s)", exc)
            return
        reply = self.heartbeat.received(message, now)
        if reply is not None:
            self.send_event(reply)
        elif message.type not in ("hb", "hb-ack"):
            self._put(PeerEvent(PeerEventKind.MESSAGE, message=message))

    async def _pump(self) -> None:
        while True:
            now = self._clock.monotonic()
            if self.channel.readyState == "open":
                for ping in self.heartbeat.tick(now):
                    self.send_event(ping)
            if self.heartbeat.dead(now) and not self._declared_dead:
                self._declared_dead = True
                self._put(PeerEvent(PeerEventKind.DEAD))
            for packet in self.reorderer.pop(self._clock.time()):
                self._put(PeerEvent(PeerEventKind.WAVEFORM, packet=packet))
            if self.video_adapters:
                await self._follow_video(now)
            await asyncio.sleep(_PUMP_S)

    async def _follow_video(self, now: float) -> None:
        """Feed each adapter what it learns without RTCP (time, the bytes sent), keep each
        encoder on its target, and tell the viewer when what the first track sends changes
        (the ``video`` event names no camera: the room's picture is what it describes; its
        layer is the first track's, its playout delay the largest on any track)."""
        stats = now >= self._stats_due
        if stats:
            self._stats_due = now + _STATS_S
        for adapter, sender in self.video_adapters:
            if stats:
                sent = _bytes_sent(await sender.getStats())
                if sent is not None:
                    adapter.on_sent(sent, now)
            adapter.tick(now)
            apply_target(sender, adapter)
        adapter = self.video_adapters[0][0]
        rung = adapter.rung
        layer, delay = self.video_layer, self.playout_delay_ms
        told = (str(adapter.mode), rung.height or None, rung.fps or None, layer, delay)
        if told != self._video_told and self.channel.readyState == "open":
            height = None
            if rung.height:
                height = min(rung.height, adapter.source_height or rung.height)
            state = VideoState(
                mode=adapter.mode.value,
                height=height,
                fps=rung.fps or None,
                estimate_bps=adapter.estimate_bps if adapter.congested(now) else None,
                time=self._clock.time(),
                layer=layer,
                playout_delay_ms=min(delay, MAX_PLAYOUT_DELAY_MS),
            )
            if self.send_event(state):
                self._video_told = told
                log.info(
                    "video to this viewer: %s (%s, layer %s, playout delay max %d ms)",
                    adapter.mode,
                    rung.name,
                    layer or "-",
                    delay,
                )


def _bytes_sent(report: object) -> int | None:
    """The outbound RTP byte count in a sender's statistics (None before any). (The round
    trip comes from each receiver report itself: media.rtc.bandwidth.)"""
    for stats in report.values() if isinstance(report, dict) else ():
        if getattr(stats, "type", None) == "outbound-rtp":
            sent = getattr(stats, "bytesSent", None)
            return int(sent) if isinstance(sent, int) else None
    return None


def _only_the_codec_of(transceiver: RTCRtpTransceiver, track: MediaStreamTrack) -> None:
    """A track of encoded packets names their codec (``encoded_as``): offer or accept that
    codec alone, so the other side cannot pick one the packets are not in."""
    mime = getattr(track, "encoded_as", None)
    if mime is not None:
        codecs = RTCRtpSender.getCapabilities(track.kind).codecs
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType == mime])
