"""The whole video path between two aiortc peers, through the marker-releasing jitter buffer:
stamped frames are decoded and their stamps read back. (How fast is the benchmark's job.)"""

from __future__ import annotations

import pytest

from benchmarks.latency import video_latency

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("marker", [False, True])
async def test_stamped_frames_arrive_readable(marker: bool) -> None:
    latencies = await video_latency(320, 240, "video/VP8", marker, seconds=1.5, warmup=1.0)
    assert len(latencies) >= 20  # about 30 frames a second got through, stamps intact
    assert all(0 <= value < 5000 for value in latencies)
