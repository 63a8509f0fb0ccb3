"""Bedside sound on MediaPeer: one capture feeding several connections (each its own frames
or packets, encoded once), the audio m-line's direction and codecs, and two real aiortc
peers carrying stethoscope sound one way and talk-back the other while the video is still
released on its marker bit and waveforms still flow."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from media.audio import AudioMode
from media.audio.capture import AudioBlock, AudioCaptureThread, AudioMailbox
from media.audio.feed import AudioFeed
from media.audio.sources import ToneSource
from media.audio.talkback import decoded_mono
from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.tracks import PipelineVideoTrack
from media.rtc.wire import WirePacket
from media.video.capture import CaptureThread, LatestFrame, SyntheticSource
from media.video.processing import FrameProcessor, ProcessingSettings
from runtime.tasks import cancel_and_wait
from tests.media.audio_signals import dominant_hz


@asynccontextmanager
async def _feed(mode: AudioMode, hz: float = 100.0) -> AsyncIterator[AudioFeed]:
    """A tone captured in its thread into a running feed; all stopped on exit."""
    mailbox = AudioMailbox(asyncio.get_running_loop())
    capture = AudioCaptureThread(ToneSource(hz), mailbox)
    feed = AudioFeed(mailbox, mode)
    capture.start()
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        await capture.stop()
        await cancel_and_wait([task])


def _audio_lines(sdp: str) -> list[str]:
    """The audio m-line's own lines (empty without one)."""
    lines, inside = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            inside = line.startswith("m=audio")
        if inside:
            lines.append(line)
    return lines


async def test_each_viewer_gets_packets_of_its_own_encoded_once() -> None:
    async with _feed(AudioMode.STETHOSCOPE) as feed:
        await asyncio.sleep(0.2)
        assert feed.blocks > 0 and feed.encoded == 0  # no viewer: nothing encoded
        one, two = feed.track(), feed.track()
        got: dict[int, list[av.Packet[Any]]] = {0: [], 1: []}
        for _ in range(10):
            got[0].append(await one.recv())  # type: ignore[arg-type]
            got[1].append(await two.recv())  # type: ignore[arg-type]
        one.stop()
        encoded = feed.encoded
        assert feed.viewers == 1
        # Viewer two attached at its first recv, maybe a block later: pair them by time.
        by_pts = {p.pts: p for p in got[1]}
        pairs = [(a, by_pts[a.pts]) for a in got[0] if a.pts in by_pts]
        assert len(pairs) >= 8
        for a, b in pairs:
            assert a is not b and bytes(a) == bytes(b)
        assert encoded < feed.blocks + 2  # once per block, not once per viewer
        pts = [int(p.pts or 0) for p in got[1]]
        assert all(b - a == 960 for a, b in itertools.pairwise(pts))
        two.stop()


async def test_voice_viewers_get_frames_of_their_own_and_the_end_of_the_source() -> None:
    mailbox = AudioMailbox(asyncio.get_running_loop())
    feed = AudioFeed(mailbox, AudioMode.VOICE)
    task = asyncio.create_task(feed.run())
    one, two = feed.track(), feed.track()
    first = asyncio.gather(one.recv(), two.recv())
    await asyncio.sleep(0.05)  # both attached
    capture = AudioCaptureThread(ToneSource(200.0), mailbox)
    capture.start()
    a, b = await first
    assert isinstance(a, av.AudioFrame) and a is not b
    assert a.format.name == "s16" and a.layout.name == "stereo" and a.sample_rate == 48_000
    await capture.stop()  # the source ends: every viewer is told
    with pytest.raises(MediaStreamError):
        while True:
            await one.recv()
    await task


@pytest.mark.parametrize(
    ("send", "receive", "direction"),
    [(True, True, "sendrecv"), (True, False, "sendonly"), (False, True, "recvonly")],
)
async def test_the_audio_m_line_says_who_sends(send: bool, receive: bool, direction: str) -> None:
    async with _feed(AudioMode.STETHOSCOPE) as feed:
        peer = MediaPeer([], audio=feed.track() if send else None, receive_audio=receive)
        try:
            audio = _audio_lines(await peer.create_offer())
        finally:
            await peer.close()
    assert audio and f"a={direction}" in audio
    rtpmaps = [line for line in audio if line.startswith("a=rtpmap:")]
    if send:  # encoded packets: Opus alone, so nothing else can be picked
        assert [r.split(" ", 1)[1] for r in rtpmaps] == ["opus/48000/2"]
    else:
        assert "opus/48000/2" in rtpmaps[0]


