"""One encode for every viewer: each camera is encoded once per quality layer, and every
viewer of a layer is sent the same encoded frames.

aiortc's ``RTCRtpSender`` encodes what its track gives it, once per connection: at 720p30
that cost about a third of a core per viewer. A track whose ``recv`` returns an ``av.Packet``
is only packetised (the sender calls its codec's ``pack`` instead of ``encode``), so here:

- :class:`SharedFrames` is the camera's :class:`~media.rtc.tracks.ProcessedFrames` (capture
  and processing once) with a :class:`Layer` per quality: the source's size and, for a
  source of 360 lines or more, half of it (720p and 360p). Its :meth:`SharedFrames.run` runs
  the processing and every layer's encoder, and ends when the source ends.
- A layer encodes only while it has viewers, one frame at a time, in a one-thread executor
  of its own (:class:`~media.video.encoder.PictureEncoder`: the codec never runs on the
  event loop), and hands each picture to its viewers' tracks.
- Each viewer's :class:`LayerTrack` keeps at most :data:`QUEUE_FRAMES` pictures. A viewer
  whose sender does not take them (a stalled connection) has its queue emptied, and skips
  delta frames until the next key frame (a delta frame without its reference is garbage):
  the others never wait for it. It asks for that key frame when it reads again.
- Key frames: a viewer's attaching, a switch of layer, and a picture loss indication or FIR
  from any viewer (aiortc's sender would set its own encoder's flag: the request is routed
  to the layer instead, :func:`bind_senders`) each *request* one; requests are coalesced
  into one key frame, at most one per :data:`MIN_KEYFRAME_GAP_S` (a viewer that keeps
  losing must not turn every frame of every viewer into a key frame). A new viewer is sent
  nothing until that key frame: its first picture decodes.
- Adaptation: the viewer's :class:`~media.rtc.adapt.VideoAdapter` (set by the peer, fed
  from the viewer's RTCP as before) picks the *layer*: its rung's height at or above the
  source's takes the full layer, any lower rung the half one, a paused rung none. A switch
  goes on sending the old layer until the new one's key frame is there.
- A layer's bitrate follows the best viewer on it: the highest target among its viewers'
  adapters, held within the layer's floor and ceiling (the full layer's from its rung of
  the ladder; the half layer's from the adapter's least target up to its rung's cap). A
  viewer whose path cannot carry the full layer's floor is moved to the half layer by its
  own adapter, so one poor link never lowers the others' picture. A new bitrate restarts
  libvpx (a key frame), so it changes only by :data:`~media.rtc.adapt.TARGET_STEP_DOWN`
  or :data:`~media.rtc.adapt.TARGET_STEP_UP` and at most every :data:`RATE_CHANGE_S`.

What a layer does not do: thin frames for a viewer on a lower frame rate rung (VP8 delta
frames cannot be dropped one by one without temporal layers); such a viewer gets the half
layer at the source's frame rate and a bitrate its path takes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from numpy.typing import NDArray

from media.rtc.adapt import (
    DIAGNOSTIC_LADDER,
    LADDER,
    MIN_TARGET_BPS,
    TARGET_STEP_DOWN,
    TARGET_STEP_UP,
    Rung,
)
from media.rtc.bandwidth import route_keyframe_requests
from media.rtc.tracks import CLOCK_RATE, TIME_BASE, ProcessedFrames, _CaptureClockTrack
from media.video.capture import CapturedFrame, LatestFrame
from media.video.encoder import MIME, REALTIME, EncoderSettings, Picture, PictureEncoder
from media.video.processing import FrameProcessor

log = logging.getLogger(__name__)

#: Pictures a viewer's track holds for its sender: about a quarter of a second at 30 fps.
QUEUE_FRAMES = 8
#: Key frame requests coalesce into at most one key frame this often.
MIN_KEYFRAME_GAP_S = 0.2
#: A layer's bitrate changes at most this often (each change is a key frame).
RATE_CHANGE_S = 2.0
#: How often a waiting track looks at its adapter again (a paused viewer's probe).
_RECHECK_S = 0.25
#: Pictures' timings a layer keeps (:attr:`Layer.timings`): about 30 s of one viewer.
TIMINGS = 1024


def _timed_encode(
    encoder: PictureEncoder,
    wall: Callable[[], float],
    image: NDArray[np.uint8],
    bitrate: int,
    keyframe: bool,
) -> tuple[Picture | None, float, float]:
    """``encoder.encode`` with the wall-clock times it began and ended (in its thread)."""
    start = wall()
    picture = encoder.encode(image, bitrate, keyframe)
    return picture, start, wall()


@dataclass(frozen=True)
class LayerSpec:
    """A quality layer: its ``name``, picture size and bitrate bounds (bits per second)."""

    name: str
    width: int
    height: int
    min_bps: int
    max_bps: int


def _rung_at(ladder: tuple[Rung, ...], height: int) -> tuple[Rung, Rung | None]:
    """The ladder's rung at or under ``height``, and the one above it (None at the top)."""
    rungs = [r for r in ladder if r.height > 0]
    for k, rung in enumerate(rungs):
        if rung.height <= height:
            return rung, rungs[k - 1] if k > 0 else None
    return rungs[-1], rungs[-2] if len(rungs) > 1 else None


