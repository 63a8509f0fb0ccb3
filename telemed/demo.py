"""``telemed demo``: the whole pilot on one machine, with demo data only.

The server (API, signaling, the clinic app) with demo accounts in ``data_dir/demo``; a Wonju
bedside gateway reading two simulated devices on pseudo-terminals (an IntelliVue monitor:
ECG, pleth, HR, SpO2, NIBP, respiration, temperature; a CMS50 oximeter) and a synthetic
camera; and a consultation Wonju has requested from Koriyama, waiting to be accepted. A
newcomer opens the printed address, signs in as the Koriyama doctor, accepts and opens it.
"""

from __future__ import annotations

import asyncio

from clinic_ui import STATIC_DIR
from devices.simulation.patient import PatientParameters
from media.video.processing import ProcessingSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, SignalingError, UserCredentials
from signaling.server.app import create_app
from telemed.gateway.runner import Gateway, GatewayConfig
from telemed.serve import DEMO_ACCOUNTS, DEMO_GATEWAY, base_url, seed_demo, start_server
from telemed.settings import Settings
from telemed.simulation import SimulatedDevice, simulated_devices

#: The simulated bedside devices: protocol and device id.
DEMO_DEVICES = (("intellivue", "monitor-1"), ("cms50", "oximeter-1"))


def demo(settings: Settings, host: str | None, port: int | None) -> None:
    asyncio.run(run_demo(settings, host or settings.host, settings.port if port is None else port))


async def run_demo(settings: Settings, host: str, port: int) -> None:
    """Serve the demo on ``host:port`` (0: a free port, printed in the banner) until ^C."""
    demo_settings = settings.model_copy(update={"data_dir": settings.data_dir / "demo"})
    config = demo_settings.server_config()
    await seed_demo(config)
    app = create_app(config, static_dir=STATIC_DIR)
    server, serving, bound = await start_server(app, config, host, port)
    try:
        await _run_bedside(settings, demo_settings, base_url(host, bound), serving)
    finally:
        server.should_exit = True
        await asyncio.wait([serving])


async def _run_bedside(
    settings: Settings, demo_settings: Settings, base: str, serving: asyncio.Task[None]
) -> None:
    await _request_consultation(base)
    name, site_code, key = DEMO_GATEWAY
    site = settings.site(site_code)
    # One patient measured by both devices: the same parameters and seed.
    patient = PatientParameters(heart_rate=78.0, spo2=96.0, seed=11)
    bedside = [
        SimulatedDevice(protocol, device_id, patient) for protocol, device_id in DEMO_DEVICES
    ]
    async with simulated_devices(bedside) as devices:
        gateway = Gateway(
            GatewayConfig(
                server_url=base,
                name=name,
                key=key,
                mains_hz=site.mains_hz,
                devices=tuple(devices),
                camera="synthetic",
                video=ProcessingSettings(640, 480, overlay=site.name, timezone=site.timezone),
            )
        )
        running = spawn(gateway.run(), "gateway")
        _banner(base, demo_settings)
        try:
            await serving  # until ^C: uvicorn stops serving
        finally:
            await cancel_and_wait([running], SignalingError)


async def _request_consultation(base: str) -> None:
    """Wonju's technician asks Koriyama, unless a request or consultation is already open."""
    tech = next(a for a in DEMO_ACCOUNTS if a.username == "tech.wonju")
    client = SignalingClient(base, UserCredentials(tech.username, tech.password))
    try:
        await client.login()
        rows = await client.list_consultations()
        if not any(r.state in ("requested", "active") for r in rows):
            await client.request_consultation(
                "koriyama", consent_cross_border=False, reason="demo: chest pain, ECG review"
            )
    finally:
        await client.close()


def _banner(base: str, settings: Settings) -> None:
    name, _, key = DEMO_GATEWAY
    lines = [
        "",
        "telemed demo: server, clinic app and a simulated Wonju bedside (demo data only)",
        f"  clinic app:  {base}/   (sign in as doctor.koriyama, accept, open)",
        f"  API docs:    {base}/docs",
        "  accounts (username / password / role / site):",
        *(f"    {a.username:16} {a.password:22} {a.role:10} {a.site}" for a in DEMO_ACCOUNTS),
        f"  gateway {name} (key {key}) reads: "
        + ", ".join(f"{p} ({d})" for p, d in DEMO_DEVICES)
        + " and a synthetic camera",
        f"  data: {settings.data_dir}",
        "  Ctrl-C stops it all; `telemed -v demo` also logs every request.",
        "",
    ]
    # The user's first read, so stdout and not a log line (logs are quiet by default).
    print("\n".join(lines), flush=True)
