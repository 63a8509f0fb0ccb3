"""Mutated DICOM files through the renderer: each renders or is refused with a RenderError,
never another exception, and none takes long. Seeds cover each decoder (native, deflated,
RLE, JPEG baseline and lossless, JPEG-LS, JPEG 2000, palette, multi-frame)."""

from __future__ import annotations

import random
import time
import warnings

import pytest

from media.imaging import RenderError, frame_count, render_frame
from tests.fuzzing import budget, scale
from tests.media.imaging.files import bundled

SEEDS = [
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_ybr_color.dcm",
    "SC_rgb_small_odd.dcm",
    "JPEGLSNearLossless_08.dcm",
    "rtdose_rle.dcm",
    "examples_palette.dcm",
    "image_dfl.dcm",
]
#: Mutants per CI pass (``make fuzz``: ten times as many).
MUTANTS = budget(400)
#: CPU seconds one render may take: the largest seed renders in ~30 ms.
PER_CASE_S = 2.0
EXTREMES = (b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff")


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    # Most structure (meta, Image Pixel module, fragment headers) sits in the first bytes.
    span = min(len(data), 4096) if rng.random() < 0.7 else len(data)
    kind = rng.randrange(5)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(span)] = rng.randrange(256)
    elif kind == 1:
        at, value = rng.randrange(span), rng.choice(EXTREMES)
        data[at : at + len(value)] = value
    elif kind == 2:
        del data[rng.randrange(128, len(data)) :]
    elif kind == 3:
        at = rng.randrange(span)
        del data[at : at + rng.randint(1, 64)]
    else:
        at = rng.randrange(span)
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    return bytes(data)


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(120 * scale())  # a hang guard
@pytest.mark.filterwarnings("ignore")  # pydicom warns on bad values; outside tests, a log line
def test_mutated_files_render_or_are_refused_never_escape_nor_stall() -> None:
    seeds = [bundled(name) for name in SEEDS]
    rng = random.Random(13)
    outcomes = {"rendered": 0, "refused": 0}
    escaped: list[str] = []
    slowest = 0.0
    for i in range(MUTANTS):
        seed = seeds[i % len(seeds)]
        mutant = mutate(seed, rng)
        start = time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames = frame_count(mutant)
                render_frame(mutant, frame=rng.randrange(frames), viewport=(64, 64))
            outcomes["rendered"] += 1
        except RenderError as exc:
            assert str(exc), "a RenderError without a reason"
            outcomes["refused"] += 1
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # what the test is for: nothing else may escape
            escaped.append(f"{SEEDS[i % len(SEEDS)]} #{i}: {type(exc).__name__}: {exc}")
        slowest = max(slowest, time.process_time() - start)
    print(f"\nrender fuzz: {MUTANTS} mutants, {outcomes}, slowest {slowest * 1e3:.0f} ms CPU")
    assert escaped == []
    assert slowest < PER_CASE_S
    assert outcomes["rendered"] > MUTANTS // 10  # the mutants are not all trivially broken
    assert outcomes["refused"] > MUTANTS // 10