def layers_for(width: int, height: int, ladder: tuple[Rung, ...] = LADDER) -> tuple[LayerSpec, ...]:
    """The layers of a ``width`` x ``height`` source: the source itself, and half of it
    when the source has 360 lines or more."""
    rung, above = _rung_at(ladder, height)
    # As the adapter's top rung: a source between two of the ladder's heights, or on a rung
    # of a lower frame rate than the ladder's full one, gets the cap of the rung above.
    lifted = above is not None and (height > rung.height or rung.fps < above.fps)
    cap = above.cap_bps if above is not None and lifted else rung.cap_bps
    layers = [LayerSpec(f"{height}p", width, height, rung.floor_bps, cap)]
    if height >= 360:
        half_h = height // 2 - (height // 2) % 2
        half_w = max(2, round(width * half_h / height / 2) * 2)
        small, _ = _rung_at(ladder, half_h)
        layers.append(LayerSpec(f"{half_h}p", half_w, half_h, MIN_TARGET_BPS, small.cap_bps))
    return tuple(layers)


@dataclass(frozen=True)
class EncodedFrame:
    """A layer's picture as every viewer of it is sent: the codec's bytes, its RTP time
    (90 kHz, from the camera's first capture), and whether it is a key frame. ``frame_id``
    and the wall-clock stamps (s since the epoch, as ``capture_time``) say where the frame's
    time went: ``processed_at`` the layer had the processed image, ``encode_start`` and
    ``encoded_at`` its encoder's thread began and ended it."""

    data: bytes
    keyframe: bool
    pts: int
    capture_time: float
    layer: Layer
    frame_id: int = 0
    processed_at: float = 0.0
    encode_start: float = 0.0
    encoded_at: float = 0.0


@dataclass(frozen=True)
class FrameTiming:
    """Where one picture's time went on its way to one viewer's sender, in wall-clock
    seconds since the epoch: captured, processed (the layer has it), encoding began and
    ended, handed to the viewer's track (``delivered``), taken by the sender (``sent``:
    aiortc then packetises, encrypts and sends it at once). Kept for the benchmarks
    (:attr:`Layer.timings`); what happens after ``sent`` is the receiver's to measure."""

    frame_id: int
    keyframe: bool
    size: int
    captured: float
    processed: float
    encode_start: float
    encoded: float
    delivered: float
    sent: float


