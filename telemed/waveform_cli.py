"""``telemed waveform``: run the streaming waveform pipeline over recordings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    waveform = sub.add_parser("waveform", help="waveform processing on recordings")
    actions = waveform.add_subparsers(dest="action", required=True)
    qrs = actions.add_parser(
        "qrs", help="stream a WFDB record through the QRS detector; print R-peak sample indices"
    )
    qrs.add_argument("record", type=Path, help="record path without extension, e.g. data/100")
    qrs.add_argument("--channel", type=int, default=0, help="signal number (default 0)")
    qrs.add_argument("--chunk-s", type=float, default=0.25, help="chunk length streamed")


def run(args: argparse.Namespace) -> int:
    # Imported here: the QRS detector pulls in SciPy, seconds that every other command would
    # otherwise spend at start-up.
    from devices.errors import RecordError
    from devices.recordings import read_record
    from media.waveform.qrs import QrsDetector

    try:
        record = read_record(args.record)
    except (RecordError, OSError) as exc:
        print(f"telemed: cannot read {args.record}: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.channel < len(record.signals):
        print(f"telemed: the record has signals 0..{len(record.signals) - 1}", file=sys.stderr)
        return 2
    signal = record.physical(args.channel)
    detector = QrsDetector(record.fs)
    chunk = max(1, round(args.chunk_s * record.fs))
    out = sys.stdout
    for start in range(0, len(signal), chunk):
        for beat in detector.process(signal[start : start + chunk]):
            out.write(f"{beat.index}\n")
    return 0
