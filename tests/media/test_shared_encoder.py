"""One encode for every viewer (media.rtc.shared_encoder): a camera encoded once per layer,
its pictures sent to several real aiortc viewers on 127.0.0.1; key frame requests coalesced;
a new viewer starts on a key frame; a stalled viewer holds nobody up; a viewer on a poor path
moves to the small layer alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import numpy as np
import pytest

from media.rtc.adapt import LADDER, MIN_TARGET_BPS, VideoAdapter
from media.rtc.peer import MediaPeer
from media.rtc.shared_encoder import (
    MIN_KEYFRAME_GAP_S,
    QUEUE_FRAMES,
    LayerSpec,
    LayerTrack,
    SharedFrames,
    bind_senders,
    layers_for,
)
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from media.video.stamp import read_stamp
from runtime.tasks import cancel_and_wait, spawn
from tests.helpers import eventually

FPS = 30.0


def test_layers_are_the_source_and_its_half() -> None:
    assert layers_for(1280, 720) == (
        LayerSpec("720p", 1280, 720, 900_000, 1_500_000),
        LayerSpec("360p", 640, 360, MIN_TARGET_BPS, 450_000),
    )
    # A source between two rungs gets the cap of the rung above, as the adapter's top rung.
    assert layers_for(640, 480)[0] == LayerSpec("480p", 640, 480, 350_000, 900_000)
    assert layers_for(320, 240, LADDER) == (LayerSpec("240p", 320, 240, 64_000, 450_000),)


@dataclass
class _Viewer:
    sender: MediaPeer
    receiver: MediaPeer
    track: LayerTrack
    frames: list[av.VideoFrame]
    reader: asyncio.Task[None]


@contextlib.asynccontextmanager
async def _camera(width: int = 640, height: int = 360) -> AsyncIterator[SharedFrames]:
    mailbox = LatestFrame(asyncio.get_running_loop())
    capture = CaptureThread(SyntheticSource(width, height, FPS), mailbox)
    processor = FrameProcessor(ProcessingSettings(width, height))
    shared = SharedFrames(mailbox, processor, name="test")
    capture.start()
    running = spawn(shared.run(), "shared-frames")
    try:
        yield shared
    finally:
        await cancel_and_wait([running])
        await capture.stop()
        processor.close()


async def _read(receiver: MediaPeer, frames: list[av.VideoFrame]) -> None:
    while True:
        frame = await receiver.video_frames.get()
        if len(frames) < 1000:
            frames.append(frame)


async def _viewer(shared: SharedFrames, adapt: bool = False) -> _Viewer:
    track = shared.track()
    assert isinstance(track, LayerTrack)
    sender = MediaPeer([], video=track, adapt_video=adapt)
    receiver = MediaPeer([], receive_video=True)
    offer = await sender.create_offer()
    bind_senders(sender.pc)
    await sender.accept_answer(await receiver.accept_offer(offer))
    frames: list[av.VideoFrame] = []
    return _Viewer(sender, receiver, track, frames, spawn(_read(receiver, frames), "read"))


async def _close(viewers: list[_Viewer]) -> None:
    await cancel_and_wait([v.reader for v in viewers])
    for viewer in viewers:
        await viewer.sender.close()
        await viewer.receiver.close()


def _stamp(frame: av.VideoFrame) -> int | None:
    stamp = read_stamp(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
    return None if stamp is None else stamp[0]


@pytest.mark.slow
async def test_every_viewer_gets_the_one_encode_and_a_new_one_starts_on_a_key_frame() -> None:
    async with _camera() as shared:
        viewers = [await _viewer(shared) for _ in range(3)]
        try:
            await eventually(lambda: all(len(v.frames) >= 20 for v in viewers), timeout=30)
            full, half = shared.layers
            # One picture per frame on the layer the viewers take, none on the other: the
            # encoder ran once per frame, not once per viewer.
            assert full.encoded <= shared.processed
            assert half.encoded == 0
            sent = [v.track.sent for v in viewers]
            assert sum(sent) > 2 * full.encoded - 3 * QUEUE_FRAMES
            assert all(s <= full.encoded for s in sent)
            # Each picture's way to each sender is stamped, stage after stage, per viewer.
            timings = list(full.timings)
            assert len(timings) == sum(sent)
            for t in timings:
                assert t.captured <= t.processed <= t.encode_start <= t.encoded
                assert t.encoded <= t.delivered <= t.sent
                assert t.size > 0
            assert {t.frame_id for t in timings if t.keyframe}
            for viewer in viewers:  # decodable, the camera's own frames, in order
                stamps = [s for s in map(_stamp, viewer.frames[-10:]) if s is not None]
                assert len(stamps) >= 5
                assert stamps == sorted(stamps)
                # The first picture sent is a key frame, and the first decoded is whole.
                assert viewer.track.first_sent[0]
                assert _stamp(viewer.frames[0]) is not None
            # A viewer that comes later: its first picture sent and decoded is a key frame,
            # forced for it (not the periodic one), after at most the coalescing gap.
            encoded_before = full.encoded
            late = await _viewer(shared)
            viewers.append(late)
            await eventually(lambda: len(late.frames) >= 3, timeout=20)
            assert late.track.first_sent[0]
            assert _stamp(late.frames[0]) is not None
            assert late.track.dropped <= MIN_KEYFRAME_GAP_S * FPS + 2
            assert full.encoded - encoded_before < 10 * FPS  # sooner than the periodic one
        finally:
            await _close(viewers)


@pytest.mark.slow
async def test_key_frame_requests_from_viewers_become_one_key_frame_for_all() -> None:
    async with _camera() as shared:
        viewers = [await _viewer(shared) for _ in range(3)]
        try:
            full = shared.layers[0]
            await eventually(
                lambda: all(len(v.frames) >= 10 for v in viewers) and not full.keyframe_pending,
                timeout=30,
            )
            # A picture loss indication over the wire from one viewer (as aiortc's receiver
            # sends it): a key frame for every viewer of the layer.
            before = full.keyframes
            each = [v.track.keyframes_sent for v in viewers]
            ssrc = viewers[0].sender.pc.getSenders()[0]._ssrc
            (receiver,) = [
                r for r in viewers[0].receiver.pc.getReceivers() if r.track.kind == "video"
            ]
            await receiver._send_rtcp_pli(ssrc)
            await eventually(lambda: viewers[0].track.keyframe_requests >= 1, timeout=10)
            await eventually(
                lambda: all(v.track.keyframes_sent > k for v, k in zip(viewers, each, strict=True)),
                timeout=10,
            )
            new = full.keyframes - before
            assert new >= 1
            assert [v.track.keyframes_sent - k for v, k in zip(viewers, each, strict=True)] == [
                new
            ] * 3
            # Requests from every viewer at once (what aiortc's sender calls on a PLI or FIR,
            # routed to the layer): one key frame.
            await eventually(lambda: not full.keyframe_pending, timeout=10)
            forced, encoded = full.forced, full.encoded
            for viewer in viewers:
                for sender in viewer.sender.pc.getSenders():
                    if sender.track is viewer.track:
                        sender._send_keyframe()
            assert full.keyframe_pending
            await eventually(lambda: full.encoded >= encoded + 10, timeout=10)
            assert full.forced == forced + 1
        finally:
            await _close(viewers)


@pytest.mark.slow
async def test_a_stalled_viewer_holds_nobody_up() -> None:
    async with _camera() as shared:
        viewers = [await _viewer(shared) for _ in range(2)]
        stalled = shared.track()
        assert isinstance(stalled, LayerTrack)
        try:
            await stalled.recv()  # attached, then never read again
            await eventually(lambda: all(len(v.frames) >= 5 for v in viewers), timeout=30)
            counts = [v.track.sent for v in viewers]
            await eventually(
                lambda: all(
                    v.track.sent >= c + 3 * QUEUE_FRAMES
                    for v, c in zip(viewers, counts, strict=True)
                ),
                timeout=20,
            )
            assert stalled.overflows >= 1
            assert len(stalled._queue) <= QUEUE_FRAMES
            # Read again: it starts from a key frame (a delta frame after a gap is garbage).
            await stalled.recv()
            assert stalled.last_sent_keyframe
        finally:
            stalled.stop()
            await _close(viewers)


@pytest.mark.slow
async def test_a_viewer_on_a_poor_path_takes_the_small_layer_alone() -> None:
    async with _camera() as shared:
        good, poor = await _viewer(shared), await _viewer(shared)
        try:
            full, half = shared.layers
            await eventually(lambda: len(good.frames) >= 5 and len(poor.frames) >= 5, timeout=30)
            # The poor viewer's adapter, as its RTCP would drive it: heavy losses.
            adapter = VideoAdapter(source_height=360)
            now = 0.0
            while adapter.rung.height >= 360:
                adapter.on_loss(0.4, now)
                now += 1.0
            assert adapter.rung.height > 0
            poor.track.adapter = adapter
            await eventually(lambda: poor.track.layer is half, timeout=10)
            await eventually(lambda: half.encoded >= 10, timeout=10)
            await eventually(lambda: poor.frames[-1].height == 180, timeout=10)
            assert good.track.layer is full
            assert full.viewers == 1 and half.viewers == 1
            # The small layer's bitrate is its own: within its bounds, the full one's kept.
            assert half.bitrate <= half.spec.max_bps
            assert full.bitrate >= full.spec.min_bps
            stamps = [s for s in map(_stamp, good.frames[-5:]) if s is not None]
            assert stamps == sorted(stamps)
        finally:
            await _close([good, poor])
