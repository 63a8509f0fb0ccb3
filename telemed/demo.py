"""``telemed demo``: the whole pilot on one machine, with demo data only.

The server (API, signaling, the clinic app) with demo accounts in ``data_dir/demo``; a Wonju
bedside gateway reading two simulated devices on pseudo-terminals (an IntelliVue monitor:
ECG, pleth, HR, SpO2, NIBP, respiration, temperature; a CMS50 oximeter) and a synthetic
camera; and a consultation Wonju has requested from Koriyama, waiting to be accepted. A
newcomer opens the printed address, signs in as the Koriyama doctor, accepts and opens it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from devices.simulation.patient import PatientParameters
from media.video.processing import ProcessingSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, SignalingError, UserCredentials
from telemed.gateway.runner import Gateway, GatewayConfig
from telemed.serve import (
    DEMO_ACCOUNTS,
    DEMO_GATEWAY,
    base_url,
    build_app,
    seed_demo,
    start_server,
)
from telemed.settings import Settings
from telemed.simulation import SimulatedDevice, simulated_devices
from telemed.tls import (
    DemoCertificate,
    demo_certificate,
    demo_names,
    lan_addresses,
    server_context,
)

_EVERY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104

#: The simulated bedside devices: protocol and device id.
DEMO_DEVICES = (("intellivue", "monitor-1"), ("cms50", "oximeter-1"))


def demo(settings: Settings, host: str | None, port: int | None, *, lan: bool = False) -> None:
    """``lan``: HTTPS on every address with the demo's self-signed certificate (made here),
    unless ``host`` names one address."""
    if lan:
        host = host or "0.0.0.0"  # noqa: S104 (the point: reachable from the ward's LAN)
    asyncio.run(
        run_demo(settings, host or settings.host, settings.port if port is None else port, lan=lan)
    )


@dataclass(frozen=True)
class LanAccess:
    """How other machines reach a demo served with ``--lan``."""

    certificate: DemoCertificate
    #: The addresses others open (one per LAN address of this machine).
    urls: tuple[str, ...]


def lan_certificate(data_dir: Path, host: str) -> tuple[DemoCertificate, list[str]]:
    """The demo's certificate (made, or kept from an earlier run) for this machine's names
    and LAN addresses, or for ``host`` when it names one address; and the addresses others
    open."""
    addresses = lan_addresses() if host in _EVERY_ADDRESS else [host]
    certificate = demo_certificate(data_dir / "tls", demo_names(addresses))
    if host == "0.0.0.0":  # noqa: S104 (IPv4 only: its IPv6 addresses are not served)
        addresses = [a for a in addresses if ":" not in a]
    return certificate, addresses


async def run_demo(settings: Settings, host: str, port: int, *, lan: bool = False) -> None:
    """Serve the demo on ``host:port`` (0: a free port, printed in the banner) until ^C;
    with ``lan``, over HTTPS with the demo's self-signed certificate."""
    demo_settings = settings.model_copy(update={"data_dir": settings.data_dir / "demo"})
    config = demo_settings.server_config()
    tls_context = None
    access = None
    ca_file = None
    if lan:
        certificate, addresses = lan_certificate(demo_settings.ensure_data_dir(), host)
        tls_context = server_context(certificate.cert_file, certificate.key_file)
        config = config.model_copy(update={"https": True})
        ca_file = certificate.cert_file
    await seed_demo(config)
    app = build_app(config)  # as telemed serve: the clinic app and the image renderer
    server, serving, bound = await start_server(app, config, host, port, tls=tls_context)
    if lan:
        urls = tuple(base_url(a, bound, https=True) + "/" for a in addresses)
        access = LanAccess(certificate, urls)
    base = base_url(host, bound, https=lan)
    try:
        await _run_bedside(settings, demo_settings, base, server, serving, access, ca_file)
    finally:
        server.should_exit = True
        await asyncio.wait([serving])


async def _run_bedside(
    settings: Settings,
    demo_settings: Settings,
    base: str,
    server: uvicorn.Server,
    serving: asyncio.Task[None],
    access: LanAccess | None,
    ca_file: Path | None,
) -> None:
    await _request_consultation(base, ca_file)
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
                ca_file=ca_file,
            )
        )
        running = spawn(gateway.run(), "gateway")
        _banner(base, demo_settings, access)
        stopping = spawn(_exit_requested(server), "demo-exit-watch")
        try:
            # Until ^C. The bedside stops first, as soon as uvicorn is asked to: its sockets
            # then close from its side and do not hold the server's shutdown open.
            await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([running, stopping], SignalingError)
        await serving


async def _exit_requested(server: uvicorn.Server) -> None:
    """Return once ``server`` has been asked to stop (uvicorn offers a flag, no event)."""
    while not server.should_exit:  # noqa: ASYNC110 (a flag set by a signal handler)
        await asyncio.sleep(0.1)


async def _request_consultation(base: str, ca_file: Path | None) -> None:
    """Wonju's technician asks Koriyama, unless a request or consultation is already open."""
    tech = next(a for a in DEMO_ACCOUNTS if a.username == "tech.wonju")
    client = SignalingClient(base, UserCredentials(tech.username, tech.password), ca_file=ca_file)
    try:
        await client.login()
        rows = await client.list_consultations()
        if not any(r.state in ("requested", "active") for r in rows):
            await client.request_consultation(
                "koriyama", consent_cross_border=False, reason="demo: chest pain, ECG review"
            )
    finally:
        await client.close()


def _banner(base: str, settings: Settings, access: LanAccess | None) -> None:
    name, _, key = DEMO_GATEWAY
    lines = [
        "",
        "telemed demo: server, clinic app and a simulated Wonju bedside (demo data only)",
        f"  clinic app:  {base}/   (sign in as doctor.koriyama, accept, open)",
    ]
    if access is not None:
        cert = access.certificate
        lines += [
            "  from another machine on this network: "
            + ("   ".join(access.urls) or "(no LAN address found; use this machine's address)"),
            f"  certificate: self-signed, {cert.cert_file} (valid until "
            f"{cert.not_after:%Y-%m-%d}), names {', '.join(cert.names)}",
            f"  SHA-256 fingerprint: {cert.fingerprint}",
            "  The browser warns about the self-signed certificate: compare the fingerprint it",
            "  shows (certificate details) with this one before accepting it.",
        ]
    lines += [
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
