"""The browser reads the bedside's stamp as Python does (media.video.stamp): stamps drawn by
Python on noisy frames, then JPEG-compressed (a lossy codec, as the video link is), are read
by clinic_ui/static/js/stamp.js to the same frame id and time, and what Python refuses
(no stamp, a misread the CRC catches) the browser refuses too."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from clinic_ui import STATIC_DIR
from media.video.stamp import draw_stamp, read_stamp

NODE = shutil.which("node")

_READ = """
import { readFileSync } from "node:fs";
const { readStamp } = await import(process.cwd() + "/stamp.js");
const frames = JSON.parse(readFileSync(0, "utf8"));
const out = frames.map(({ width, height, rgba }) =>
  readStamp({ width, height, data: Buffer.from(rgba, "base64") }));
console.log(JSON.stringify(out));
"""


def _frames() -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng(5)
    frames: list[NDArray[np.uint8]] = []
    for k, (frame_id, ms) in enumerate([(0, 0), (1, 2**32 - 1), (4812, 1_800_000), (2**32 - 1, 7)]):
        image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        draw_stamp(image, frame_id, ms)
        quality = 90 if k % 2 else 60
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        frames.append(np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), dtype=np.uint8))
    frames.append(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))  # no stamp
    broken = frames[2].copy()
    broken[2 + 8 * 3 + 2 : 2 + 8 * 3 + 6, 2 + 8 * 4 + 2 : 2 + 8 * 4 + 6] ^= 255  # one block flipped
    frames.append(broken)
    frames.append(np.zeros((40, 40, 3), np.uint8))  # smaller than a stamp
    return frames


def test_the_browser_reads_the_stamp_as_python_does() -> None:
    if NODE is None:
        pytest.skip("no node here (scripts/bootstrap installs Node.js)")
    frames = _frames()
    payload = []
    for frame in frames:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        payload.append(
            {
                "width": frame.shape[1],
                "height": frame.shape[0],
                "rgba": base64.b64encode(rgba.tobytes()).decode(),
            }
        )
    run = subprocess.run(
        [NODE, "--input-type=module", "-e", _READ],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=STATIC_DIR / "js",
    )
    read = json.loads(run.stdout)
    expected = [read_stamp(f) for f in frames]
    assert expected[:4] == [(0, 0), (1, 2**32 - 1), (4812, 1_800_000), (2**32 - 1, 7)]
    assert expected[4:] == [None, None, None]
    assert [None if r is None else (r["frameId"], r["captureMs"]) for r in read] == expected
