"""Device decoding throughput, and the CPU one gateway needs for its devices at real rates.

Each protocol's stream is made by its own simulator's encoder at the device's real rate
(``--seconds`` of patient time), then decoded the way a port delivers it (256-byte reads for
serial links, whole messages for HL7/MLLP and IntelliVue datagrams). The baseline, measured
in the same run on the same bytes, is the cheapest possible pure-Python pass over a stream
(one loop iteration a byte): the ratio says how much decoding costs beyond touching each
byte once. Medians over ``--repeat`` runs of process CPU time.

    python -m benchmarks.device_decode [--seconds 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from devices.drivers import DECODERS
from devices.model import WaveformChunk
from devices.protocols import datex, mllp
from devices.protocols.intellivue import messages as iv
from devices.protocols.intellivue import types as ivt
from devices.protocols.intellivue.framing import encode_frame
from devices.protocols.intellivue.host import IntelliVueHost
from devices.simulation.hl7_monitor import Hl7MonitorSimulator
from devices.simulation.intellivue_monitor import WAVE_REPLY_S, MonitorProtocol
from devices.simulation.patient import Patient
from devices.simulation.pty_link import PtyLink
from devices.simulation.simulators import (
    Cms50Simulator,
    DatexSimulator,
    Faults,
    MasimoSimulator,
    NoninSimulator,
)


def cms50_stream(seconds: int) -> list[bytes]:
    return [Cms50Simulator(PtyLink()).frames(60 * seconds)]


def nonin_stream(seconds: int) -> list[bytes]:
    sim, out = NoninSimulator(PtyLink()), []
    for _ in range(seconds):
        out.append(sim.frames(75))
        sim.frames_sent += 75
    return out


def masimo_stream(seconds: int) -> list[bytes]:
    sim = MasimoSimulator(PtyLink())
    return [sim.frames(1) for _ in range(seconds)]


def datex_stream(seconds: int) -> list[bytes]:
    sim = DatexSimulator(PtyLink())
    sim.on_host_bytes(datex.frame(datex.phdb_request(5)))
    sim.on_host_bytes(datex.frame(datex.wave_request([datex.WaveType.ECG1, datex.WaveType.PLETH])))
    return [sim.frames(10) for _ in range(seconds)]


def hl7_stream(seconds: int) -> list[bytes]:
    sim = Hl7MonitorSimulator("127.0.0.1", 0)
    return [mllp.frame(sim.message(1_700_000_000.0 + s)) for s in range(seconds)]


def intellivue_stream(seconds: int) -> list[bytes]:
    patient = Patient()
    monitor = MonitorProtocol(patient, Faults())
    out = [encode_frame(r) for r in monitor.receive_payload(iv.ASSOCIATION_REQUEST, 0.0)]
    monitor.receive_payload(iv.event_report_result(1, ivt.NOM_NOTI_MDS_CREAT), 0.0)
    poll = iv.poll_request(2, 1, ivt.NOM_MOC_VMO_METRIC_SA_RT, float(seconds + 1))
    monitor.receive_payload(poll, 0.0)
    now = 0.0
    while now < seconds:
        numerics = iv.poll_request(3, 2, ivt.NOM_MOC_VMO_METRIC_NU, None)
        out += [encode_frame(r) for r in monitor.receive_payload(numerics, now)]
        for _ in range(round(1 / WAVE_REPLY_S)):
            now += WAVE_REPLY_S
            patient.pleth(32, 125.0)
            out += [encode_frame(r) for r in monitor.periodic(now)]
    return out


@dataclass
class Case:
    protocol: str
    stream: Callable[[int], list[bytes]]
    serial: bool  # delivered in 256-byte reads, else message by message


CASES = [
    Case("cms50", cms50_stream, True),
    Case("nonin", nonin_stream, True),
    Case("masimo", masimo_stream, True),
    Case("datex", datex_stream, True),
    Case("intellivue", intellivue_stream, True),
    Case("hl7", hl7_stream, False),
]


def _reads(messages: list[bytes], serial: bool) -> list[bytes]:
    if not serial:
        return messages
    data = b"".join(messages)
    return [data[i : i + 256] for i in range(0, len(data), 256)]


def _decode(protocol: str, reads: list[bytes]) -> tuple[float, int, int]:
    decoder = DECODERS[protocol](protocol)
    if isinstance(decoder, IntelliVueHost):
        decoder.start(0.0)  # the gateway asked: replies are expected
    samples = 0
    start = time.process_time()
    for chunk in reads:
        for event in decoder.receive_data(chunk, 0.0):
            if isinstance(event, WaveformChunk):
                samples += len(event.samples)
    elapsed = time.process_time() - start
    return elapsed, samples, decoder.stats.error_count


def _touch(reads: list[bytes]) -> float:
    start = time.process_time()
    for chunk in reads:
        for _ in chunk:
            pass
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=300, help="patient time per stream")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{args.seconds} s of each device's stream; median of {args.repeat} runs "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    print(
        f"{'protocol':11} {'bytes/s dev':>11} {'decode MB/s':>11} {'samples/s':>11} "
        f"{'x real time':>12} {'CPU at rate':>11} {'vs byte loop':>12}"
    )
    total_share = 0.0
    for case in CASES:
        reads = _reads(case.stream(args.seconds), case.serial)
        size = sum(len(r) for r in reads)
        runs = [_decode(case.protocol, reads) for _ in range(args.repeat)]
        decode_s = statistics.median(r[0] for r in runs)
        samples, errors = runs[0][1], runs[0][2]
        assert errors == 0, f"{case.protocol}: {errors} frame errors on a clean stream"
        touch_s = statistics.median(_touch(reads) for _ in range(args.repeat))
        share = decode_s / args.seconds
        if case.protocol != "masimo":
            total_share += share  # the five devices of the brief
        print(
            f"{case.protocol:11} {size / args.seconds:11.0f} {size / decode_s / 1e6:11.2f} "
            f"{samples / decode_s:11.0f} {args.seconds / decode_s:12.0f} {share:11.3%} "
            f"{decode_s / touch_s:11.1f}x"
        )
    print(
        f"one gateway decoding cms50 + nonin + intellivue + hl7 + datex at their real rates: "
        f"{total_share:.2%} of one core"
    )


if __name__ == "__main__":
    main()
