"""``telemed gateway``: run the bedside gateway (devices, camera and sound -> the other site)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from devices.simulation.registry import SIMULATORS
from telemed.settings import GatewayOptions, Settings, SettingsError

if TYPE_CHECKING:
    from devices.dicom.pacs import PacsSettings
    from telemed.gateway.cameras import CameraSpec
    from telemed.gateway.imaging import ImagingConfig
    from telemed.gateway.runner import GatewayConfig

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "run the bedside gateway: read devices and the camera, send them to the other site"
    p = sub.add_parser("gateway", help=text, description=text)
    p.add_argument("--server", help="server base URL (setting gateway.server_url)")
    p.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="trust an https:// server whose certificate (a self-signed one) or CA is in this "
        "PEM file (setting gateway.ca_file); the certificate is always verified",
    )
    p.add_argument("--name", help="gateway account name (setting gateway.name)")
    p.add_argument(
        "--key-file",
        type=Path,
        help="file holding the gateway key (else setting gateway.key, e.g. TELEMED_GATEWAY__KEY)",
    )
    p.add_argument("--site", help="the bedside's site: sets the ECG mains notch")
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="PROTOCOL:PORT",
        help="a device to read, e.g. cms50:/dev/ttyUSB0 or hl7:2575 (repeatable)",
    )
    p.add_argument(
        "--simulate",
        action="append",
        default=[],
        metavar="PROTOCOL",
        choices=sorted(SIMULATORS),
        help="also start a simulated device on a pseudo-terminal and read it (repeatable)",
    )
    p.add_argument(
        "--camera",
        action="append",
        metavar="[NAME=]SPEC[:PURPOSE]",
        help="a camera: SPEC is synthetic, a camera index, a device path, a file or a URL; "
        "without NAME it is the room camera; repeatable, e.g. --camera room=0 --camera "
        "ultrasound=/dev/video2 (a name other than room is diagnostic: sent unenhanced, "
        "frames keepable as DICOM; :room or :diagnostic after SPEC says so outright)",
    )
    p.add_argument("--size", help="video size WIDTHxHEIGHT (default 640x480)")
    p.add_argument(
        "--audio",
        metavar="DEVICE",
        help="the bedside's sound: alsa:DEVICE (e.g. alsa:plughw:1,0), a WAV file (looped), "
        "synthetic (a test tone) or synthetic:clicks (latency); default none",
    )
    p.add_argument(
        "--audio-mode",
        choices=["voice", "stethoscope"],
        help="voice (a room microphone, the default) or stethoscope (heart and lung sounds: "
        "fullband Opus, no speech filter, no gain control or noise suppression)",
    )
    p.add_argument(
        "--speaker",
        metavar="DEVICE",
        help="play clinicians' talk-back here: alsa:DEVICE or a WAV file; default none",
    )
    p.add_argument(
        "--relay-only",
        action="store_true",
        default=None,
        help="reach viewers through the TURN relay only (setting gateway.relay_only)",
    )
    p.add_argument(
        "--dicom-port",
        type=int,
        metavar="PORT",
        help="listen for DICOM modalities (a Storage SCP) on this port (setting "
        "gateway.dicom_port); their images go to the active consultation",
    )
    p.add_argument("--dicom-ae", metavar="TITLE", help="the SCP's AE title (default TELEMED)")
    p.add_argument(
        "--dicom-allow",
        metavar="AE1,AE2",
        help="calling AE titles allowed to send (setting gateway.dicom_allow); others refused",
    )
    p.add_argument(
        "--pacs",
        metavar="HOST:PORT",
        help="the site's PACS, which the site's clinicians search and pull studies from in "
        "the room (C-FIND, C-GET; setting gateway.pacs); needs --dicom-port",
    )
    p.add_argument(
        "--pacs-ae", metavar="TITLE", help="the PACS's AE title (setting gateway.pacs_ae)"
    )
    p.add_argument(
        "--pacs-calling-ae",
        metavar="TITLE",
        help="our AE title when calling the PACS (default: the SCP's, --dicom-ae)",
    )
    p.add_argument(
        "--waveform-history",
        type=float,
        metavar="SECONDS",
        help="keep this much of each waveform for a doctor's review after a link's gap "
        "(setting gateway.waveform_history_s, default 600)",
    )
    p.add_argument("--consultation", help="join this consultation (default: follow the site's)")
    p.add_argument("--seconds", type=float, help="stop after this long (default: run until ^C)")


def config_from(args: argparse.Namespace, settings: Settings) -> GatewayConfig:
    """The gateway's configuration: flags first, then settings. Raises SettingsError."""
    # The media stack loads when a gateway runs, not for every `telemed` command.
    from media.audio import AudioMode
    from media.video.processing import ProcessingSettings
    from media.waveform.history import HistorySettings
    from telemed.gateway.runner import DeviceSpec, GatewayConfig

    options = settings.gateway
    name = args.name or options.name
    if not name:
        raise SettingsError("the gateway needs a name: --name or setting gateway.name")
    if args.key_file is not None:
        try:
            key = args.key_file.read_text().strip()
        except OSError as exc:
            raise SettingsError(f"cannot read the key file: {exc}") from None
    elif options.key is not None:
        key = options.key.get_secret_value()
    else:
        raise SettingsError("the gateway needs its key: --key-file or TELEMED_GATEWAY__KEY")
    site_code = args.site or options.site
    if not site_code:
        raise SettingsError("the gateway needs its site: --site or setting gateway.site")
    site = settings.site(site_code)
    width, height = options.width, options.height
    if args.size:
        try:
            w, _, h = args.size.lower().partition("x")
            width, height = int(w), int(h)
        except ValueError:
            raise SettingsError(f"--size {args.size!r}: expected WIDTHxHEIGHT") from None
    try:
        devices = tuple(DeviceSpec.parse(d) for d in (*options.devices, *args.device))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    server = args.server or options.server_url or settings.local_server_url()
    ca_file = getattr(args, "ca", None) or options.ca_file
    if ca_file is not None:
        from telemed.tls import check_ca_file

        check_ca_file(ca_file)
    history_s = getattr(args, "waveform_history", None) or options.waveform_history_s
    try:
        history = HistorySettings(seconds=history_s)
    except ValueError as exc:
        raise SettingsError(f"--waveform-history: {exc}") from None
    return GatewayConfig(
        imaging=_imaging_config(args, options),
        server_url=server,
        name=name,
        key=key,
        mains_hz=site.mains_hz,
        devices=devices,
        cameras=_cameras(args, options),
        video=ProcessingSettings(
            width=width, height=height, overlay=site.name, timezone=site.timezone
        ),
        consultation_id=args.consultation or options.consultation,
        # Read with a default: callers that build the namespace by hand may leave them out.
        audio=getattr(args, "audio", None) or options.audio,
        audio_mode=AudioMode(getattr(args, "audio_mode", None) or options.audio_mode),
        speaker=getattr(args, "speaker", None) or options.speaker,
        # What the server has not taken yet survives a restart of the gateway too.
        data_dir=settings.data_dir / "gateway",
        ca_file=ca_file,
        relay_only=bool(getattr(args, "relay_only", None) or options.relay_only),
        waveform_history=history,
    )


