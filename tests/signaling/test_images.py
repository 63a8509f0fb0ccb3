"""The snapshot check on real images and on every way they can be wrong (sans-I/O)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.errors import InvalidImage
from signaling.images import JPEG, PNG, ImageInfo, check_image, media_type
from tests.signaling.pictures import jpeg, png

PICTURE_PNG = png(64, 48)
PICTURE_JPEG = jpeg(64, 48)


def test_real_images_pass_with_their_size() -> None:
    assert check_image(PICTURE_PNG, PNG) == ImageInfo(PNG, 64, 48)
    assert check_image(PICTURE_JPEG, JPEG) == ImageInfo(JPEG, 64, 48)
    assert check_image(png(1, 1), PNG) == ImageInfo(PNG, 1, 1)
    assert check_image(jpeg(640, 480), JPEG) == ImageInfo(JPEG, 640, 480)


def _corrupt_crc(data: bytes) -> bytes:
    # The IHDR chunk's CRC sits at bytes 29-32.
    return data[:29] + bytes([data[29] ^ 1]) + data[30:]


def _png_without_idat() -> bytes:
    header = PICTURE_PNG[8:33]
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return PICTURE_PNG[:8] + header + iend


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"", PNG, "empty"),
        (b"GIF89a" + b"\x00" * 40, PNG, "not a PNG"),
        (b"GIF89a" + b"\x00" * 40, JPEG, "not a JPEG"),
        (PICTURE_JPEG, PNG, "are a JPEG, not the PNG"),
        (PICTURE_PNG, JPEG, "are a PNG, not the JPEG"),
        (PICTURE_PNG[:8], PNG, "truncated PNG"),
        (PICTURE_PNG[:100], PNG, "truncated PNG: chunk IDAT"),
        (PICTURE_PNG[:-12], PNG, "truncated PNG"),
        (PICTURE_PNG + b"payload", PNG, "follow the end of the PNG"),
        (_corrupt_crc(PICTURE_PNG), PNG, "fails its CRC"),
        (_png_without_idat(), PNG, "without image data"),
        (PICTURE_JPEG[:2], JPEG, "not a JPEG"),
        (PICTURE_JPEG[:40], JPEG, "truncated JPEG"),
        (PICTURE_JPEG[:-2], JPEG, "end-of-image"),
        (PICTURE_JPEG + b"payload", JPEG, "end-of-image"),
        (b"\xff\xd8\xff\xda\x00\x02\xff\xd9", JPEG, "before any frame header"),
        (b"\xff\xd8\xff\xd9", JPEG, "before the image data"),
    ],
)
def test_wrong_bytes_are_refused_with_what_is_wrong(
    data: bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(InvalidImage, match=reason):
        check_image(data, content_type)


def test_media_type_drops_parameters_and_case() -> None:
    assert media_type("Image/JPEG; q=1") == JPEG
    assert media_type(None) == ""
    assert media_type("  image/png ") == PNG


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=400)
    | st.integers(0, len(PICTURE_PNG)).map(lambda n: PICTURE_PNG[:n])
    | st.integers(0, len(PICTURE_JPEG)).map(lambda n: PICTURE_JPEG[:n])
    | st.tuples(st.integers(0, len(PICTURE_PNG) - 1), st.integers(0, 255)).map(
        lambda p: PICTURE_PNG[: p[0]] + bytes([p[1]]) + PICTURE_PNG[p[0] + 1 :]
    ),
    content_type=st.sampled_from([PNG, JPEG]),
)
def test_any_bytes_pass_or_are_refused_cleanly(data: bytes, content_type: str) -> None:
    # Nothing but InvalidImage may come out (no IndexError, no ValueError...), and only the
    # whole, unaltered pictures pass (a flipped byte breaks a CRC or the JPEG's structure,
    # or was flipped to itself).
    try:
        info = check_image(data, content_type)
    except InvalidImage as exc:
        assert str(exc)
    else:
        assert (data, info.content_type) in ((PICTURE_PNG, PNG), (PICTURE_JPEG, JPEG))
