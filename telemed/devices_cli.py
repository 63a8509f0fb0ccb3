"""``telemed devices``: list ports, simulate a device, read one live, decode a capture."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

from devices.drivers import DECODERS, DRIVERS
from devices.errors import RecordError
from devices.export import to_dict, to_text
from devices.hexdump import load_text_capture
from devices.model import DeviceEvent, FrameError
from devices.protocols.intellivue.host import HOST_REQUEST
from devices.reader import DeviceReader
from devices.simulation import alarms as scenarios
from devices.simulation.hl7_monitor import Hl7MonitorSimulator
from devices.simulation.intellivue_monitor import IntelliVueSimulator
from devices.simulation.monitor_setup import MonitorSetup
from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.recorded import RecordedPatient
from devices.simulation.registry import SIMULATORS
from devices.simulation.simulators import Faults, Simulator
from devices.transports.mllp_tcp import Hl7Listener
from devices.transports.serial_port import list_serial_ports
from runtime.tasks import cancel_and_wait, spawn


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    devices = sub.add_parser("devices", help="bedside devices: list, simulate, read, decode")
    actions = devices.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="serial ports with USB ids and a suggested protocol")

    sim = actions.add_parser(
        "simulate",
        help="simulate a device: serial ones on a pseudo-terminal (prints its path), "
        "hl7 as a monitor gateway sending to --to HOST:PORT",
    )
    sim.add_argument("protocol", choices=sorted([*SIMULATORS, "hl7"]))
    sim.add_argument("--link", type=Path, help="stable symlink to the pty (like /dev/ttyUSB0)")
    sim.add_argument("--to", default="127.0.0.1:2575", help="hl7: the listener to send to")
    sim.add_argument("--heart-rate", type=float, default=72.0)
    sim.add_argument("--spo2", type=float, default=97.0)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--record",
        type=Path,
        help="replay a WFDB record (path without extension, e.g. a MIT-BIH record) instead "
        "of the synthetic patient",
    )
    sim.add_argument("--probe-off", action="store_true", help="start with the probe off")
    sim.add_argument(
        "--monitor-setup",
        type=_monitor_setup,
        default=MonitorSetup(),
        metavar="WORDS",
        help="intellivue, hl7: how the monitor is set up, comma-separated: kpa (pressures "
        "in kPa), degf (temperature in degrees Fahrenheit), invasive (ABP, PAP and CVP)",
    )
    sim.add_argument("--noise", type=float, default=0.0, help="garbage bursts a second")
    sim.add_argument("--drop", type=float, default=0.0, help="probability a byte is lost")
    sim.add_argument(
        "--alarm",
        action="append",
        default=[],
        type=_scenario,
        metavar="SCENARIO[:SECONDS]",
        help="take the patient into an alarm condition (repeatable): "
        + ", ".join(s.value for s in scenarios.Scenario)
        + " (e.g. spo2-low: SpO2 86 %% for 15 s); SECONDS overrides how long",
    )
    sim.add_argument(
        "--alarm-in",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="start the --alarm scenarios this long after the simulator (default 10 s)",
    )
    sim.add_argument(
        "--alarm-every",
        type=float,
        metavar="SECONDS",
        help="start them again every SECONDS (default: once)",
    )
    sim.add_argument(
        "--unplug-every",
        type=float,
        metavar="SECONDS",
        help="pull the cable out for a second every SECONDS (serial simulators)",
    )

    read = actions.add_parser("read", help="read a device live and print what it says")
    read.add_argument("protocol", choices=sorted([*DRIVERS, "hl7"]))
    read.add_argument(
        "port", help="serial: e.g. /dev/ttyUSB0 or the path `simulate` printed; hl7: TCP port"
    )
    read.add_argument("--json", action="store_true", help="JSON lines")
    read.add_argument("--seconds", type=float, help="stop after this long")
    read.add_argument("--baud", type=int, help="override the protocol's baud rate")

    decode = actions.add_parser(
        "decode",
        help="decode a capture file: raw bytes, hex text, or a hex dump (xxd, od -t x1 or -x, "
        "hexdump -C, tcpdump -X, Wireshark's hex dump); exit status 3 when nothing decoded",
    )
    decode.add_argument("protocol", choices=sorted(DECODERS))
    decode.add_argument("file", type=Path)
    decode.add_argument("--json", action="store_true", help="JSON lines")


def _scenario(text: str) -> tuple[scenarios.Scenario, float | None]:
    try:
        return scenarios.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _monitor_setup(text: str) -> MonitorSetup:
    try:
        return MonitorSetup.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print(event: DeviceEvent, as_json: bool) -> None:
    # allow_nan=False: NaN and Infinity are not JSON; to_dict gives None for them.
    print(
        json.dumps(to_dict(event), ensure_ascii=False, allow_nan=False)
        if as_json
        else to_text(event)
    )


def decode_file(protocol: str, path: Path, as_json: bool) -> int:
    """Decode a capture and say what it held. Exit status: 0 when everything decoded, 1 when
    some of it could not be (frame errors), 3 when nothing was decoded at all."""
    decoder = DECODERS[protocol](path.name)
    data, form = load_text_capture(path.read_bytes())
    # Block by block, as a port would deliver it: waveform chunks stay small. A file has no
    # receive time: it is given as 0.
    for start in range(0, len(data), 4096):
        for event in decoder.receive_data(data[start : start + 4096], 0.0):
            if not isinstance(event, FrameError):
                _print(event, as_json)
    stats = decoder.stats
    print(
        f"{path.name}: read as {form}; {stats.frames} frames, {stats.bytes_in} bytes, "
        f"{stats.error_count} frame errors",
        file=sys.stderr,
    )
    for reason, count in sorted(stats.errors.items()):
        print(f"  {count:6d}  {reason}", file=sys.stderr)
    for what, count in sorted(stats.unmapped.items()):
        print(f"  {count:6d}  unmapped: {what}", file=sys.stderr)
    if stats.frames:
        return 1 if stats.error_count else 0
    host = stats.errors.get(HOST_REQUEST, 0)
    if host:
        holds = f"only a host's requests (PC to monitor: {host})"
        hint = "it has no monitor replies to decode"
    elif not data:
        holds, hint = "nothing", "the file is empty"
    else:
        holds = "nothing recognisable"
        hint = f"no {protocol} frame in {len(data)} bytes read as {form}"
        if (udp := _udp_ports(data)) is not None:
            hint += (
                f" (they are one Ethernet frame: a UDP datagram from port {udp[0]} to"
                f" {udp[1]}, headers included; this decoder reads a serial stream)"
            )
    print(f"nothing decoded: the file holds {holds}; {hint}", file=sys.stderr)
    return 3


def _udp_ports(data: bytes) -> tuple[int, int] | None:
    """Source and destination ports when ``data`` is an Ethernet frame of IPv4/UDP."""
    if len(data) < 42 or data[12:14] != b"\x08\x00" or data[14] >> 4 != 4 or data[23] != 17:
        return None
    udp = 14 + (data[14] & 0x0F) * 4
    if len(data) < udp + 4:
        return None
    return int.from_bytes(data[udp : udp + 2], "big"), int.from_bytes(
        data[udp + 2 : udp + 4], "big"
    )


async def simulate(args: argparse.Namespace) -> int:
    params = PatientParameters(heart_rate=args.heart_rate, spo2=args.spo2, seed=args.seed)
    patient = RecordedPatient.from_path(args.record, params) if args.record else Patient(params)
    faults = Faults(probe_off=args.probe_off, noise_per_s=args.noise, drop_probability=args.drop)
    helpers: list[asyncio.Task[None]] = []
    if args.protocol == "hl7":
        host, _, port = args.to.rpartition(":")
        monitor = Hl7MonitorSimulator(host, int(port), patient, faults, setup=args.monitor_setup)
        task = spawn(monitor.run(), "hl7-monitor")
        print(f"sending ORU^R01 to {host}:{port}", flush=True)
    else:
        link = PtyLink(args.link)
        if args.protocol == "intellivue":
            simulator: Simulator = IntelliVueSimulator(
                link, patient, faults, setup=args.monitor_setup
            )
        elif args.monitor_setup != MonitorSetup():
            print(f"--monitor-setup: {args.protocol} is not a monitor", file=sys.stderr)
            return 2
        else:
            simulator = SIMULATORS[args.protocol](link, patient, faults)
        task = spawn(simulator.run(), "simulator")
        await asyncio.sleep(0)
        print(link.path, flush=True)
        if args.unplug_every:
            helpers.append(spawn(_unplug_every(link, args.unplug_every), "unplug"))
    if args.alarm:
        helpers.append(
            spawn(_alarms(patient, args.alarm, args.alarm_in, args.alarm_every), "alarms")
        )
    print(f"simulating {args.protocol}; Ctrl-C to stop", file=sys.stderr)
    try:
        await task
    finally:
        await cancel_and_wait([task, *helpers])
    return 0


async def _alarms(
    patient: Patient,
    wanted: list[tuple[scenarios.Scenario, float | None]],
    first_in: float,
    every: float | None,
) -> None:
    await asyncio.sleep(first_in)
    while True:
        for scenario, seconds in wanted:
            patient.scenarios.start(scenario, seconds)
            print(f"alarm scenario {scenario} started", file=sys.stderr, flush=True)
        if every is None:
            return
        await asyncio.sleep(every)


async def _unplug_every(link: PtyLink, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        link.unplug()
        print("unplugged", file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)
        link.replug()
        print("plugged in again", file=sys.stderr, flush=True)


async def read_live(args: argparse.Namespace) -> int:
    source: DeviceReader | Hl7Listener
    if args.protocol == "hl7":
        source = Hl7Listener("0.0.0.0", int(args.port))  # noqa: S104 (monitors connect in)
    else:
        driver = DRIVERS[args.protocol]
        if args.baud:
            driver = replace(driver, serial=replace(driver.serial, baudrate=args.baud))
        source = DeviceReader(driver, args.port)
    task = spawn(source.run(), "reader")
    try:
        if isinstance(source, Hl7Listener):
            # Said at once: nothing else is printed until a sender connects.
            async with asyncio.timeout(10):
                await source.ready.wait()
            print(
                f"listening for HL7 over MLLP on {source.host}:{source.port}",
                file=sys.stderr,
                flush=True,
            )
        async with asyncio.timeout(args.seconds):
            while True:
                _print(await source.events.get(), args.json)
    except TimeoutError:
        pass
    finally:
        await cancel_and_wait([task])
    return 0


def run(args: argparse.Namespace) -> int:
    match args.action:
        case "list":
            ports = list_serial_ports()
            for p in ports:
                ids = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "-"
                suggestion = p.suggested_protocol or "?"
                print(f"{p.device:20} {ids:10} {suggestion:8} {p.hint or p.description}")
            if not ports:
                print("no serial ports found", file=sys.stderr)
            return 0
        case "simulate":
            try:
                return asyncio.run(simulate(args))
            except (RecordError, OSError) as exc:
                print(f"telemed: cannot replay {args.record}: {exc}", file=sys.stderr)
                return 2
        case "read":
            return asyncio.run(read_live(args))
        case "decode":
            return decode_file(args.protocol, args.file, args.json)
    raise AssertionError(args.action)