def _cameras(args: argparse.Namespace, options: GatewayOptions) -> tuple[CameraSpec, ...]:
    """``--camera`` flags if any (each replaces the settings' cameras), else the settings'
    ``camera`` and ``cameras``. Raises SettingsError."""
    from telemed.gateway.cameras import parse_cameras

    flags = getattr(args, "camera", None)
    if isinstance(flags, str):  # a namespace built by hand
        flags = [flags]
    texts = list(flags) if flags else [*filter(None, [options.camera]), *options.cameras]
    try:
        return parse_cameras(texts)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _imaging_config(args: argparse.Namespace, options: GatewayOptions) -> ImagingConfig | None:
    from devices.dicom.scp import ScpSettings
    from telemed.gateway.imaging import ImagingConfig

    port = getattr(args, "dicom_port", None)
    port = options.dicom_port if port is None else port
    if port is None:
        if getattr(args, "pacs", None) or options.pacs:
            raise SettingsError(
                "--pacs needs the bedside's imaging path (pulled studies take it): "
                "--dicom-port (setting gateway.dicom_port)"
            )
        return None
    allow_text = getattr(args, "dicom_allow", None)
    allowed = (
        tuple(a.strip() for a in allow_text.split(",") if a.strip())
        if allow_text
        else options.dicom_allow
    )
    try:
        scp = ScpSettings(
            ae_title=getattr(args, "dicom_ae", None) or options.dicom_ae,
            port=port,
            allowed_calling=allowed,
        )
    except ValueError as exc:
        raise SettingsError(f"DICOM: {exc} (--dicom-ae, --dicom-allow)") from None
    return ImagingConfig(scp, pacs=_pacs_settings(args, options, scp.ae_title))


