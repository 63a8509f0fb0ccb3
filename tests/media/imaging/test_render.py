"""The renderer on real files (pydicom's bundled test files) and on files built here from known
pixels: each assertion is a pixel value the DICOM pipeline defines (PS3.3 C.11), decoded back
from the PNG or JPEG the renderer wrote."""

from __future__ import annotations

import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000, JPEGLSNearLossless

from media.imaging import PRESETS, RenderError, frame_count, render_frame
from tests.media.imaging.files import (
    bundled,
    changed,
    dataset,
    decoded,
    linear_window,
    synthetic,
    to_bytes,
)

PNG = "image/png"


def png(source: bytes, **kwargs: Any) -> NDArray[np.uint8]:
    return decoded(render_frame(source, media_type=PNG, **kwargs))


def test_presets_are_the_contracts_ct_windows() -> None:
    assert dict(PRESETS) == {
        "soft-tissue": (40.0, 400.0),
        "lung": (-600.0, 1500.0),
        "bone": (400.0, 1800.0),
        "brain": (40.0, 80.0),
    }
    with pytest.raises(TypeError):
        PRESETS["bone"] = (0.0, 1.0)  # type: ignore[index]


def test_a_ct_pixel_of_known_hu_windowed_by_soft_tissue_maps_to_its_grey_level() -> None:
    source = bundled("CT_small.dcm")
    ds = dataset(source)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu[0, 49] == 29  # a soft-tissue pixel of this file
    out = png(source, preset="soft-tissue").astype(int)
    # ((29 - 39.5) / 399 + 0.5) * 255 = 120.79
    assert out[0, 49] == 121
    assert np.abs(out - linear_window(hu, 40, 400)).max() <= 1
    bone = png(source, preset="bone").astype(int)
    assert np.abs(bone - linear_window(hu, 400, 1800)).max() <= 1
    assert bone[0, 49] == 75  # ((29 - 399.5) / 1799 + 0.5) * 255 = 74.98
    assert np.abs(png(source, preset="lung").astype(int) - linear_window(hu, -600, 1500)).max() <= 1


def test_a_window_change_changes_the_output_as_the_formula_says() -> None:
    source = bundled("MR_small.dcm")
    stored = dataset(source).pixel_array
    own = png(source).astype(int)  # the file's own window: centre 600, width 1600
    assert np.abs(own - linear_window(stored, 600, 1600)).max() <= 1
    narrow = png(source, window=(1000.0, 400.0)).astype(int)
    assert np.abs(narrow - linear_window(stored, 1000, 400)).max() <= 1
    assert (narrow != own).mean() > 0.5
    assert (narrow[stored <= 799] == 0).all() and (narrow[stored > 1199] == 255).all()


def test_without_any_window_the_frame_range_spans_black_to_white() -> None:
    pixels = np.array([[-100, 0], [100, 300]], dtype=np.int16)
    out = png(synthetic(pixels)).astype(int)
    assert out.tolist() == [[0, 64], [128, 255]]  # (x + 100) / 400 * 255, rounded


def test_pixel_padding_is_left_out_of_the_frame_range() -> None:
    pixels = np.array([[-2000, 0], [100, 200]], dtype=np.int16)
    out = png(synthetic(pixels, PixelPaddingValue=-2000)).astype(int)
    assert out.tolist() == [[0, 0], [128, 255]]


def test_an_identity_window_on_8_bit_monochrome2_gives_back_the_stored_pixels() -> None:
    source = bundled("image_dfl.dcm")  # deflated explicit VR, 8-bit MONOCHROME2, 512x512
    stored = dataset(source).pixel_array
    assert stored.dtype == np.uint8 and len(np.unique(stored)) > 20  # 24 grey levels, 0 to 255
    # C.11.2.1.2.1 with centre 128 and width 256 is y = x on 0..255.
    assert np.array_equal(png(source, window=(128.0, 256.0)), stored)
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(png(synthetic(ramp), window=(128.0, 256.0)), ramp)


def test_monochrome1_is_inverted() -> None:
    source = bundled("6154")  # a CR, MONOCHROME1, with its own window
    ds = dataset(source)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    as_mono2 = changed(source, PhotometricInterpretation="MONOCHROME2")
    for window in (None, (2000.0, 1000.0)):
        one = png(source, window=window).astype(int)
        two = png(as_mono2, window=window).astype(int)
        assert (one + two == 255).all()
        assert one.std() > 0
    # The lowest stored value (least attenuation) is the brightest pixel of MONOCHROME1.
    out = png(source)
    low = np.unravel_index(np.argmin(ds.pixel_array), ds.pixel_array.shape)
    assert out[low] == out.max()