async def test_no_audio_no_m_line_and_voice_offers_every_codec() -> None:
    peer = MediaPeer([])
    try:
        assert _audio_lines(await peer.create_offer()) == []
    finally:
        await peer.close()
    async with _feed(AudioMode.VOICE) as feed:
        peer = MediaPeer([], audio=feed.track())
        try:
            audio = _audio_lines(await peer.create_offer())
        finally:
            await peer.close()
    assert len([line for line in audio if line.startswith("a=rtpmap:")]) == 4


async def test_an_answer_asks_for_nothing_the_offer_lacks() -> None:
    """A doctor ready for video, sound and talk-back answers a bedside with sound only, and
    one with neither (no camera, no microphone): it answers for what is offered, and its
    talk-back goes only where there is an audio m-line (aiortc failed on a transceiver no
    m-line matched)."""
    async with _feed(AudioMode.STETHOSCOPE) as bedside, _feed(AudioMode.VOICE) as mic:
        for audio in (bedside.track(), None):
            gateway = MediaPeer([], audio=audio, receive_audio=audio is not None)
            doctor = MediaPeer([], receive_video=True, receive_audio=True, audio=mic.track())
            try:
                answer = await doctor.accept_offer(await gateway.create_offer())
            finally:
                await gateway.close()
                await doctor.close()
            assert "m=video" not in answer
            assert ("a=sendrecv" in _audio_lines(answer)) is (audio is not None)


@pytest.mark.slow
async def test_stethoscope_sound_and_talk_back_beside_video_and_waveforms() -> None:
    loop = asyncio.get_running_loop()
    mailbox = LatestFrame(loop)
    camera = CaptureThread(SyntheticSource(320, 240, 30.0), mailbox)
    processor = FrameProcessor(ProcessingSettings(320, 240, overlay="Wonju"))
    camera.start()
    async with _feed(AudioMode.STETHOSCOPE, 60.0) as bedside, _feed(AudioMode.VOICE, 700.0) as mic:
        gateway = MediaPeer(
            [],
            video=PipelineVideoTrack(mailbox, processor),
            audio=bedside.track(),
            receive_audio=True,
        )
        doctor = MediaPeer([], receive_video=True, receive_audio=True, audio=mic.track())
        try:
            answer = await doctor.accept_offer(await gateway.create_offer())
            assert "a=sendrecv" in _audio_lines(answer)
            await gateway.accept_answer(answer)
            async with asyncio.timeout(20):
                while gateway.waveforms.readyState != "open":
                    await asyncio.sleep(0.02)
            heard: list[np.ndarray] = []
            talk: list[np.ndarray] = []
            frames = 0
            sequence = 0
            async with asyncio.timeout(30):
                while len(heard) < 100 or len(talk) < 100 or frames < 20:
                    gateway.send_waveform(
                        WirePacket(
                            131330, sequence, 500.0, time.time() - 0.02, np.zeros(10, np.float32)
                        )
                    )
                    sequence += 1
                    while not doctor.audio_frames.empty():
                        heard.append(decoded_mono(doctor.audio_frames.get_nowait()))
                    while not gateway.audio_frames.empty():
                        talk.append(decoded_mono(gateway.audio_frames.get_nowait()))
                    while not doctor.video_frames.empty():
                        doctor.video_frames.get_nowait()
                        frames += 1
                    await asyncio.sleep(0.02)
            assert abs(dominant_hz(np.concatenate(heard[20:])) - 60.0) < 1.0
            assert abs(dominant_hz(np.concatenate(talk[20:])) - 700.0) < 2.0
            (buffer,) = doctor.jitter_buffers  # the video's, and only the video's
            assert buffer.released_on_marker >= 10
            waves = [
                e.packet.sequence
                for e in [doctor.events.get_nowait() for _ in range(doctor.events.qsize())]
                if e.kind is PeerEventKind.WAVEFORM and e.packet is not None
            ]
            assert len(waves) >= 10 and waves == sorted(waves)
        finally:
            await gateway.close()
            await doctor.close()
    await camera.stop()
    processor.close()


async def test_a_block_the_encoder_fails_on_is_skipped_and_the_sound_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailbox = AudioMailbox(asyncio.get_running_loop())
    feed = AudioFeed(mailbox, AudioMode.STETHOSCOPE)
    task = asyncio.create_task(feed.run())
    track = feed.track()
    first = asyncio.create_task(track.recv())
    await asyncio.sleep(0.05)  # attached
    bad = AudioBlock(0, time.time(), np.zeros(480, np.float32))  # half a block
    good = AudioBlock(1, time.time(), np.zeros(960, np.float32))
    mailbox.put(bad)
    mailbox.put(good)
    packet = await first
    assert packet.pts == 960  # the bad block skipped, the next one sent
    assert feed.failed == 1 and "block skipped" in caplog.text
    mailbox.put(None)
    await task  # the feed ends with its source, not with the bad block
    track.stop()