class Layer:
    """One quality layer of a camera: one encoder, any number of viewers (see the module's
    text). :meth:`run` is owned by :class:`SharedFrames`."""

    def __init__(
        self,
        spec: LayerSpec,
        settings: EncoderSettings,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.name = name
        self._clock = clock
        self._wall = wall
        #: Each picture's way to each viewer's sender, the last :data:`TIMINGS`.
        self.timings: collections.deque[FrameTiming] = collections.deque(maxlen=TIMINGS)
        self._encoder = PictureEncoder(settings, (spec.width, spec.height))
        self._viewers: set[LayerTrack] = set()
        self._has_viewers = asyncio.Event()
        self._keyframe_wanted = False
        self._last_keyframe: float | None = None
        self._rate_changed: float | None = None
        self._ended: str | None = None
        #: Pictures encoded (one per frame of the source while the layer has viewers).
        self.encoded = 0
        self.keyframes = 0
        #: Key frames requested (attach, switch, PLI/FIR) and the forced ones they became.
        self.requests = 0
        self.forced = 0
        #: Frames the encoder failed on (logged, skipped).
        self.failed = 0

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @property
    def keyframe_pending(self) -> bool:
        """A key frame is asked for and not encoded yet."""
        return self._keyframe_wanted

    @property
    def bitrate(self) -> int:
        """The bitrate the encoder runs at (0 before its first picture)."""
        return self._encoder.bitrate

    def attach(self, track: LayerTrack) -> None:
        """``track`` is sent this layer's pictures from its next key frame (one is asked)."""
        if self._ended is not None:
            track.end(self._ended)
            return
        self._viewers.add(track)
        self._has_viewers.set()
        self.request_keyframe()

    def detach(self, track: LayerTrack) -> None:
        self._viewers.discard(track)
        if not self._viewers:
            self._has_viewers.clear()

    def request_keyframe(self) -> None:
        """Ask for a key frame; every request until it comes is one key frame."""
        self.requests += 1
        self._keyframe_wanted = True

    def source_ended(self, reason: str) -> None:
        """The camera is gone: viewers are told (their tracks end), :meth:`run` returns."""
        self._ended = reason
        self._has_viewers.set()

    def _target(self) -> int:
        """The best viewer's target, within the layer's bounds (the ceiling without one)."""
        targets = [
            v.adapter.target_bps
            for v in self._viewers
            if v.layer is self and v.adapter is not None and v.adapter.target_bps > 0
        ]
        wanted = max(targets) if targets else self.spec.max_bps
        return max(self.spec.min_bps, min(self.spec.max_bps, wanted))

    def _bitrate(self, now: float) -> int:
        current = self._encoder.bitrate
        wanted = self._target()
        if current == 0:
            self._rate_changed = now
            return wanted
        step = TARGET_STEP_DOWN if wanted < current else TARGET_STEP_UP
        recent = self._rate_changed is not None and now - self._rate_changed < RATE_CHANGE_S
        if abs(wanted - current) <= step * current or recent:
            return current
        self._rate_changed = now
        log.info("layer %s: %d -> %d bit/s", self.name, current, wanted)
        return wanted

    def _keyframe_due(self, now: float) -> bool:
        if not self._keyframe_wanted:
            return False
        return self._last_keyframe is None or now - self._last_keyframe >= MIN_KEYFRAME_GAP_S

    async def run(self, frames: SharedFrames) -> None:
        """Encode the camera's newest frame while there are viewers; returns when the
        source ends. A frame the encoder fails on is skipped and counted (the first of a run
        logged with its traceback)."""
        loop = asyncio.get_running_loop()
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=self.name)
        sequence = 0
        attached = False
        failing = False
        try:
            while True:
                if not self._viewers and self._ended is None:
                    if attached:
                        frames.detach_now()
                        attached = False
                    await self._has_viewers.wait()
                if self._ended is not None:
                    self._end(self._ended)
                    return
                if not attached:
                    await frames.attach(+1)
                    attached = True
                latest = await frames.next_after(sequence)
                if latest is None:
                    self._end(frames.mailbox.ended_because())
                    return
                sequence, captured, image = latest
                processed_at = self._wall()
                if not self._viewers:
                    continue
                now = self._clock()
                force = self._keyframe_due(now)
                bitrate = self._bitrate(now)
                try:
                    picture, started, ended = await loop.run_in_executor(
                        executor, _timed_encode, self._encoder, self._wall, image, bitrate, force
                    )
                except Exception:  # a frame the codec cannot take: skip it, go on
                    if not failing:
                        log.exception("layer %s: a frame failed to encode; skipping", self.name)
                    failing = True
                    self.failed += 1
                    continue
                failing = False
                if picture is None:
                    continue
                self.encoded += 1
                if picture.keyframe:
                    self.keyframes += 1
                    self.forced += force
                    self._last_keyframe = now
                    self._keyframe_wanted = False
                frame = EncodedFrame(
                    picture.data,
                    picture.keyframe,
                    frames.pts_of(captured),
                    captured.capture_time,
                    self,
                    captured.frame_id,
                    processed_at,
                    started,
                    ended,
                )
                delivered = self._wall()
                for viewer in list(self._viewers):
                    viewer.deliver(frame, delivered)
        finally:
            if attached:
                frames.detach_now()
            executor.shutdown(wait=False, cancel_futures=True)

    def _end(self, reason: str) -> None:
        self._ended = reason
        for viewer in list(self._viewers):
            viewer.end(reason)
        self._viewers.clear()