@pytest.mark.parametrize(("function", "expected"), [("LINEAR_EXACT", "exact"), ("SIGMOID", "s")])
def test_the_files_voi_lut_function_is_applied(function: str, expected: str) -> None:
    x = np.linspace(-1000, 1000, 64, dtype=np.int16).reshape(8, 8)
    source = synthetic(x, WindowCenter=100, WindowWidth=1000, VOILUTFunction=function)
    out = png(source).astype(int)
    xf = x.astype(np.float64)
    if expected == "exact":
        y = np.clip(((xf - 100) / 1000 + 0.5) * 255, 0, 255)
    else:
        y = 255 / (1 + np.exp(-4 * (xf - 100) / 1000))
    assert np.abs(out - np.floor(y + 0.5)).max() <= 1
    # The caller's window is LINEAR whatever the file says.
    mine = png(source, window=(0.0, 500.0)).astype(int)
    assert np.abs(mine - linear_window(x, 0, 500)).max() <= 1


def test_several_windows_in_the_file_the_first_is_used() -> None:
    x = np.linspace(0, 1000, 64, dtype=np.uint16).reshape(8, 8)
    source = synthetic(x, WindowCenter=[300, 700], WindowWidth=[200, 900])
    assert np.abs(png(source).astype(int) - linear_window(x, 300, 200)).max() <= 1


def test_a_modality_lut_sequence_and_a_voi_lut_sequence_are_applied() -> None:
    stored = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    modality = Dataset()
    modality.LUTDescriptor = [4, 0, 16]
    modality.add_new(0x00283006, "US", [100, 200, 300, 400])
    modality.ModalityLUTType = "US"
    source = synthetic(stored, ModalityLUTSequence=Sequence([modality]))
    out = png(source, window=(250.0, 301.0)).astype(int)
    assert (out == linear_window(np.array([[100, 200], [300, 400]]), 250, 301)).all()

    # The first mapped value is SS for signed pixels (-2 written as 65534), US otherwise.
    for pixels, first in (
        (np.array([[-2, -1], [0, 1]], np.int16), 65534),
        (np.array([[40000, 40001], [40002, 40003]], np.uint16), 40000),
    ):
        modality.LUTDescriptor = [4, first, 16]
        source = synthetic(pixels, ModalityLUTSequence=Sequence([modality]))
        out = png(source, window=(250.0, 301.0)).astype(int)
        assert (out == linear_window(np.array([[100, 200], [300, 400]]), 250, 301)).all()

    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    voi = Dataset()
    voi.LUTDescriptor = [256, 0, 8]
    voi.add_new(0x00283006, "US", [255 - i for i in range(256)])
    inverted = png(synthetic(ramp, VOILUTSequence=Sequence([voi])))
    assert np.array_equal(inverted, 255 - ramp)


def test_an_enhanced_multi_frame_takes_each_frames_rescale_and_window() -> None:
    frames = np.stack([np.full((4, 4), 100, np.uint16), np.full((4, 4), 300, np.uint16)])
    frames[:, 0, 0] = 0
    rescale = Dataset()
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 2, -100, "US"
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([rescale])
    per_frame = []
    for centre, width in ((100, 200), (500, 2)):
        window = Dataset()
        window.WindowCenter, window.WindowWidth = centre, width
        item = Dataset()
        item.FrameVOILUTSequence = Sequence([window])
        per_frame.append(item)
    source = synthetic(
        frames,
        NumberOfFrames=2,
        SharedFunctionalGroupsSequence=Sequence([shared]),
        PerFrameFunctionalGroupsSequence=Sequence(per_frame),
    )
    assert frame_count(source) == 2
    first, second = png(source, frame=0), png(source, frame=1)
    assert first[1, 1] == linear_window(np.array([100]), 100, 200)[0]  # 2*100-100 = 100
    assert first[0, 0] == 0  # -100
    assert second[1, 1] == 255  # 2*300-100 = 500 > 500 - 0.5 + 0.5
    assert second[0, 0] == 0


def test_colour_bars_render_red_green_and_blue_where_they_are() -> None:
    bars = [
        (255, 0, 0),
        (255, 128, 128),
        (0, 255, 0),
        (128, 255, 128),
        (0, 0, 255),
        (128, 128, 255),
        (0, 0, 0),
        (64, 64, 64),
        (192, 192, 192),
        (255, 255, 255),
    ]
    out = png(bundled("SC_rgb_rle.dcm"))  # RLE, RGB, ten horizontal bars of 10 rows
    assert [tuple(int(v) for v in out[r, 50]) for r in range(5, 100, 10)] == bars
    # The same bars through JPEG output: OpenCV's BGR order is not leaked.
    jpeg = decoded(render_frame(bundled("SC_rgb_rle.dcm"), quality=95)).astype(int)
    assert np.abs(jpeg[5::10, 50] - np.array(bars)).max() <= 8


