"""Time from the modality's C-STORE to the image on the consulting doctor's screen, end to
end on 127.0.0.1 with real components: dcmtk's ``storescu`` (the modality) sends one
instance to the bedside gateway's Storage SCP (telemed.gateway.imaging: check, consent,
de-identification, the spool's fsync'd file, STOW-RS), the server (as ``telemed serve``
builds it, the renderer wired in) stores it and pushes ``imaging.stored`` to the room, and
the Koriyama doctor's room in headless Chromium lists the new series, opens it and draws its
rendered first frame on ``#imaging-canvas``. No imaging consent is recorded, so every
instance is de-identified at the bedside (the cross-border default).

Cases: a small CT (pydicom's CT_small, 39 kB) and a 30-frame JPEG baseline US (pydicom's
examples_ybr_color, 225 kB), each sent ``--count`` times with fresh UIDs (a new instance,
series and study each time), one at a time, after one untimed warm-up send per case.

How it is measured: Python stamps the wall clock (``time.time()``) just before starting
``storescu`` (*sent*) and when it has exited having been answered (*answered*: what the
modality sees, process start and association included). The page stamps the rest with
``Date.now()`` (the same wall clock, millisecond resolution) from an init script: the
``imaging.stored`` message as it reaches the page's WebSocket, before the app handles it
(*stored*); the series' button appearing in the list (*listed*: the panel asks QIDO-RS again
once arrivals rest), at which moment the script clicks it, a doctor with no reaction time;
and the canvas's ``data-sop`` turning to the stored instance, which the viewer sets in the
same task as it draws the bitmap (*drawn*; the compositor's next frame, up to a frame
later, is not included). Python only polls for completion; it times nothing after
*answered*.

The baseline, in the same run: the same files by the same ``storescu`` into dcmtk's own
``storescp`` (writing each file), sent → answered; ratios are medians against it.

    python -m benchmarks.imaging_to_screen [--count 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from playwright.async_api import Page

from benchmarks.dicom_scp import PROPOSE, storescp
from devices.dicom.scp import ScpSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import GatewayCredentials, SignalingClient
from signaling.server.services import Services
from telemed.gateway.imaging import GatewayImaging, ImagingConfig, client_send
from telemed.serve import build_app, start_server
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.e2e.browser import chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, make_config
from tests.signaling.imaging.dicoms import pydicom_file, renamed
from tests.signaling.imaging.room import GATEWAY_KEY, ImagingRoom

CASES = {"CT 39 kB": "CT_small.dcm", "US 30 frames JPEG 225 kB": "examples_ybr_color.dcm"}
STAGES = ("answered", "stored", "listed", "drawn")
#: How long one send may take to reach the canvas before the benchmark gives up.
RUN_TIMEOUT_S = 60.0

#: The page's marks (see the module's docstring). Each ``imaging.stored`` opens an entry;
#: the entry's series is clicked when listed, and drawn when the canvas shows its instance.
_MARKS = """
(() => {
  const marks = { joined: false, entries: [] };
  window.benchImagingMarks = marks;
  const open = () => marks.entries.find((e) => e.drawn === undefined);
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        const at = Date.now();
        if (typeof event.data !== "string") return;
        let message;
        try { message = JSON.parse(event.data); } catch { return; }
        if (message.type === "joined") marks.joined = true;
        if (message.type === "imaging.stored") {
          marks.entries.push({ series: message.series, sop: message.sop, stored: at });
        }
      });
    }
  };
  const watch = () => {
    const entry = open();
    if (!entry) return;
    if (entry.listed === undefined) {
      const button = document.querySelector(`button.series[data-series="${entry.series}"]`);
      if (button && !button.disabled) {
        entry.listed = Date.now();
        button.click();
      }
    }
    const canvas = document.getElementById("imaging-canvas");
    if (entry.listed !== undefined && canvas && canvas.dataset.sop === entry.sop) {
      entry.drawn = Date.now();
    }
  };
  const start = () => new MutationObserver(watch).observe(document.body, {
    subtree: true, childList: true, attributes: true,
    attributeFilter: ["data-sop", "data-series", "disabled"],
  });
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
"""


@dataclass
class Run:
    """One send through the gateway: each stage in ms after *sent* (the module's docstring).
    By construction stored <= listed <= drawn; *answered* and *stored* race (the gateway
    starts forwarding before its answer reaches storescu and storescu exits)."""

    answered: float
    stored: float
    listed: float
    drawn: float


@dataclass
class Stage:
    name: str
    samples: int
    median_ms: float
    p95_ms: float
    max_ms: float


@dataclass
class CaseResult:
    case: str
    runs: list[Run] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)

    def stages(self) -> list[Stage]:
        out = [_stage(name, [getattr(r, name) for r in self.runs]) for name in STAGES]
        return [*out, _stage("storescp alone: answered", self.baseline_ms)]


def _stage(name: str, values: Sequence[float]) -> Stage:
    ordered = sorted(values)
    if not ordered:
        return Stage(name, 0, float("nan"), float("nan"), float("nan"))
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return Stage(name, len(ordered), statistics.median(ordered), p95, ordered[-1])


def _storescu(port: int, path: Path, propose: str) -> tuple[float, float]:
    """Send one file; (sent, answered) wall-clock stamps. Blocking: run it in a thread.
    Raises RuntimeError when storescu fails (a refused instance included)."""
    command = ["storescu", "-R", propose, "-aet", STORESCU, "-aec", "TELEMED"]
    sent = time.time()
    done = subprocess.run(
        [*command, "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    answered = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"storescu: {done.returncode} {done.stderr[-500:]}")
    return sent, answered


def _fresh(name: str, directory: Path, k: int) -> Path:
    """pydicom's ``name`` as a new instance of a new series and study (no identity flag)."""
    path = directory / f"{k}-{name}"
    path.write_bytes(renamed(pydicom_file(name), deidentified=None))
    return path


@contextlib.asynccontextmanager
async def _bedside_and_server(root: Path) -> AsyncIterator[tuple[ImagingRoom, GatewayImaging]]:
    """The server as ``telemed serve`` builds it, an active Wonju-Koriyama consultation and
    Wonju's gateway imaging (its SCP listening on a port of its own) forwarding to it."""
    (root / "server").mkdir()
    config = make_config(root / "server")
    app = build_app(config)
    server, task, port = await start_server(app, config, log_level="warning")
    try:
        live = LiveServer(config, f"http://127.0.0.1:{port}", cast(Services, app.state.services))
        async with ImagingRoom(live) as room:
            await room.setup(seoul=False)
            client = SignalingClient(live.base_url, GatewayCredentials("gw", GATEWAY_KEY))

            async def consent(cid: str) -> bool:
                return (await client.get_consultation(cid)).imaging_consent

            settings = ImagingConfig(
                ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
            )
            imaging = GatewayImaging(
                settings, root / "gateway", lambda: room.cid, consent, client_send(client)
            )
            gateway = spawn(imaging.run(), name="bench-imaging")
            try:
                async with asyncio.timeout(10):
                    while imaging.scp is None:
                        await asyncio.sleep(0.01)
                yield room, imaging
            finally:
                await cancel_and_wait([gateway])
                await client.close()
    finally:
        server.should_exit = True
        await task


async def _entries(page: Page) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], await page.evaluate("() => window.benchImagingMarks.entries"))