class SharedFrames(ProcessedFrames):
    """A camera's frames processed once and encoded once per layer for any number of
    viewers (see the module's text). :meth:`track` gives each connection its own track of
    encoded pictures (VP8: the peer offers that codec alone, ``encoded_as``). :meth:`run`
    is the pipeline and its encoders; run it in a task you own. ``ladder``: the layers'
    bitrate bounds (by default the room camera's, or a diagnostic camera's)."""

    def __init__(
        self,
        mailbox: LatestFrame,
        processor: FrameProcessor,
        settings: EncoderSettings = REALTIME,
        ladder: tuple[Rung, ...] | None = None,
        name: str = "camera",
    ) -> None:
        super().__init__(mailbox, processor)
        diagnostic = processor.settings.diagnostic
        ladder = ladder or (DIAGNOSTIC_LADDER if diagnostic else LADDER)
        self.settings = settings
        size = processor.settings.width, processor.settings.height
        self.layers = [
            Layer(spec, settings, f"encode-{name}-{spec.name}")
            for spec in layers_for(*size, ladder)
        ]
        self._origin: float | None = None

    @property
    def source_height(self) -> int:
        return self.layers[0].spec.height

    def track(self) -> MediaStreamTrack:
        return LayerTrack(self)

    def pts_of(self, captured: CapturedFrame) -> int:
        """The RTP time (90 kHz) of a frame: from the camera's first, on every layer, so a
        viewer that changes layer keeps one timeline."""
        if self._origin is None:
            self._origin = captured.capture_time
        return max(0, round((captured.capture_time - self._origin) * CLOCK_RATE))

    def layer_for(self, height: int) -> Layer | None:
        """The layer for a rung ``height`` high: the largest not above it (the smallest for
        a lower rung); None for 0 (paused)."""
        if height <= 0:
            return None
        for layer in self.layers:
            if layer.spec.height <= height:
                return layer
        return self.layers[-1]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for layer in self.layers:
                tasks.create_task(layer.run(self), name=layer.name)
            await super().run()
            for layer in self.layers:
                layer.source_ended(self.mailbox.ended_because())

    @property
    def encoded(self) -> int:
        """Pictures encoded, all layers together."""
        return sum(layer.encoded for layer in self.layers)


