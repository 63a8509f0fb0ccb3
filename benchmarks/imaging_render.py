"""Render time per frame: media.imaging.render_frame on pydicom's bundled test files, whole
(parse, decode one frame, window, encode), at full size and as a 256-px thumbnail.

A 512x512 CT slice is measured as stored (JPEG 2000) and decompressed to explicit VR
little endian here; a US cine frame is one frame of a 30-frame JPEG baseline YBR_FULL_422
instance, as stored and decompressed. Medians of ``--repeat`` calls, wall and process CPU
time, one thread.

    python -m benchmarks.imaging_render [--repeat 30]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pydicom import dcmread
from pydicom.data import get_testdata_file

from media.imaging import render_frame

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("CT 512x512, native", "693_J2KI.dcm", {"preset": "soft-tissue", "native": True}),
    ("CT 512x512, JPEG 2000", "693_J2KI.dcm", {"preset": "soft-tissue"}),
    ("CT 128x128, native", "CT_small.dcm", {"preset": "bone"}),
    ("MR 64x64, RLE", "MR_small_RLE.dcm", {}),
    ("MR 64x64, JPEG-LS", "MR_small_jpeg_ls_lossless.dcm", {}),
    ("NM 256x1024, JPEG extended 12-bit", "JPGExtended.dcm", {}),
    ("US cine frame 320x240, JPEG YBR 4:2:2", "examples_ybr_color.dcm", {"frame": 15}),
    ("US cine frame 320x240, native RGB", "examples_ybr_color.dcm", {"frame": 15, "native": True}),
    ("US 320x240, RGB native", "examples_rgb_color.dcm", {}),
    ("US 800x350, palette colour", "examples_palette.dcm", {}),
    ("US 640x480, JPEG 2000 YBR_RCT", "examples_jpeg2k.dcm", {}),
]


def source(name: str, native: bool) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        raise SystemExit(f"{name} does not ship in the installed pydicom wheel")
    with open(str(path), "rb") as f:
        data = f.read()
    if not native:
        return data
    ds = dcmread(io.BytesIO(data))
    ds.decompress()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def median_ms(repeat: int, call: Callable[[], bytes]) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"{'file':42} {'bytes':>9} {'full JPEG ms':>14} {'full PNG ms':>13} {'256 thumb ms':>14}")
    print(f"{'':42} {'':>9} {'wall / CPU':>14} {'wall / CPU':>13} {'wall / CPU':>14}")
    for label, name, options in CASES:
        opts = dict(options)
        data = source(name, bool(opts.pop("native", False)))
        render_frame(data, **opts)  # warm: imports, plugin lookup
        jpeg = median_ms(args.repeat, partial(render_frame, data, **opts))
        png = median_ms(args.repeat, partial(render_frame, data, media_type="image/png", **opts))
        thumb = median_ms(args.repeat, partial(render_frame, data, viewport=(256, 256), **opts))
        cells = [f"{w:6.1f} /{c:6.1f}" for w, c in (jpeg, png, thumb)]
        print(f"{label:42} {len(data):>9} {cells[0]:>14} {cells[1]:>13} {cells[2]:>14}")


if __name__ == "__main__":
    main()
