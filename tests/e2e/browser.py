"""Headless Debian Chromium driven by Playwright (its own browser download cannot work here)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from telemed.gateway.runner import Gateway
from tests.e2e.bedside import bedside
from tests.helpers import PASSWORD, LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine has no internet: background fetches only fill the log with refusals.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Real host candidates instead of mDNS names, which the gateway (aiortc) cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # A camera is not needed to receive video; no permission prompt either.
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def _have_chromium() -> bool:
    return os.path.exists(CHROMIUM)


def fake_media(audio_wav: Path | None = None) -> list[str]:
    """Chromium's fake camera (a test pattern) and microphone: ``audio_wav`` is played as the
    microphone, looping (one file per browser process)."""
    args = ["--use-fake-device-for-media-stream"]
    if audio_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio_wav}")
    return args


@contextlib.asynccontextmanager
async def chromium(extra_args: list[str] | None = None) -> AsyncIterator[Browser]:
    if not _have_chromium():
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium")
        pytest.skip("no chromium here (scripts/bootstrap installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*ARGS, *(extra_args or [])]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base_url: str, username: str, password: str, path: str = "") -> None:
    """Open the clinic app (at ``path``, e.g. ``#/consultations/ID``) and sign in; returns
    once the view the address names shows."""
    await page.goto(base_url + "/" + path)
    await expect(page.locator("body[data-ready=true]")).to_be_attached()
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")
    view = "#room-view" if path.startswith("#/consultations/") else "#list-view"
    await expect(page.locator(view)).to_be_visible()


async def in_english(page: Page) -> None:
    """The user of ``page`` has picked English (the app then stops following the site's
    language): for tests that read English labels."""
    await page.add_init_script("localStorage.setItem('telemed.language', 'en')")


def artifacts_dir() -> Path:
    """Where browser tests keep screenshots and measured figures (gitignored)."""
    path = Path(
        os.environ.get("TELEMED_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class WatchedBedside:
    """A bedside gateway and the Koriyama doctor's room page watching it live."""

    gateway: Gateway
    page: Page
    #: Uncaught errors of the page (a test ends asserting there are none).
    errors: list[str]


@contextlib.asynccontextmanager
async def doctor_watching(
    server: LiveServer, reason: str, *, pattern: bool = False
) -> AsyncIterator[WatchedBedside]:
    """Wonju's technician requests a consultation (``reason``), Koriyama's doctor accepts it;
    a bedside gateway (tests.e2e.bedside) runs, and the doctor's room in Chromium, in English,
    shows the link connected. ``pattern``: the oximeter sends the coded test pattern."""
    await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
    await server.add_user("tech.wonju", Role.TECHNICIAN, "wonju")
    tech = SignalingClient(server.base_url, UserCredentials("tech.wonju", PASSWORD))
    doctor = SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
    try:
        row = await tech.request_consultation("koriyama", False, reason)
        await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
        async with bedside(server, pattern=pattern) as gateway, chromium() as browser:
            page = await browser.new_page(locale="en-US")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await in_english(page)
            await sign_in(
                page, server.base_url, "doctor.koriyama", PASSWORD, f"#/consultations/{row.id}"
            )
            await expect(page.locator("#link-state")).to_have_attribute(
                "data-state", "link.connected", timeout=30_000
            )
            yield WatchedBedside(gateway, page, errors)
    finally:
        await doctor.close()
        await tech.close()
