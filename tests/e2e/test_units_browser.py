"""Units end to end (issue 11): monitors sending NIBP in kPa, a temperature in degF and
invasive pressures; the clinic app shows each in its canonical unit with the converted value
(120/80 (93) mmHg, 37.1 °C), and the invasive pressures under their own labels, never a kPa
number under mmHg.

A real server, a real gateway with its HL7 listener on loopback and serial devices on
pseudo-terminals, and a Koriyama doctor's page in Chromium. The monitors: an MLLP sender of
hand-written messages standing in for a monitor's gateway (MDC and UCUM unit spellings), and
the HL7 and IntelliVue simulators set up in kPa and degF with their lines in
(:class:`~devices.simulation.monitor_setup.MonitorSetup`), both at once at one bedside.

The same bedside shows a reader that dies (issue 11): an exception injected into the
IntelliVue codec on the live pty; the page shows the device in error ("device error"), then
its data again once its reader has started afresh."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from devices.drivers import DRIVERS
from devices.model import DeviceEvent
from devices.protocols.intellivue.host import IntelliVueHost
from devices.simulation.hl7_monitor import Hl7MonitorSimulator
from devices.simulation.intellivue_monitor import IntelliVueSimulator
from devices.simulation.monitor_setup import MonitorSetup
from devices.simulation.patient import Patient
from devices.simulation.pty_link import PtyLink
from devices.transports.mllp_tcp import MllpSender
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from tests.e2e.browser import artifacts_dir, chromium, in_english, sign_in
from tests.helpers import PASSWORD, LiveServer, eventually

pytestmark = pytest.mark.slow

GATEWAY, KEY = "bed-1.wonju", "bed-1-key-for-tests-0123456789abcdef"
WAIT_MS = 45_000

OBX = [
    # NIBP in kPa: 16.0/10.67/12.4 kPa are 120/80/93 mmHg.
    "OBX|1|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.1.1.1|16.0|kPa^kPa^UCUM|||||R",
    "OBX|2|NM|150302^MDC_PRESS_CUFF_DIA^MDC|1.1.1.2|10.67|kPa^kPa^UCUM|||||R",
    "OBX|3|NM|150303^MDC_PRESS_CUFF_MEAN^MDC|1.1.1.3|12.4|kPa^kPa^UCUM|||||R",
    # 98.78 degF is 37.1 Cel.
    "OBX|4|NM|150344^MDC_TEMP^MDC|1.1.1.4|98.78|[degF]^[degF]^UCUM|||||R",
    # Invasive arterial pressure (the ART family), in MDC units.
    "OBX|5|NM|150033^MDC_PRESS_BLD_ART_SYS^MDC|1.1.1.5|121|266016^MDC_DIM_MMHG^MDC|||||R",
    "OBX|6|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC|1.1.1.6|12|kPa|||||R",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _bedside(
    server: LiveServer, port: int, serial: Sequence[DeviceSpec] = ()
) -> AsyncIterator[Gateway]:
    await server.add_gateway(GATEWAY, "wonju", KEY)
    gateway = Gateway(
        GatewayConfig(
            server_url=server.base_url,
            name=GATEWAY,
            key=KEY,
            mains_hz=60.0,
            devices=(DeviceSpec("hl7", str(port), "monitor-hl7"), *serial),
            hl7_host="127.0.0.1",
        )
    )
    running = spawn(gateway.run(), "gateway")
    try:
        yield gateway
    finally:
        await cancel_and_wait([running])


async def _send_every_second(port: int) -> None:
    """The monitor's gateway: one ORU^R01 a second, retried while the listener is not up."""
    sender = MllpSender("127.0.0.1", port)
    n = 0
    try:
        while True:
            n += 1
            head = f"MSH|^~\\&|MON|ICU|GW|H|20260101120000||ORU^R01|C{n}|P|2.6\rOBR|1"
            with contextlib.suppress(OSError, TimeoutError):
                await sender.send("\r".join([head, *OBX]) + "\r")
            await asyncio.sleep(1.0)
    finally:
        await sender.close()


async def _active_consultation(server: LiveServer) -> str:
    """A Wonju technician's request accepted by a Koriyama doctor: the consultation's id."""
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    await tech.login()
    row = await tech.request_consultation("koriyama", True, "units")
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    await doctor.login()
    await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
    await doctor.close()
    await tech.close()
    return str(row.id)


