"""The bedside's imaging against a real server: an active Wonju-Koriyama consultation
(:class:`~tests.signaling.imaging.room.ImagingRoom`) and the Wonju gateway's
:class:`~telemed.gateway.imaging.GatewayImaging` running with the gateway's own login, its
SCP on a free port admitting storescu."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from devices.dicom.scp import ScpSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import GatewayCredentials, SignalingClient
from signaling.config import DEFAULT_SITES
from telemed.gateway.imaging import GatewayImaging, ImagingConfig, client_send
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.helpers import eventually, make_config, run_server
from tests.signaling.imaging.room import GATEWAY_KEY, SEOUL, ImagingRoom


@contextlib.asynccontextmanager
async def imaging_gateway(
    tmp_path: Path, *, seoul: bool = True
) -> AsyncIterator[tuple[ImagingRoom, GatewayImaging]]:
    """The room and the gateway's imaging, its SCP listening; ``seoul``: the server also
    knows Seoul, with a doctor and an administrator there (ImagingRoom.setup). The server
    keeps its files under ``tmp_path/server``, the gateway under ``tmp_path/gateway``."""
    (tmp_path / "server").mkdir()
    sites = (*DEFAULT_SITES, SEOUL) if seoul else DEFAULT_SITES
    config = make_config(tmp_path / "server", sites=sites)
    async with run_server(config) as server, ImagingRoom(server) as room:
        await room.setup(seoul=seoul)
        client = SignalingClient(server.base_url, GatewayCredentials("gw", GATEWAY_KEY))

        async def consent(cid: str) -> bool:
            return (await client.get_consultation(cid)).imaging_consent

        settings = ImagingConfig(
            ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,)), consent_ttl_s=0
        )
        imaging = GatewayImaging(
            settings, tmp_path / "gateway", lambda: room.cid, consent, client_send(client)
        )
        task = spawn(imaging.run(), name="imaging")
        try:
            await eventually(lambda: imaging.scp is not None)
            yield room, imaging
        finally:
            await cancel_and_wait([task])
            await client.close()
