"""What the renderer refuses, each with a RenderError (a ValueError) that says why, before
anything large is allocated or decoded."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian

from media.errors import MediaError
from media.imaging import RenderError, frame_count, render_frame
from media.imaging import source as source_module
from tests.media.imaging.files import bundled, changed, dataset, synthetic, to_bytes


def refused(source: bytes, match: str, **kwargs: object) -> RenderError:
    with pytest.raises(RenderError, match=match) as caught:
        render_frame(source, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_render_error_is_a_value_error_of_the_media_tree() -> None:
    assert issubclass(RenderError, ValueError)
    assert issubclass(RenderError, MediaError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "liver"}, "unknown preset 'liver': one of soft-tissue, lung, bone, brain"),
        ({"preset": "bone", "window": (40.0, 400.0)}, "not both"),
        ({"window": (40.0, 0.5)}, "width must be at least 1"),
        ({"window": (float("nan"), 400.0)}, "finite"),
        ({"window": ("a", 400)}, r"window must be \(centre, width\)"),
        ({"media_type": "image/gif"}, "media type 'image/gif'"),
        ({"quality": 0}, "quality must be 1..100"),
        ({"viewport": (0, 10)}, "viewport sides"),
        ({"viewport": (100_000, 10)}, "viewport sides"),
        ({"viewport": (1.5, 10)}, "viewport must be"),
        ({"frame": 1}, "frame 1 is out of range: the instance has 1"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(kwargs: dict[str, object], match: str) -> None:
    refused(bundled("CT_small.dcm"), match, **kwargs)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (b"", "not a DICOM Part-10 file"),
        (b"\x00" * 128 + b"DICM", "no .* Transfer Syntax UID"),
        (b"not dicom at all" * 20, "not a DICOM Part-10 file"),
    ],
)
def test_what_is_not_part_10_is_refused(source: bytes, match: str) -> None:
    refused(source, match)
    with pytest.raises(RenderError, match=match):
        frame_count(source)


def test_a_file_without_meta_header_is_refused() -> None:
    refused(bundled("no_meta.dcm"), "not a DICOM Part-10 file")


def test_an_instance_without_pixel_data_is_refused() -> None:
    refused(bundled("rtplan.dcm"), r"no \(7FE0,0010\) Pixel Data")
    with pytest.raises(RenderError, match=r"no .* Pixel Data"):
        frame_count(bundled("test-SR.dcm"))


def test_truncated_pixel_data_is_refused() -> None:
    refused(bundled("MR_truncated.dcm"), "holds 8130 bytes, 8192 expected")
    source = bundled("CT_small.dcm")  # pixel data at 6300..39068, then trailing padding
    for cut, match in (
        (39068 - 1, "holds 32767 bytes, 32768 expected"),
        (20_000, "holds 13700 bytes"),
        (6000, "no .*Pixel Data"),
        (200, "Transfer Syntax UID"),
        (100, "not a DICOM Part-10 file"),
    ):
        with pytest.raises(RenderError, match=match):
            render_frame(source[:cut])
    # Cut in the trailing padding only: the image is whole and renders.
    assert render_frame(source[:-1]) == render_frame(source)


def test_an_undecodable_codestream_names_the_transfer_syntax() -> None:
    # pydicom's own corrupt JPEG test file: every installed plugin fails on it.
    refused(bundled("JPEG-lossy.dcm"), r"cannot decode frame 0 \(JPEG Extended")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # a warning outside tests
@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        ({"Rows": 65535, "Columns": 65535}, "larger than"),
        ({"Rows": 0}, "0 pixels|is 128x0"),
        ({"BitsAllocated": 12}, "Bits Allocated 12"),
        ({"BitsStored": 40}, "Bits Stored 40"),
        ({"SamplesPerPixel": 3}, "MONOCHROME2 with 3 samples"),
        ({"PhotometricInterpretation": "CMYK"}, "'CMYK' is not rendered"),
        ({"NumberOfFrames": 1_000_000}, "expected for 1000000 frame"),
        ({"NumberOfFrames": -3}, "Number of Frames is -3"),
        ({"RescaleSlope": "NaN"}, "Rescale Slope"),
        ({"Rows": None}, "lacks Rows"),
    ],
)
def test_absurd_image_pixel_values_are_refused(attributes: dict[str, object], match: str) -> None:
    source = changed(bundled("CT_small.dcm"), **attributes)
    with pytest.raises(RenderError, match=match):
        render_frame(source, media_type="image/png")


def test_frames_the_encapsulated_data_cannot_hold_are_refused() -> None:
    source = changed(bundled("examples_ybr_color.dcm"), NumberOfFrames=31)
    with pytest.raises(RenderError, match=r"31 frames declared but .* 30 fragment"):
        frame_count(source)


def test_float_pixel_data_is_refused_by_name() -> None:
    ds = dataset(synthetic(np.zeros((2, 2), np.uint16)))
    del ds.PixelData
    ds.FloatPixelData = np.zeros(4, np.float32).tobytes()
    refused(to_bytes(ds), "FloatPixelData is not rendered")


def test_a_deflate_bomb_is_refused_before_it_is_inflated(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = dataset(synthetic(np.zeros((1024, 1024), np.uint16)))  # 2 MiB of zeros
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    source = to_bytes(ds)
    assert len(source) < 20_000
    assert render_frame(source)  # within the bound it renders
    monkeypatch.setattr(source_module, "MAX_INFLATED_BYTES", 1 << 20)
    refused(source, "inflates to more than 1048576 bytes")
    corrupt = source[:-2000] + zlib.compress(b"x")[:10]
    with pytest.raises(RenderError):
        render_frame(corrupt)


def test_source_must_be_bytes() -> None:
    with pytest.raises(RenderError, match="must be the bytes"):
        frame_count(io.BytesIO(b"DICM"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "marker", "height_at", "width_at", "fmt"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", b"\xff\xc0", 5, 7, ">H"),  # JPEG baseline SOF0
        ("SC_rgb_jpeg_gdcm.dcm", b"\xff\xc3", 5, 7, ">H"),  # JPEG lossless SOF3
        ("MR_small_jpeg_ls_lossless.dcm", b"\xff\xf7", 5, 7, ">H"),  # JPEG-LS SOF55
        ("MR_small_jp2klossless.dcm", b"\xff\x51", 10, 6, ">I"),  # JPEG 2000 SIZ
    ],
)
def test_a_codestream_declaring_a_huge_frame_is_refused_before_decoding(
    name: str, marker: bytes, height_at: int, width_at: int, fmt: str
) -> None:
    # Unchecked, libjpeg took 3.5 GB and 30 s on the baseline one (measured).
    ds = dataset(bundled(name))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    at = frame.find(marker)
    assert at >= 0
    struct.pack_into(fmt, frame, at + height_at, 60000)
    struct.pack_into(fmt, frame, at + width_at, 60000)
    ds.PixelData = encapsulate([bytes(frame)])
    start = time.process_time()
    refused(to_bytes(ds), "codestream declares 60000x60000 with . component")
    assert time.process_time() - start < 1.0