LOSSLESS_COLOUR = [
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless (process 14)
    "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
    "SC_rgb_rle_16bit.dcm",  # 16 bits per sample: the top 8 kept
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG baseline RGB, no colour transform
]
LOSSY_COLOUR = [
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # JPEG baseline YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS near-lossless
    "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422, converted once
]


@pytest.mark.parametrize("name", LOSSLESS_COLOUR + LOSSY_COLOUR)
def test_compressed_colour_renders_like_the_uncompressed_bars(name: str) -> None:
    reference = png(bundled("SC_rgb_rle.dcm")).astype(int)
    out = png(bundled(name)).astype(int)
    difference = np.abs(out - reference)
    if name in LOSSLESS_COLOUR:
        assert difference.max() <= 1  # 16 to 8 bits may round the other way
    else:
        # Lossy (JPEG chroma subsampling blurs the bars' edges): the bars' centres within
        # 8 grey levels, and on average within 4. A YBR conversion applied twice, or not at
        # all, is off by far more.
        assert difference[5::10, 50].max() <= 8
        assert difference.mean() < 4


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_lossless_grey_variants_render_equal_to_the_uncompressed_file(name: str) -> None:
    reference = png(bundled("MR_small.dcm"))
    assert np.array_equal(png(bundled(name)), reference)
    assert np.array_equal(
        png(bundled(name), preset="brain"), png(bundled("MR_small.dcm"), preset="brain")
    )


@pytest.mark.filterwarnings("ignore:The pixel data is 8320 bytes long")
def test_a_file_with_excess_pixel_padding_still_renders() -> None:
    assert np.array_equal(png(bundled("MR_small_padded.dcm")), png(bundled("MR_small.dcm")))


def test_planar_configuration_1_renders_like_0() -> None:
    rgb = np.zeros((6, 9, 3), np.uint8)
    rgb[:2, :, 0], rgb[2:4, :, 1], rgb[4:, :, 2] = 250, 200, 150
    rgb[:, :3] += 5
    interleaved = synthetic(rgb, "RGB")
    ds = dataset(interleaved)
    ds.PlanarConfiguration = 1
    ds.PixelData = rgb.transpose(2, 0, 1).tobytes()
    planar = to_bytes(ds)
    assert np.array_equal(png(interleaved), rgb)
    assert np.array_equal(png(planar), rgb)


def test_big_endian_planar_rgb_renders() -> None:
    source = bundled("ExplVR_BigEnd.dcm")  # US, RGB, planar configuration 1, big endian
    assert dataset(source).PlanarConfiguration == 1
    assert np.array_equal(png(source), dataset(source).pixel_array)


def test_palette_colour_matches_the_lut() -> None:
    source = bundled("examples_palette.dcm")
    ds = dataset(source)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    _, first, bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
    assert bits == 16 and first == 0
    index = ds.pixel_array.astype(int)
    expected = np.stack(
        [
            np.frombuffer(ds[f"{c}PaletteColorLookupTableData"].value, "<u2")[index] >> 8
            for c in ("Red", "Green", "Blue")
        ],
        axis=-1,
    )
    out = png(source)
    assert out.shape == (*index.shape, 3)
    assert np.array_equal(out, expected)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 20


def test_multi_frame_selection_picks_the_right_frame() -> None:
    source = bundled("examples_ybr_color.dcm")  # US cine: 30 frames, JPEG baseline YBR 4:2:2
    assert frame_count(source) == 30
    frames = dataset(source).pixel_array  # every frame, converted to RGB by pydicom
    for k in (0, 7, 29):
        out = png(source, frame=k).astype(int)
        assert np.abs(out - frames[k]).max() <= 1
        others = [j for j in (0, 7, 29) if j != k]
        assert all(
            np.abs(out - frames[j]).mean() > np.abs(out - frames[k]).mean() + 1 for j in others
        )
    two = bundled("SC_rgb_rle_2frame.dcm")  # the second frame holds the bars' complements
    assert tuple(png(two, frame=0)[5, 50]) == (255, 0, 0)
    assert tuple(png(two, frame=1)[5, 50]) == (0, 255, 255)
    dose = bundled("rtdose.dcm")  # 15 native 32-bit frames, each rendered on its own range
    assert frame_count(dose) == 15
    stored = dataset(dose).pixel_array
    for k in (0, 14):
        f = stored[k].astype(np.float64)
        expected = np.floor((f - f.min()) * 255 / (f.max() - f.min()) + 0.5)
        assert np.abs(png(dose, frame=k) - expected).max() <= 1


