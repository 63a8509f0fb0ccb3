"""The C-STORE-to-screen benchmark's core, once per case: storescu through the bedside
gateway and the server to the doctor's canvas in Chromium, and into storescp."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.imaging_to_screen import CASES, measure

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_each_case_reaches_the_canvas_once(tmp_path: Path) -> None:
    results = await measure(1, tmp_path)
    assert [r.case for r in results] == list(CASES)
    for result in results:
        assert len(result.runs) == 1 and len(result.baseline_ms) == 1, result
        run = result.runs[0]
        # Each stage after the send, and the page's in the order they can happen. The
        # C-STORE's answer and imaging.stored race (the gateway forwards before storescu has
        # its answer and exits): no order between them.
        assert run.answered > 0 and run.stored > 0 and result.baseline_ms[0] > 0, run
        assert run.stored <= run.listed <= run.drawn, run
        for stage in result.stages():
            assert stage.samples == 1 and stage.median_ms == stage.max_ms > 0, stage
