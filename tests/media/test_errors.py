"""The media package's exception tree: one root, and the built-in bases callers relied on."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from aiortc import RTCRtpReceiver

from media.errors import (
    MediaError,
    ReceiverUnsupported,
    VideoSourceError,
    WaveformError,
    WireError,
)
from media.rtc import wire
from media.rtc.jitter import use_marker_release
from media.video.capture import OpenCvSource
from media.waveform.filters import mains_notch


def test_a_malformed_packet_is_a_wire_error() -> None:
    with pytest.raises(WireError) as caught:
        wire.decode(b"\x01")
    assert isinstance(caught.value, MediaError)
    assert isinstance(caught.value, ValueError)
    assert wire.WireError is WireError  # still importable beside the format


def test_a_sample_rate_too_low_for_the_mains_notch_is_a_waveform_error() -> None:
    with pytest.raises(WaveformError, match="no mains harmonic") as caught:
        mains_notch(50.0, 50.0)
    assert isinstance(caught.value, ValueError)


def test_an_absent_video_source_is_a_video_source_error(tmp_path: Path) -> None:
    with pytest.raises(VideoSourceError, match="cannot open") as caught:
        OpenCvSource(str(tmp_path / "absent.avi"))
    assert isinstance(caught.value, MediaError)
    assert isinstance(caught.value, OSError)


def test_a_receiver_without_a_jitter_buffer_is_unsupported() -> None:
    with pytest.raises(ReceiverUnsupported) as caught:
        use_marker_release(cast(RTCRtpReceiver, object()))  # not one from this aiortc
    assert isinstance(caught.value, MediaError)
    assert isinstance(caught.value, RuntimeError)
