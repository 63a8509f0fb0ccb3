"""The gateway's waveform history: every packet it sends is kept (the last N seconds, see
:mod:`media.waveform.history`), and a clinician's ``waveform-history-request`` is answered
on that clinician's connection only, so a doctor can review what the live trace lost in a
link's gap.

A browser must not be able to keep the bedside busy: each clinician (by identity, across
reconnections) has a token bucket of requests, at most :data:`QUEUE_SIZE` requests wait in
all (more are refused and logged), and one answer is sent at a time, paced by the events
channel's send buffer (the live numerics and alarms share it and must not wait behind a
long answer). Reading the ring is a copy on the event loop (at most
:data:`~media.rtc.events.MAX_HISTORY_REQUEST` samples); turning it into JSON runs in a
thread.

:meth:`GatewayHistory.run` owns the answering; its owner cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from media.rtc.events import (
    MAX_HISTORY_SAMPLES,
    WaveformHistoryRequest,
    encode_event,
)
from media.rtc.events import (
    WaveformHistory as HistoryMessage,
)
from media.rtc.peer import MediaPeer
from media.rtc.wire import WirePacket
from media.waveform.history import HistorySettings, Segment, WaveformHistory
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.ratelimit import TokenBuckets
from signaling.schema import Peer
from telemed.gateway.peers import identity

log = logging.getLogger(__name__)

#: Requests waiting to be answered, for all clinicians together.
QUEUE_SIZE = 16
#: A clinician may ask this many at once (a channel each after a gap) ...
BURST = 8
#: ... and then this many a second.
REQUESTS_PER_S = 0.5
#: An answer's next message waits while this much is queued on the events channel.
PACE_BYTES = 32 * 1024
#: An answer whose connection does not drain for this long is given up.
STALL_S = 10.0


class GatewayHistory:
    """``media_of`` gives a clinician's open connection by its current peer id (None when
    it has none)."""

    def __init__(
        self,
        settings: HistorySettings,
        media_of: Callable[[str], MediaPeer | None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.history = WaveformHistory(settings)
        self._media_of = media_of
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Peer, WaveformHistoryRequest]] = asyncio.Queue(QUEUE_SIZE)
        self._buckets = TokenBuckets(REQUESTS_PER_S, BURST, clock)
        self._refused_packets = 0
        #: Requests refused (too often, queue full) and answered.
        self.refused = 0
        self.answered = 0

    def record(self, packet: WirePacket) -> None:
        """Keep a packet the gateway sends (on the event loop, as it is sent)."""
        try:
            self.history.add(packet.channel, packet.first_index, packet.samples, packet.sample_rate)
        except ValueError as exc:  # a channel beyond the bound: it is live-only
            self._refused_packets += 1
            if self._refused_packets == 1:
                log.warning("waveform channel %d not kept for review: %s", packet.channel, exc)

    def request(self, peer: Peer, message: WaveformHistoryRequest) -> None:
        """A clinician's request: queued for answering, or refused (logged) when that
        clinician asks too often or too many wait."""
        if not self._buckets.take(identity(peer)):
            self.refused += 1
            log.warning("waveform history request from %s refused: too many", peer.name)
            return
        try:
            self._queue.put_nowait((peer, message))
        except asyncio.QueueFull:
            self.refused += 1
            log.warning("waveform history request from %s refused: the queue is full", peer.name)

    async def run(self) -> None:
        """Answer the requests one at a time, until cancelled."""
        while True:
            peer, message = await self._queue.get()
            try:
                await self._answer(peer, message)
            except Exception:  # one answer failing must not end the answering
                log.exception("waveform history answer to %s failed", peer.name)

    async def _answer(self, peer: Peer, message: WaveformHistoryRequest) -> None:
        segment = self.history.segment(message.channel, message.first, message.count)
        if segment is None:
            log.info("waveform history of channel %d asked, never sent", message.channel)
            segment = Segment(message.first, np.empty(0, np.float32), 1.0)
        texts = await asyncio.to_thread(answer_texts, message, segment)
        for text in texts:
            media = self._media_of(peer.peer_id)
            if media is None or not await _drained(media, self._clock):
                log.info("waveform history answer to %s given up: its link is gone", peer.name)
                return
            media.send_event(text)
        self.answered += 1
        log.info(
            "waveform history of channel %d (%d samples from %d) sent to %s",
            message.channel,
            len(segment.samples),
            segment.first,
            peer.name,
        )


async def _drained(media: MediaPeer, clock: Clock) -> bool:
    """Wait until the events channel's send buffer is below the pace; False when the
    channel closed or stayed full for :data:`STALL_S`."""
    deadline = clock.monotonic() + STALL_S
    while media.channel.readyState == "open" and media.channel.bufferedAmount > PACE_BYTES:
        if clock.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return media.channel.readyState == "open"


def answer_texts(request: WaveformHistoryRequest, segment: Segment) -> list[str]:
    """The ``waveform-history`` messages answering ``request`` with ``segment``: at most
    :data:`MAX_HISTORY_SAMPLES` samples each, the last marked done (one empty message when
    nothing is held). Pure; run it off the event loop for a long range."""
    values = _json_values(segment.samples)
    rate = segment.rate
    starts = range(0, max(len(values), 1), MAX_HISTORY_SAMPLES)
    return [
        encode_event(
            HistoryMessage(
                channel=request.channel,
                first=segment.first + start,
                samples=values[start : start + MAX_HISTORY_SAMPLES],
                rate=rate,
                request_first=request.first,
                request_count=request.count,
                done=start + MAX_HISTORY_SAMPLES >= len(values),
            )
        )
        for start in starts
    ]


def _json_values(samples: NDArray[np.float32]) -> list[float | None]:
    # float32 through its shortest text (0.3, not 0.30000001192092896): a third of the bytes.
    return [None if math.isnan(v) else float(str(v)) for v in samples]