def test_only_the_asked_frame_is_decoded() -> None:
    source = bundled("examples_ybr_color.dcm")
    ds = dataset(source)
    frames = list(generate_frames(ds.PixelData, number_of_frames=30))
    frames[0] = b"\xff\xd8" + bytes(len(frames[0]) - 2)  # a codestream no decoder reads
    ds.PixelData = encapsulate(frames, has_bot=True)
    broken = to_bytes(ds)
    with pytest.raises(RenderError, match="JPEG codestream has no marker"):
        render_frame(broken, frame=0)
    # Decoding every frame would meet the broken one: frame 5 alone renders, as before.
    assert render_frame(broken, frame=5, media_type=PNG) == render_frame(
        source, frame=5, media_type=PNG
    )


def test_one_frame_of_a_large_native_multi_frame_is_read_without_copying_the_rest() -> None:
    frames = np.random.default_rng(13).integers(0, 256, (40, 240, 320, 3), dtype=np.uint8)
    source = synthetic(frames, "RGB", NumberOfFrames=40)  # 9.2 MB of pixel data
    tracemalloc.start()
    try:
        out = render_frame(source, frame=33, media_type=PNG)
        assert frame_count(source) == 40
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(decoded(out), frames[33])
    # One frame is 230 kB; reading the pixel data whole would take 9.2 MB.
    assert peak < 3_000_000


@pytest.mark.parametrize(
    ("syntax", "options", "max_diff", "mean_diff"),
    [
        # Near-lossless with NEAR=3: stored values within 3, under a 1600-wide window
        # within 3 * 255 / 1599 = 0.5 of a grey level before rounding.
        (JPEGLSNearLossless, {"jls_error": 3}, 1, 0.5),
        # JPEG 2000 at 5:1 (openjpeg): measured max 6, mean 1.1 grey levels.
        (JPEG2000, {"j2k_cr": [5]}, 8, 2.0),
    ],
    ids=["jpeg-ls-near-3", "j2k-5-to-1"],
)
def test_lossy_grey_renders_close_to_the_uncompressed_file(
    syntax: str, options: dict[str, Any], max_diff: int, mean_diff: float
) -> None:
    source = bundled("MR_small.dcm")
    ds = dataset(source)
    ds.compress(syntax, **options)
    lossy = to_bytes(ds)
    stored = dataset(lossy).pixel_array.astype(int)
    assert (stored != dataset(source).pixel_array).any()  # really lossy
    difference = np.abs(png(lossy).astype(int) - png(source).astype(int))
    assert difference.max() <= max_diff
    assert difference.mean() <= mean_diff


@pytest.mark.parametrize("frame", [-1, 30, 10**9])
def test_a_frame_out_of_range_is_refused(frame: int) -> None:
    with pytest.raises(RenderError, match="out of range"):
        render_frame(bundled("examples_ybr_color.dcm"), frame=frame)


def test_the_viewport_fits_keeping_the_aspect_ratio() -> None:
    tall = bundled("JPEG2000.dcm")  # 256 columns x 1024 rows
    assert png(tall, viewport=(256, 256)).shape == (256, 64)
    assert png(tall, viewport=(100, 1000)).shape == (400, 100)
    ct = bundled("CT_small.dcm")  # 128 x 128
    full = png(ct, preset="soft-tissue").astype(float)
    half = png(ct, preset="soft-tissue", viewport=(64, 200)).astype(float)
    assert half.shape == (64, 64)
    # INTER_AREA: each output pixel the mean of a 2x2 block.
    blocks = full.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    assert np.abs(half - blocks).max() <= 1
    # Enlarged at most 4x: a 16x16 CR in a 256-px thumbnail is 64x64.
    assert png(bundled("6154"), viewport=(256, 256)).shape == (64, 64)
    assert png(ct, viewport=(200, 300)).shape == (200, 200)
    colour = png(bundled("SC_rgb_rle.dcm"), viewport=(50, 50))
    assert colour.shape == (50, 50, 3)
    assert tuple(colour[2, 25]) == (255, 0, 0)


def test_jpeg_output_is_close_to_png_and_quality_matters() -> None:
    source = bundled("CT_small.dcm")
    exact = png(source, preset="soft-tissue").astype(int)
    fine = render_frame(source, preset="soft-tissue", quality=95)
    coarse = render_frame(source, preset="soft-tissue", quality=20)
    assert fine[:2] == b"\xff\xd8"
    assert np.abs(decoded(fine).astype(int) - exact).mean() < 2
    assert len(coarse) < len(fine)


def test_renders_from_threads_equal_serial_renders() -> None:
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("CT_small.dcm", {"preset": "lung"}),
        ("MR_small_jp2klossless.dcm", {}),
        ("SC_rgb_jpeg_dcmtk.dcm", {"viewport": (64, 64)}),
        ("examples_ybr_color.dcm", {"frame": 3}),
        ("examples_palette.dcm", {}),
    ] * 4
    sources = {name: bundled(name) for name, _ in jobs}

    def run(job: tuple[str, dict[str, Any]]) -> bytes:
        return render_frame(sources[job[0]], media_type=PNG, **job[1])

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, jobs))
    assert parallel == serial
