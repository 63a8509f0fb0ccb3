"""Units end to end (issue 11): a monitor's HL7 gateway sending NIBP in kPa, a temperature
in degF and invasive arterial pressures; the clinic app shows each in its canonical unit
with the converted value (120/80 (93) mmHg, 37.1 °C), and the arterial pressure under its
own label, never a kPa number under mmHg.

A real server, a real gateway with its HL7 listener on loopback, an MLLP sender standing in
for the monitor's gateway, and a Koriyama doctor's page in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from devices.transports.mllp_tcp import MllpSender
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from telemed.gateway.runner import DeviceSpec, Gateway, GatewayConfig
from tests.e2e.browser import chromium, in_english, sign_in
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
async def _bedside(server: LiveServer, port: int) -> AsyncIterator[Gateway]:
    await server.add_gateway(GATEWAY, "wonju", KEY)
    gateway = Gateway(
        GatewayConfig(
            server_url=server.base_url,
            name=GATEWAY,
            key=KEY,
            mains_hz=60.0,
            devices=(DeviceSpec("hl7", str(port), "monitor-hl7"),),
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


async def test_kpa_degf_and_invasive_pressures_show_in_their_units(server: LiveServer) -> None:
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
    port = _free_port()
    async with _bedside(server, port) as gateway, chromium() as browser:
        sending = spawn(_send_every_second(port), "hl7-sender")
        try:
            page = await (await browser.new_context(locale="en-US")).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await in_english(page)
            await sign_in(
                page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row.id}"
            )
            await eventually(lambda: gateway.consultation_id == row.id, timeout=30)
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
