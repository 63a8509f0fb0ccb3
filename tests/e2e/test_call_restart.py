"""The two doctors' own call (browser to browser, clinic_ui/static/js/call.js) through a
server restart (issue 12): the media does not pass through the server, and the browsers key
each other by who they are (account and tab), not by the peer ids a restart renews, so the
call goes on through the outage and after it with the connection it had."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction
from tests.e2e.browser import chromium, fake_media, in_english, sign_in
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.slow

#: Counts the page's peer connections (added before any script of the page runs).
_COUNT_CONNECTIONS = """
const Original = window.RTCPeerConnection;
window.__connections = 0;
window.RTCPeerConnection = class extends Original {
  constructor(...args) { super(...args); window.__connections += 1; }
};
"""

_REMOTE_FRAMES = """key => {
    const v = document.querySelector(`.participant[data-principal="${key}"] video`);
    return v ? v.getVideoPlaybackQuality().totalVideoFrames : -1;
}"""


#: The data-principal of the participant who is not this page's user.
_OTHER = """() => [...document.querySelectorAll('.participant')]
    .find((li) => !li.textContent.includes('(you)'))?.dataset.principal"""


def _password(user: str) -> str:
    return f"call-restart-password-{user}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path)
    for user, site in (("dk", "koriyama"), ("dw", "wonju")):
        args = ("users", "add", user, "--role", "doctor", "--site", site, "--password-stdin")
        proc.cli(*args, stdin=f"{_password(user)}\n".encode())
    try:
        yield proc
    finally:
        proc.stop()


async def _frames_grow(page: Page, key: str, by: int, timeout_ms: float = 20_000) -> None:
    before = await page.evaluate(_REMOTE_FRAMES, key)
    await page.wait_for_function(
        f"([key, n]) => ({_REMOTE_FRAMES})(key) > n", arg=[key, before + by], timeout=timeout_ms
    )


async def test_the_doctors_call_goes_on_through_a_server_restart(server: ServerProcess) -> None:
    await server.start()
    base = server.base_url
    wonju = SignalingClient(base, UserCredentials("dw", _password("dw")))
    row = await wonju.request_consultation("koriyama", True, "second opinion")
    koriyama = SignalingClient(base, UserCredentials("dk", _password("dk")))
    await koriyama.consultation_action(row.id, ConsultationAction.ACCEPT)
    await wonju.close()
    await koriyama.close()

    async with chromium(fake_media()) as first, chromium(fake_media()) as second:
        pages: dict[str, Page] = {}
        errors: list[str] = []
        for browser, user in ((first, "dk"), (second, "dw")):
            page = await browser.new_page(locale="en-US")
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.add_init_script(_COUNT_CONNECTIONS)
            await in_english(page)
            await sign_in(page, base, user, _password(user), f"#/consultations/{row.id}")
            pages[user] = page
        other: dict[str, str] = {}
        for user, page in pages.items():
            await expect(page.locator(".participant")).to_have_count(2, timeout=20_000)
            other[user] = await page.evaluate(_OTHER)
            # The call's first negotiation: generous, as a loaded machine is slower, not wrong.
            await _frames_grow(page, other[user], 10, timeout_ms=60_000)
        assert [await p.evaluate("window.__connections") for p in pages.values()] == [1, 1]

        server.kill()  # no goodbye to anyone
        for user, page in pages.items():
            # No bedside in this room: the link badge itself says the server is away.
            await expect(page.locator("#link-state.lost")).to_be_visible(timeout=15_000)
            await _frames_grow(page, other[user], 30)  # a second or more without the server
        await server.start()

        for page in pages.values():
            await expect(page.locator("#link-state.lost")).to_have_count(0, timeout=45_000)
            await expect(page.locator("#signaling-state")).to_be_hidden(timeout=45_000)
            await expect(page.locator(".participant")).to_have_count(2, timeout=20_000)
        await pages["dk"].wait_for_timeout(3_000)  # time for any renegotiation to start
        for user, page in pages.items():
            await _frames_grow(page, other[user], 10)
        assert [await p.evaluate("window.__connections") for p in pages.values()] == [1, 1]
        assert errors == []
