"""Waveforms where the doctor sees them: a coded test signal (each pleth sample's value says
which sample it is: devices/simulation/test_pattern.py) from simulated devices on real ptys,
through the real reader, gateway and WebRTC, into headless Chromium; the test reads back
the samples the renderer placed (window.telemedTraces, a read-only hook).

- On a loss-free link every index is there once and each value is its code: zero
  discontinuities; the ECG's indices follow on too. This is also the old defect's regression
  test: traces placed by their packets' jittering times showed blank gaps (8-14 in every
  6 s of ECG, measured on the old traces.js) and the monitor's pleth was dropped (it had the
  oximeter's channel id).
- Packets dropped at the gateway (its sending side's loss hook) are gaps of exactly their
  samples, at their place; every other sample is still its code.
- The monitor's pleth (125 Hz) and the oximeter's (60 Hz) are two traces, each named by its
  device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from devices.codes import ECG_II, PLETH
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from devices.simulation.test_pattern import TestPattern, ramp_length
from media.rtc.wire import WirePacket
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from tests.e2e.bedside import GATEWAY, KEY
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer

pytestmark = pytest.mark.slow

DEVICES = {"oximeter-1": "cms50", "monitor-1": "intellivue"}


@contextlib.asynccontextmanager
async def coded_bedside(server: LiveServer) -> AsyncIterator[Gateway]:
    """An oximeter and a monitor whose pleths carry the test pattern, each on its own pty,
    read by a gateway following its site's consultation (no camera: waveforms only)."""
    await server.add_gateway(GATEWAY, "wonju", KEY)
    links = {device: PtyLink() for device in DEVICES}
    simulators = [
        spawn(SIMULATORS[DEVICES[device]](link, TestPattern()).run(), f"simulator-{device}")
        for device, link in links.items()
    ]
    await asyncio.sleep(0)  # plugged in: the ptys exist
    gateway = Gateway(
        GatewayConfig(
            server_url=server.base_url,
            name=GATEWAY,
            key=KEY,
            mains_hz=60.0,
            devices=tuple(
                DeviceSpec(DEVICES[device], link.path, device) for device, link in links.items()
            ),
        )
    )
    running = spawn(gateway.run(), "gateway")
    try:
        yield gateway
    finally:
        await cancel_and_wait([running, *simulators])


async def _room(server: LiveServer) -> str:
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    try:
        await tech.login()
        await doctor.login()
        row = await tech.request_consultation("koriyama", False, "waveforms")
        await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
    finally:
        await tech.close()
        await doctor.close()
    return row.id


async def _channels(page: Page) -> dict[tuple[str, int], int]:
    """(device, MDC code) -> the channel id, for the traces the page has."""
    infos = await page.evaluate(
        "() => window.telemedTraces.ids().map((id) => window.telemedTraces.get(id).info)"
    )
    return {(i["device"], i["mdc"]): i["channel"] for i in infos if i.get("mdc")}


async def _placed(page: Page, channel: int, lo: int | None = None, hi: int | None = None) -> Any:
    """The samples the renderer placed for ``channel`` (all it holds, or lo <= index < hi)."""
    return await page.evaluate(
        """([id, lo, hi]) => {
            const trace = window.telemedTraces.get(id);
            const placed = trace.samples(lo ?? trace.oldest, hi ?? trace.newest);
            return {newest: trace.newest, indices: placed.indices,
                    values: placed.values.map((v) => (Number.isNaN(v) ? null : v))};
        }""",
        [channel, lo, hi],
    )


async def _placed_until(page: Page, channel: int, count: int) -> None:
    await page.wait_for_function(
        """([id, count]) => {
            const trace = window.telemedTraces.get(id);
            return trace && trace.samples(trace.oldest, trace.newest).indices.length >= count;
        }""",
        arg=[channel, count],
        timeout=60_000,
        polling=250,
    )


def _codes(values: list[float | None], m: int, scale: float) -> list[int | None]:
    """The ramp's code of each value (None: placed as no value)."""
    return [None if v is None else round(v * scale) % m for v in values]


def _discontinuities(indices: list[int], codes: list[int | None], m: int) -> list[str]:
    """Where the placed samples are not the ramp: an index missing or placed twice, a
    value that is not the next code."""
    faults = []
    for k in range(1, len(indices)):
        if indices[k] != indices[k - 1] + 1:
            faults.append(f"index {indices[k - 1]} -> {indices[k]}")
        a, b = codes[k - 1], codes[k]
        if a is None or b is None or (b - a) % m != 1:
            faults.append(f"at index {indices[k]}: code {a} -> {b}")
    return faults


