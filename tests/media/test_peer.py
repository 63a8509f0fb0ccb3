"""Real aiortc peers on loopback: waveform packets both ways, and a dead peer noticed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from media.rtc.peer import MediaPeer, PeerEventKind
from media.rtc.wire import WirePacket
from tests.helpers import eventually

pytestmark = pytest.mark.slow


async def _remote() -> tuple[subprocess.Popen[str], MediaPeer]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.media.remote_peer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    local = MediaPeer([])  # loopback host candidates only: no STUN
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"sdp": await local.create_offer()}) + "\n")
    proc.stdin.flush()
    line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    await local.accept_answer(json.loads(line)["sdp"])
    async with asyncio.timeout(20):
        while local.channel.readyState != "open" or local.waveforms.readyState != "open":
            await asyncio.sleep(0.02)
    local.start()
    return proc, local


async def _stop(proc: subprocess.Popen[str], local: MediaPeer) -> None:
    proc.send_signal(signal.SIGCONT)  # a stopped process cannot die of SIGKILL's cleanup
    proc.kill()
    proc.wait(10)
    if proc.stdin:
        proc.stdin.close()
    if proc.stdout:
        proc.stdout.close()
    await local.close()


async def test_waveforms_echo_and_a_frozen_peer_is_declared_dead_within_3_s() -> None:
    proc, local = await _remote()
    try:
        t0 = time.time()
        for k in range(20):
            samples = np.sin(np.arange(50) / 10 + k).astype(np.float32)
            assert local.send_waveform(WirePacket(131330, k, 500.0, t0 + k * 0.1, samples))
        echoed: list[WirePacket] = []
        async with asyncio.timeout(10):
            while len(echoed) < 20:
                event = await local.events.get()
                assert event.kind is not PeerEventKind.DEAD
                if event.packet is not None:
                    echoed.append(event.packet)
        assert [p.sequence for p in echoed] == list(range(20))  # in order after reordering
        assert np.allclose(echoed[3].samples, np.sin(np.arange(50) / 10 + 3), atol=1e-3)
        # Heartbeats flow both ways (a round trip is measured) and raise no false alarm.
        await eventually(lambda: local.heartbeat.rtt_s is not None, what="a heartbeat round trip")
        while not local.events.empty():
            assert local.events.get_nowait().kind is not PeerEventKind.DEAD

        proc.send_signal(signal.SIGSTOP)  # the far side freezes; its socket stays open
        # Declared dead by the heartbeat (within 3 s of silence: tests/media/test_events.py
        # drives that bound on a manual clock), while aiortc itself has not noticed.
        async with asyncio.timeout(10):
            while (await local.events.get()).kind is not PeerEventKind.DEAD:
                pass
        assert local.channel.readyState == "open"
    finally:
        await _stop(proc, local)


async def test_a_stalled_link_drops_waveforms_instead_of_queueing_them() -> None:
    from media.rtc.peer import WAVEFORM_BUFFER_BYTES
    from media.rtc.wire import encode

    proc, local = await _remote()
    try:
        samples = np.sin(np.arange(500) / 10).astype(np.float32)
        size = len(encode(WirePacket(131330, 0, 500.0, 0.0, samples)))
        for k in range(20):  # a live peer takes them all
            assert local.send_waveform(WirePacket(131330, k, 500.0, time.time(), samples))
            await asyncio.sleep(0.01)
        assert local.waveforms_dropped == 0
        proc.send_signal(signal.SIGSTOP)  # the far side stops reading: the window fills
        sent = 0
        for k in range(20, 2020):  # about 2 MB in 2 s, far more than the window takes
            sent += local.send_waveform(WirePacket(131330, k, 500.0, time.time(), samples))
            assert local.waveforms.bufferedAmount <= WAVEFORM_BUFFER_BYTES + size
            if k % 20 == 0:
                await asyncio.sleep(0.02)
        assert local.waveforms_dropped > 1000
        assert sent + local.waveforms_dropped == 2000
    finally:
        await _stop(proc, local)