def _pacs_settings(
    args: argparse.Namespace, options: GatewayOptions, own_ae: str
) -> PacsSettings | None:
    from devices.dicom.pacs import PacsSettings

    address = getattr(args, "pacs", None) or options.pacs
    if not address:
        return None
    host, _, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:104
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SettingsError(f"--pacs {address!r}: expected HOST:PORT (setting gateway.pacs)")
    called = getattr(args, "pacs_ae", None) or options.pacs_ae
    if not called:
        raise SettingsError("--pacs needs the PACS's AE title: --pacs-ae (setting gateway.pacs_ae)")
    calling = getattr(args, "pacs_calling_ae", None) or options.pacs_calling_ae or own_ae
    for flag, title in (("--pacs-ae", called), ("--pacs-calling-ae", calling)):
        if not 1 <= len(title.strip()) <= 16 or "\\" in title:
            raise SettingsError(f"{flag} {title!r}: an AE title is 1 to 16 characters")
    return PacsSettings(
        host, int(port_text), called.strip(), calling.strip(), timeout_s=options.pacs_timeout_s
    )


async def _run(config: GatewayConfig, simulate: list[str], seconds: float | None) -> int:
    from devices.errors import DicomListenError
    from devices.simulation.patient import PatientParameters
    from media.errors import MediaError
    from runtime.tasks import cancel_and_wait
    from signaling.client import SignalingError, UntrustedServer
    from telemed.gateway.runner import Gateway
    from telemed.simulation import SimulatedDevice, simulated_devices

    wanted = [
        SimulatedDevice(protocol, f"{protocol}-sim-{k}", PatientParameters(seed=k))
        for k, protocol in enumerate(simulate)
    ]
    async with simulated_devices(wanted) as simulated:
        gateway = Gateway(replace(config, devices=(*config.devices, *simulated)))
        # Not spawn(): its end is awaited right here, and a refusal is told as one line.
        main = asyncio.create_task(gateway.run(), name="gateway")
        try:
            # Until the gateway ends or `seconds` pass; asyncio.wait cancels nothing itself.
            done, _ = await asyncio.wait([main], timeout=seconds)
            if main in done:
                main.result()  # raises what ended it
        except SignalingError as exc:
            print(f"telemed: the server refused the gateway: {exc}", file=sys.stderr)
            return 1
        except UntrustedServer as exc:
            print(
                f"telemed: the gateway did not connect: the TLS certificate of {exc.url} is "
                f"not trusted ({exc.verify_message}); for a self-signed certificate, pass "
                "its file with --ca FILE (setting gateway.ca_file)",
                file=sys.stderr,
            )
            return 1
        except (MediaError, DicomListenError) as exc:  # a device or port that cannot be opened
            print(f"telemed: {exc}", file=sys.stderr)
            return 1
        finally:
            await cancel_and_wait(
                [main], SignalingError, UntrustedServer, MediaError, DicomListenError
            )
    print(
        f"gateway stopped: {gateway.packets_sent} waveform packets, "
        f"{gateway.events_sent} event messages",
        file=sys.stderr,
    )
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    config = config_from(args, settings)
    return asyncio.run(_run(config, args.simulate, args.seconds))
