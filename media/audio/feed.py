"""One bedside audio capture for any number of viewers' connections.

Each peer connection needs a track of its own, and each track must hand its sender objects
of its own: aiortc encodes frames in worker threads, and one frame shared by two encoders
crashed the process for video (see :class:`media.rtc.tracks.ProcessedFrames`). So blocks
are captured (and for the stethoscope, encoded) once here, and every track wraps them in a
new ``av.AudioFrame`` (voice: aiortc's encoder codes it) or a new ``av.Packet`` (stethoscope:
aiortc's sender sends it as it is).

Every viewer gets every block in order, through a bounded queue of its own: a connection
that falls behind loses its oldest blocks, not the others' (a gap the receiver conceals).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.audio import AudioMode
from media.audio.capture import BLOCK_SAMPLES, SAMPLE_RATE, AudioBlock, AudioMailbox
from media.audio.opus import TIME_BASE, OpusPacketEncoder, OpusSettings
from media.audio.sinks import to_pcm16
from runtime.queues import DropOldestQueue

log = logging.getLogger(__name__)

#: Blocks a viewer's track holds before its oldest is dropped: 200 ms.
VIEWER_QUEUE_BLOCKS = 10
#: The codec a track of encoded packets must be sent as (the transceiver offers only it).
OPUS_MIME = "audio/opus"

_Item = tuple[AudioBlock, bytes | None]


class AudioFeed:
    """:meth:`run` is the pipeline: run it in a task you own. It encodes only while at
    least one track is live; without viewers, blocks are taken and let go."""

    def __init__(
        self,
        mailbox: AudioMailbox,
        mode: AudioMode,
        opus: OpusSettings | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.mode = mode
        self.encoder = (
            OpusPacketEncoder(opus or OpusSettings()) if mode is AudioMode.STETHOSCOPE else None
        )
        self._viewers: set[_AudioViewerTrack] = set()
        self._ended = False
        self.blocks = 0
        self.encoded = 0
        #: Blocks the encoder failed on (skipped; the first logged).
        self.failed = 0

    def track(self) -> MediaStreamTrack:
        """A new track for one connection."""
        return _AudioViewerTrack(self)

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    async def run(self) -> None:
        try:
            while (block := await self.mailbox.get()) is not None:
                self.blocks += 1
                if not self._viewers:
                    continue
                payload = None
                if self.encoder is not None:
                    # libopus takes ~0.1-0.3 ms a block: not the event loop's to spend.
                    try:
                        payload = await asyncio.to_thread(self.encoder.encode, block.samples)
                    except Exception:  # one block lost (a gap the receiver conceals), not the feed
                        self.failed += 1
                        if self.failed == 1:
                            log.exception("encoding the bedside's sound failed; block skipped")
                        continue
                    self.encoded += 1
                for viewer in list(self._viewers):
                    viewer.queue.put_latest((block, payload))
        finally:
            self._ended = True
            for viewer in list(self._viewers):
                viewer.queue.put_latest(None)

    def _attach(self, viewer: _AudioViewerTrack) -> None:
        self._viewers.add(viewer)
        if self._ended:
            viewer.queue.put_latest(None)

    def _detach(self, viewer: _AudioViewerTrack) -> None:
        self._viewers.discard(viewer)


class _AudioViewerTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, feed: AudioFeed) -> None:
        super().__init__()
        self._feed = feed
        self.queue: DropOldestQueue[_Item | None] = DropOldestQueue(VIEWER_QUEUE_BLOCKS)
        self._attached = False
        self.sent = 0
        #: The codec the sender must use for what this track gives (None: any, it encodes).
        self.encoded_as = OPUS_MIME if feed.encoder is not None else None

    async def recv(self) -> av.AudioFrame | av.Packet[Any]:
        if not self._attached:
            self._attached = True
            self._feed._attach(self)
        item = await self.queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError("the audio source ended")
        block, payload = item
        self.sent += 1
        # Timestamps count samples from the capture's start: a dropped block is a gap.
        pts = block.index * BLOCK_SAMPLES
        if payload is not None:
            packet = av.Packet(payload)
            packet.pts = pts
            packet.time_base = TIME_BASE
            return packet
        # Stereo, the channel twice: aiortc's encoder takes stereo, and its resampler would
        # upmix mono at -3 dB.
        pcm = to_pcm16(block.samples)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame

    def stop(self) -> None:
        if self._attached:
            self._attached = False
            self._feed._detach(self)
        super().stop()
