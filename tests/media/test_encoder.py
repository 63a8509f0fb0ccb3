"""The layer encoder (media.video.encoder): what its settings put in the bitstream, and that
what it writes decodes (PyAV's own decoders), VP8 and H.264."""

from __future__ import annotations

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from media.video.capture import SyntheticSource
from media.video.encoder import REALTIME, PictureEncoder, with_settings
from media.video.stamp import draw_stamp, read_stamp


def _images(count: int, width: int = 320, height: int = 240) -> list[NDArray[np.uint8]]:
    source = SyntheticSource(width, height, fps=1e6)
    images = []
    for k in range(count):
        image = source.read()
        assert image is not None
        draw_stamp(image, k + 1, 1000 + k)
        images.append(image)
    return images


def _vp8_version(data: bytes) -> int:
    # RFC 6386 9.1: the frame tag's bits 1-3.
    return (data[0] >> 1) & 7


@pytest.mark.parametrize("profile", [0, 1])
def test_vp8_pictures_carry_the_profile_and_decode(profile: int) -> None:
    encoder = PictureEncoder(with_settings(REALTIME, profile=profile), (320, 240))
    decoder = av.CodecContext.create("vp8", "r")
    stamps: list[int | None] = []
    for k, image in enumerate(_images(12)):
        picture = encoder.encode(image, 300_000, keyframe=k == 6)
        assert picture is not None  # real time: a picture for every frame, none held back
        assert picture.index == k
        assert picture.keyframe == (k in (0, 6))
        assert _vp8_version(picture.data) == profile
        for frame in decoder.decode(av.Packet(picture.data)):
            stamp = read_stamp(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
            stamps.append(None if stamp is None else stamp[0])
    # Each picture decodes as it comes, to its own frame (the stamp's frame id).
    assert stamps == list(range(1, 13))


@pytest.mark.parametrize("threads", [1, 2])
def test_h264_pictures_decode_as_they_come(threads: int) -> None:
    encoder = PictureEncoder(with_settings(REALTIME, codec="h264", threads=threads), (320, 240))
    decoder = av.CodecContext.create("h264", "r")
    stamps: list[int | None] = []
    for k, image in enumerate(_images(8)):
        picture = encoder.encode(image, 300_000)
        assert picture is not None
        assert picture.keyframe == (k == 0)
        if k == 0:  # Annex B, the parameter sets first
            assert picture.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        for frame in decoder.decode(av.Packet(picture.data)):
            stamp = read_stamp(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
            stamps.append(None if stamp is None else stamp[0])
    assert stamps[:1] == [1]
    assert None not in stamps
    assert stamps == sorted(s for s in stamps if s is not None)