async def test_kpa_degf_and_invasive_pressures_show_in_their_units(server: LiveServer) -> None:
    row_id = await _active_consultation(server)
    port = _free_port()
    async with _bedside(server, port) as gateway, chromium() as browser:
        sending = spawn(_send_every_second(port), "hl7-sender")
        try:
            page = await (await browser.new_context(locale="en-US")).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await in_english(page)
            await sign_in(
                page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row_id}"
            )
            await eventually(lambda: gateway.consultation_id == row_id, timeout=30)
            nibp, temp = page.locator("#num-nibp"), page.locator("#num-temperature")
            abp, abp_mean = page.locator("#num-abp_sys"), page.locator("#num-abp_mean")
            await expect(nibp.locator(".value")).to_have_text("120/80 (93)", timeout=WAIT_MS)
            await expect(nibp.locator(".unit")).to_have_text("mmHg")
            await expect(temp.locator(".value")).to_have_text("37.1", timeout=WAIT_MS)
            await expect(temp.locator(".unit")).to_have_text("°C")
            await expect(abp.locator(".value")).to_have_text("121", timeout=WAIT_MS)
            await expect(abp.locator(".unit")).to_have_text("mmHg")
            await expect(abp.locator(".name")).to_have_text("ABP systolic")
            await expect(abp_mean.locator(".value")).to_have_text("90.0", timeout=WAIT_MS)
            await expect(abp.locator(".head .device")).to_contain_text("monitor-hl7@MON:ICU")
            assert errors == []
        finally:
            await cancel_and_wait([sending])


#: What each tile shows for a device: its value and unit, large when it is the tile's
#: primary device, else in the tile's list of the others ("device: value unit").
_READINGS = """(tile) => {
  const root = document.getElementById(tile);
  if (!root) return {};
  const out = {};
  if (root.dataset.device) {
    const value = root.querySelector(".value").textContent;
    const unit = root.querySelector(".unit").textContent;
    out[root.dataset.device] = `${value} ${unit}`.trim();
  }
  for (const li of root.querySelectorAll("li[data-device]")) {
    out[li.dataset.device] = li.textContent.slice(li.dataset.device.length + 2);
  }
  return out;
}"""

#: The simulated patient (118/76 (90) mmHg, 36.8 °C, ABP 121/79 (93), PAP 24/10 (15), CVP 8)
#: as both monitors send it in kPa and degF with one decimal, converted back: 15.7/10.1/12.0
#: kPa are 117.8/75.8/90.0 mmHg (NIBP is shown in whole mmHg), 98.2 degF 36.78 °C, ABP
#: 16.1/10.5/12.4 kPa 120.8/78.8/93.0, PAP 3.2/1.3/2.0 kPa 24/9.8/15 mmHg (to 0.01). A monitor
#: relabelled instead of converted would show 16/10 (12) mmHg and 98.2 °C.
EXPECTED = {
    "num-nibp": "118/76 (90) mmHg",
    "num-temperature": "36.8 °C",
    "num-abp_sys": "121 mmHg",
    "num-abp_dia": "78.8 mmHg",
    "num-abp_mean": "93.0 mmHg",
    "num-pap_sys": "24 mmHg",
    "num-pap_dia": "9.8 mmHg",
    "num-pap_mean": "15 mmHg",
}

#: Records in window.__states every [state, text] the device's list item is rendered with.
_RECORD_STATES = """(device) => {
  window.__states = [];
  const list = document.getElementById("devices");
  const record = () => {
    const items = [...list.querySelectorAll("li[data-device]")];
    const li = items.find((e) => e.dataset.device === device);
    if (li) window.__states.push([li.dataset.state, li.textContent]);
  };
  new MutationObserver(record).observe(list, { childList: true, subtree: true });
}"""

NAMES = {
    "num-abp_sys": "ABP systolic",
    "num-pap_sys": "PAP systolic",
    "num-cvp_mean": "CVP mean",
    "num-temperature": "Temperature",
}


class _Trap:
    """Armed, the next IntelliVue data the codec is given raises (once)."""

    def __init__(self) -> None:
        self.armed = False
        self.sprung = 0

    def spring(self) -> None:
        if self.armed:
            self.armed = False
            self.sprung += 1
            raise RuntimeError("a codec bug met on a live port")


class _TrappedHost(IntelliVueHost):
    trap = _Trap()

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        self.trap.spring()
        return super().receive_data(data, now)