async def _one(page: Page, port: int, path: Path, propose: str, index: int) -> Run:
    """Send ``path`` and wait for the page's entry ``index`` to be drawn."""
    sent, answered = await asyncio.to_thread(_storescu, port, path, propose)
    async with asyncio.timeout(RUN_TIMEOUT_S):
        while True:
            entries = await _entries(page)
            if len(entries) > index + 1:
                raise RuntimeError(f"more instances announced than sent: {entries}")
            if len(entries) == index + 1 and "drawn" in entries[index]:
                break
            await asyncio.sleep(0.02)
    entry = entries[index]
    ms = {k: (float(entry[k]) / 1000 - sent) * 1000 for k in ("stored", "listed", "drawn")}
    return Run(answered=(answered - sent) * 1000, **ms)


async def measure(count: int, root: Path, cases: dict[str, str] | None = None) -> list[CaseResult]:
    """``count`` timed sends of each case (after one untimed warm-up each), then the same
    files into storescp. ``cases``: label -> pydicom file name (default :data:`CASES`).
    Raises RuntimeError (a refused send, an announcement too many, an error on the page)
    and TimeoutError (a send not drawn in RUN_TIMEOUT_S)."""
    results = [CaseResult(label) for label in (cases or CASES)]
    names = list((cases or CASES).values())
    files = root / "files"
    files.mkdir()
    sent: dict[str, list[Path]] = {name: [] for name in names}
    errors: list[str] = []
    async with _bedside_and_server(root) as (room, imaging), chromium() as browser:
        context = await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 768})
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.add_init_script(_MARKS)
        await in_english(page)
        await sign_in(page, room.server.base_url, "dk", PASSWORD, f"#/consultations/{room.cid}")
        await page.wait_for_function("() => window.benchImagingMarks.joined", timeout=15_000)
        assert imaging.scp is not None
        port = imaging.scp.port
        index = 0
        for result, name in zip(results, names, strict=True):
            for k in range(count + 1):
                path = _fresh(name, files, index)
                run = await _one(page, port, path, PROPOSE[name], index)
                index += 1
                if k > 0:  # the first is the warm-up
                    result.runs.append(run)
                    sent[name].append(path)
    if errors:
        raise RuntimeError(f"the page reported errors: {errors}")
    with storescp(root / "storescp") as port:
        for result, name in zip(results, names, strict=True):
            for path in sent[name]:
                started, answered = await asyncio.to_thread(_storescu, port, path, PROPOSE[name])
                result.baseline_ms.append((answered - started) * 1000)
    return results


def report(results: list[CaseResult]) -> None:
    """The table: each stage's median, p95 and max, and its median against the gateway's
    C-STORE answer (what the modality waits for) measured in the same run."""
    print(
        f"{'case':26} {'C-STORE sent ->':30} {'n':>3} {'median ms':>10} {'p95 ms':>8} "
        f"{'max ms':>8} {'x answered':>11}"
    )
    for result in results:
        stages = result.stages()
        base = next(s.median_ms for s in stages if s.name == "answered")
        for stage in stages:
            ratio = stage.median_ms / base if base > 0 else float("nan")
            print(
                f"{result.case:26} {stage.name:30} {stage.samples:3d} {stage.median_ms:10.1f} "
                f"{stage.p95_ms:8.1f} {stage.max_ms:8.1f} {ratio:10.2f}x"
            )


async def run(count: int, json_path: Path | None) -> list[CaseResult]:
    with tempfile.TemporaryDirectory() as tmp:
        results = await measure(count, Path(tmp))
    report(results)
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                [{"case": r.case, "stages": [asdict(s) for s in r.stages()]} for r in results],
                indent=2,
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10, help="timed sends per case")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count: at least 1")
    asyncio.run(run(args.count, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