async def test_a_coded_signal_reaches_the_screen_sample_for_sample(server: LiveServer) -> None:
    row_id = await _room(server)
    figures: dict[str, Any] = {}
    async with coded_bedside(server) as gateway, chromium() as browser:
        page = await browser.new_page(locale="en-US", viewport={"width": 1366, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await in_english(page)
        await sign_in(
            page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row_id}"
        )
        await expect(page.locator("#link-state")).to_have_attribute(
            "data-state", "link.connected", timeout=30_000
        )

        # Two pleths, two traces, each named by its device; and the monitor's ECG.
        for device in DEVICES:
            trace = page.locator(f".trace[data-mdc='{PLETH.mdc}'][data-device='{device}']")
            await expect(trace.locator(".device")).to_have_text(device, timeout=30_000)
        await expect(page.locator(f".trace[data-mdc='{ECG_II.mdc}'] .scale")).to_have_text(
            "×1 · 10 mm/mV · 25 mm/s", timeout=30_000
        )
        await expect(page.locator(".trace").first).to_have_attribute("data-mdc", str(ECG_II.mdc))
        channels = await _channels(page)
        oximeter = channels[("oximeter-1", PLETH.mdc)]
        monitor = channels[("monitor-1", PLETH.mdc)]
        assert oximeter != monitor

        # Loss-free: 10 s of each pleth, every index once, every value its code.
        await _placed_until(page, oximeter, 600)
        await _placed_until(page, monitor, 1250)
        for name, channel, rate, scale in (
            ("oximeter", oximeter, 60.0, 1.0),  # CMS50: k mod 120, as 0..119
            ("monitor", monitor, 125.0, 250.0),  # IntelliVue: (k mod 250) / 250
        ):
            placed = await _placed(page, channel)
            # The newest second may still have a packet on its way (unordered channel).
            settled = [k for k, i in enumerate(placed["indices"]) if i < placed["newest"] - rate]
            indices = [placed["indices"][k] for k in settled]
            m = ramp_length(rate)
            codes = _codes([placed["values"][k] for k in settled], m, scale)
            faults = _discontinuities(indices, codes, m)
            figures[f"{name}_samples_checked"] = len(indices)
            figures[f"{name}_discontinuities"] = len(faults)
            assert faults == [], (name, faults[:10])
            assert len(indices) >= 8 * rate

        # The ECG carries no code (it is filtered for display), but its indices must follow
        # on: the old trace, placed by packet times, blanked 8-14 gaps in every 6 s of it.
        ecg = channels[("monitor-1", ECG_II.mdc)]
        placed = await _placed(page, ecg)
        indices = [i for i in placed["indices"] if i < placed["newest"] - 500]
        assert len(indices) >= 5 * 500
        assert indices == list(range(indices[0], indices[0] + len(indices)))
        assert None not in placed["values"][: len(indices)]
        figures["ecg_samples_checked"] = len(indices)

        await page.locator("#traces").screenshot(path=artifacts_dir() / "traces-coded.png")
        await page.screenshot(path=artifacts_dir() / "room-waveforms-1366.png")

        # Loss: the gateway drops three packets of the oximeter's pleth (one alone, two in
        # a row); the screen shows gaps of exactly their samples, at their place.
        dropped: list[tuple[int, int]] = []
        first_seen: list[int] = []

        def lose(packet: WirePacket) -> bool:  # in the gateway's worker thread
            if packet.channel != oximeter:
                return False
            if not first_seen:
                first_seen.append(packet.sequence)
            if packet.sequence - first_seen[0] in (30, 60, 61):
                dropped.append((packet.first_index, len(packet.samples)))
                return True
            return False

        gateway.vitals.drop_packet = lose
        async with asyncio.timeout(30):
            while len(dropped) < 3:
                await asyncio.sleep(0.1)
        gateway.vitals.drop_packet = None
        lost = {i for first, n in dropped for i in range(first, first + n)}
        lo, hi = min(lost) - 120, max(lost) + 120
        await page.wait_for_function(
            """([id, after]) => window.telemedTraces.get(id).newest > after""",
            arg=[oximeter, hi + 60],
            timeout=30_000,
        )
        placed = await _placed(page, oximeter, lo, hi)
        missing = set(range(lo, hi)) - set(placed["indices"])
        assert missing == lost, (sorted(missing), dropped)
        codes = _codes(placed["values"], 120, 1.0)
        present = list(zip(placed["indices"], codes, strict=True))
        offset = (present[0][1] - present[0][0]) % 120
        wrong = [(i, c) for i, c in present if c is None or (i + offset) % 120 != c]
        assert wrong == []
        figures["dropped_packets"] = dropped
        for device in DEVICES:
            line = gateway.vitals.timeline(device, PLETH.mdc)
            assert line is not None
            figures[f"{device}_gateway"] = {
                "gaps": line.gaps,
                "late_reads": line.late_reads,
                "drift_ppm": round(line.clock.drift * line.rate * 1e6, 1),
            }
        await page.locator("#traces").screenshot(path=artifacts_dir() / "traces-coded-loss.png")

        # Freeze: every trace stops and says so; the last seconds can be reviewed; a speed
        # change relabels; resume goes live again.
        freeze = page.locator(".trace-tools button[name=freeze]")
        await freeze.click()
        await expect(freeze).to_have_attribute("aria-pressed", "true")
        await expect(page.locator(".trace .label").first).to_contain_text("frozen")
        review = page.locator(".trace-tools input[name=review]")
        await expect(review).to_be_enabled()
        assert float(await review.get_attribute("max") or 0) >= 5
        frozen_at = (await _placed(page, oximeter))["newest"]
        await review.evaluate(
            "(el) => { el.value = el.max; el.dispatchEvent(new Event('input')); }"
        )
        await page.locator(".trace-tools select[name=speed]").select_option("50")
        await expect(page.locator(f".trace[data-mdc='{ECG_II.mdc}'] .scale")).to_have_text(
            "×1 · 10 mm/mV · 50 mm/s"
        )
        await page.locator("#traces").screenshot(path=artifacts_dir() / "traces-review.png")
        await freeze.click()
        await expect(freeze).to_have_attribute("aria-pressed", "false")
        await expect(review).to_be_disabled()
        await page.wait_for_function(  # live again: newer samples placed and drawn
            "([id, at]) => window.telemedTraces.get(id).newest > at + 60",
            arg=[oximeter, frozen_at],
        )
        await page.locator(".trace-tools select[name=speed]").select_option("25")
        assert errors == []
    (artifacts_dir() / "waveforms-browser.json").write_text(json.dumps(figures, indent=2))