class _Patient(Patient):
    """A patient whose held parameters the test may change (a fever, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.overrides: dict[str, float] = {}

    def held(self, key: str, usual: float) -> float:
        return self.overrides.get(key, super().held(key, usual))


async def _readings(page: Page, tile: str) -> dict[str, str]:
    readings: dict[str, str] = await page.evaluate(_READINGS, tile)
    return readings


async def test_simulators_in_kpa_and_degf_with_lines_in_and_a_reader_that_dies(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = MonitorSetup.parse("kpa,degf,invasive")
    trap = _TrappedHost.trap = _Trap()
    monkeypatch.setitem(
        DRIVERS, "intellivue", replace(DRIVERS["intellivue"], make_decoder=_TrappedHost)
    )
    row_id = await _active_consultation(server)
    port = _free_port()
    link = PtyLink(tmp_path / "intellivue")
    patient = _Patient()
    intellivue = spawn(IntelliVueSimulator(link, patient, setup=setup).run(), "intellivue")
    sending = spawn(Hl7MonitorSimulator("127.0.0.1", port, setup=setup).run(), "hl7-monitor")
    try:
        await eventually(lambda: link.plugged)
        serial = [DeviceSpec("intellivue", link.path, "monitor-iv")]
        async with _bedside(server, port, serial) as gateway, chromium() as browser:
            context = await browser.new_context(
                locale="en-US", viewport={"width": 1366, "height": 900}
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await in_english(page)
            await sign_in(
                page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row_id}"
            )
            await eventually(lambda: gateway.consultation_id == row_id, timeout=30)

            async def both(tile: str) -> dict[str, str] | None:
                readings = await _readings(page, tile)
                return readings if len(readings) == 2 else None

            devices = sorted(await eventually(lambda: both("num-cvp_mean"), timeout=45))
            assert devices[0].startswith("monitor-hl7@") and devices[1] == "monitor-iv"

            async def shows(tile: str, expected: dict[str, str]) -> bool:
                return await _readings(page, tile) == expected

            for tile, text in EXPECTED.items():
                expected = dict.fromkeys(devices, text)
                await eventually(
                    functools.partial(shows, tile, expected), what=f"{tile}: {expected}"
                )
            # Each tile is named, however long its device's id (ABP and PAP both in mmHg,
            # side by side: a name squeezed out by the id leaves them apart by place only).
            for tile, name in NAMES.items():
                await expect(page.locator(f"#{tile} .name")).to_have_text(name)
                await expect(page.locator(f"#{tile} .name")).to_be_visible()
                box = await page.locator(f"#{tile} .name").bounding_box()
                assert box is not None and box["width"] > 30, (tile, box)
            # CVP: 8 mmHg sent as 1.1 kPa, 8.25 mmHg back.
            assert await _readings(page, "num-cvp_mean") == dict.fromkeys(devices, "8.3 mmHg")
            await page.screenshot(path=artifacts_dir() / "units-monitors.png", full_page=True)

            # A reader that dies: its codec raises on the live pty.
            # The error may show for less than a second (the reader starts afresh after
            # its backoff): every state the page renders is recorded as it renders it.
            iv = page.locator('#devices li[data-device="monitor-iv"]')
            await expect(iv).to_have_attribute("data-state", "connected")
            await page.evaluate(_RECORD_STATES, "monitor-iv")
            trap.armed = True

            async def shown_in_error() -> list[str]:
                shown: list[list[str]] = await page.evaluate("() => window.__states")
                return [row[1] for row in shown if row[0] == "error"]

            (shown,) = (await eventually(shown_in_error, timeout=45))[:1]
            assert shown.startswith("monitor-iv: device error (device error: RuntimeError")
            assert "a codec bug met on a live port" in shown
            # Then data again, measured after the fault: the reader started afresh (a new
            # association) and the fever taken now (38.5 Cel, sent as 101.3 degF) shows.
            patient.overrides["temperature"] = 38.5
            await expect(iv).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
            fever = {devices[0]: "36.8 °C", "monitor-iv": "38.5 °C"}
            await eventually(lambda: shows("num-temperature", fever), timeout=45, what=str(fever))
            await page.screenshot(
                path=artifacts_dir() / "units-device-recovered.png", full_page=True
            )
            assert trap.sprung == 1
            assert errors == []
    finally:
        await cancel_and_wait([sending, intellivue])