class LayerTrack(_CaptureClockTrack):
    """One viewer's track of a :class:`SharedFrames`: ``recv`` gives the layer's pictures as
    ``av.Packet`` (see the module's text)."""

    def __init__(self, shared: SharedFrames) -> None:
        super().__init__()
        self._shared = shared
        self.diagnostic = shared.processor.settings.diagnostic
        #: The codec of what this track gives: the peer offers it alone.
        self.encoded_as = MIME[shared.settings.codec]
        self._queue: collections.deque[tuple[EncodedFrame, float]] = collections.deque()
        self._ready = asyncio.Event()
        #: The layer sent now, and the one being switched to (until its key frame).
        self.layer: Layer | None = None
        self._pending: Layer | None = None
        self._need_keyframe = True
        self._ask_keyframe = False
        self._ended: str | None = None
        #: Pictures not sent: the queue overflowed, or delta frames before a key frame.
        self.dropped = 0
        self.overflows = 0
        self.keyframes_sent = 0
        #: Key frame requests from the viewer (PLI, FIR).
        self.keyframe_requests = 0
        #: The key/delta kind of each picture sent, first ones only (tests read it).
        self.first_sent: list[bool] = []
        self.last_sent_keyframe = False

    # -- on the layer's side -------------------------------------------------------------------

    def deliver(self, frame: EncodedFrame, delivered: float = 0.0) -> None:
        """A picture of a layer this track is attached to (never waits); ``delivered``: the
        wall-clock time it was handed over (for :class:`FrameTiming`)."""
        layer = frame.layer
        if layer is self._pending:
            if not frame.keyframe:
                return  # the old layer goes on until the new one's key frame
            old, self.layer, self._pending = self.layer, layer, None
            if old is not None:
                old.detach(self)
            self.dropped += len(self._queue)
            self._queue.clear()
            self._need_keyframe = False
        elif layer is not self.layer:
            return
        elif self._need_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        if len(self._queue) >= QUEUE_FRAMES:
            # The sender is not taking pictures: start again from a key frame.
            self.overflows += 1
            self.dropped += len(self._queue)
            self._queue.clear()
            if not frame.keyframe:
                self.dropped += 1
                self._need_keyframe = True
                self._ask_keyframe = True
                return
        self._queue.append((frame, delivered))
        self._ready.set()

    def end(self, reason: str) -> None:
        self._ended = reason
        self._ready.set()

    def keyframe_requested(self) -> None:
        """The viewer lost a picture (PLI) or asks for a full one (FIR)."""
        self.keyframe_requests += 1
        layer = self._pending or self.layer
        if layer is not None:
            layer.request_keyframe()

    # -- on the sender's side ------------------------------------------------------------------

    def _follow_adapter(self) -> None:
        wanted: Layer | None = self._shared.layers[0]
        if self.adapter is not None:
            self.adapter.set_source_height(self._shared.source_height)
            wanted = self._shared.layer_for(self.adapter.rung.height)
        if wanted is self.layer and self._pending is None:
            return
        if wanted is None:  # paused: nothing is sent, nothing is encoded for us
            self._detach_all()
            return
        if self.layer is None:
            self.layer = wanted
            self._need_keyframe = True
            wanted.attach(self)
        elif wanted is self.layer:  # back before the switch was made
            if self._pending is not None:
                self._pending.detach(self)
                self._pending = None
        elif wanted is not self._pending:
            if self._pending is not None:
                self._pending.detach(self)
            self._pending = wanted
            wanted.attach(self)
            log.info("a viewer moves to layer %s", wanted.name)

    def _detach_all(self) -> None:
        for layer in (self.layer, self._pending):
            if layer is not None:
                layer.detach(self)
        self.layer = self._pending = None
        self.dropped += len(self._queue)
        self._queue.clear()
        self._need_keyframe = True

    async def recv(self) -> av.Packet[Any]:
        while True:
            if self._ended is None:
                self._follow_adapter()
            if self._queue:
                return self._packet(*self._queue.popleft())
            if self._ended is not None:
                self.stop()
                raise MediaStreamError(self._ended)
            if self._ask_keyframe:
                self._ask_keyframe = False
                layer = self._pending or self.layer
                if layer is not None:
                    layer.request_keyframe()
            self._ready.clear()
            try:
                async with asyncio.timeout(_RECHECK_S):
                    await self._ready.wait()
            except TimeoutError:
                pass  # look at the adapter again

    def _packet(self, frame: EncodedFrame, delivered: float) -> av.Packet[Any]:
        frame.layer.timings.append(
            FrameTiming(
                frame.frame_id,
                frame.keyframe,
                len(frame.data),
                frame.capture_time,
                frame.processed_at,
                frame.encode_start,
                frame.encoded_at,
                delivered,
                frame.layer._wall(),
            )
        )
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = TIME_BASE
        self.sent += 1
        self.keyframes_sent += frame.keyframe
        self.last_sent_keyframe = frame.keyframe
        if len(self.first_sent) < 64:
            self.first_sent.append(frame.keyframe)
        return packet

    def stop(self) -> None:
        self._detach_all()
        super().stop()


def bind_senders(pc: RTCPeerConnection) -> None:
    """Route the key frame requests (PLI, FIR) each sender of a :class:`LayerTrack` on
    ``pc`` receives to its layer (call once the transceivers exist: after the offer or
    answer is made)."""
    for sender in pc.getSenders():
        track = sender.track
        if isinstance(track, LayerTrack):
            route_keyframe_requests(sender, track.keyframe_requested)
