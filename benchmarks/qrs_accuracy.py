"""QRS detection accuracy and speed on the annotated records in ../shared/ecg-records.

Scoring as the issue states it: a detection matches a reference beat within 150 ms; the first
10 s are not scored; gross sensitivity and positive predictivity over all records. Speed is
process CPU seconds per hour of ECG: each record whole in one call (as the offline reference
detectors run), then streamed in chunks of 10 s and 1 s (as a gateway feeds it; the
detections are the same, the per-call overhead is not).

    python -m benchmarks.qrs_accuracy [--records DIR] [--chunk-s 1.0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from devices.recordings import BEAT_SYMBOLS, read_annotations, read_record
from media.waveform.qrs import QrsDetector

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ecg-records"


@dataclass
class Score:
    record: str
    tp: int
    fn: int
    fp: int
    seconds: float
    cpu: float
    max_latency_s: float

    @property
    def se(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def ppv(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0


def match(ref: NDArray[np.int64], det: NDArray[np.int64], tolerance: int) -> tuple[int, int, int]:
    """Greedy one-to-one matching in time order: (true positives, false negatives, false
    positives)."""
    i = j = tp = 0
    while i < len(ref) and j < len(det):
        if abs(int(det[j]) - int(ref[i])) <= tolerance:
            tp += 1
            i += 1
            j += 1
        elif det[j] < ref[i]:
            j += 1
        else:
            i += 1
    return tp, len(ref) - tp, len(det) - tp


def detect(
    signal: NDArray[np.float64], fs: float, chunk: int
) -> tuple[NDArray[np.int64], float, float]:
    detector = QrsDetector(fs)
    start = time.process_time()
    for k in range(0, len(signal), chunk):
        detector.process(signal[k : k + chunk])
    cpu = time.process_time() - start
    beats = detector.beats
    latency = max(((b.decided_at - b.index) / fs for b in beats), default=0.0)
    return np.asarray([b.index for b in beats], dtype=np.int64), cpu, latency


def score(base: Path, chunk_s: float, channel: int = 0) -> Score:
    record = read_record(base)
    fs = record.fs
    signal = record.physical(channel)
    samples, symbols = read_annotations(base)
    ref = np.asarray([s for s, y in zip(samples, symbols, strict=True) if y in BEAT_SYMBOLS])
    det, cpu, latency = detect(signal, fs, max(1, round(chunk_s * fs)))
    skip = int(10 * fs)
    tolerance = round(0.150 * fs)
    tp, fn, fp = match(ref[ref >= skip], det[det >= skip], tolerance)
    return Score(base.name, tp, fn, fp, len(signal) / fs, cpu, latency)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=Path, default=SHARED)
    parser.add_argument("--chunk-s", type=float, default=1.0)
    args = parser.parse_args()
    bases = sorted(p.with_suffix("") for p in args.records.glob("*/*.atr"))
    scores = [score(b, args.chunk_s) for b in bases]
    print(
        f"{'record':8} {'beats':>6} {'TP':>6} {'FN':>5} {'FP':>5} {'Se %':>7} {'+P %':>7} "
        f"{'max lat ms':>10}"
    )
    for s in scores:
        print(
            f"{s.record:8} {s.tp + s.fn:6d} {s.tp:6d} {s.fn:5d} {s.fp:5d} {100 * s.se:7.2f} "
            f"{100 * s.ppv:7.2f} {1000 * s.max_latency_s:10.0f}"
        )
    tp, fn, fp = (sum(getattr(s, k) for s in scores) for k in ("tp", "fn", "fp"))
    hours = sum(s.seconds for s in scores) / 3600
    cpu = sum(s.cpu for s in scores)
    print(
        f"{'gross':8} {tp + fn:6d} {tp:6d} {fn:5d} {fp:5d} {100 * tp / (tp + fn):7.2f} "
        f"{100 * tp / (tp + fp):7.2f}"
    )
    print(f"speed, chunks of {args.chunk_s:g} s (the scored run): {cpu / hours:.3f} CPU s/h")
    for label, chunk_s in (
        ("whole record", None),
        ("chunks of 10 s", 10.0),
        ("chunks of 1 s", 1.0),
    ):
        print(f"speed, {label}: {speed(bases, chunk_s):.3f} CPU s/h (median of 3)")
    print("reference figures: gqrs Se 99.67 / +P 99.77, 3.9 CPU s/h; neurokit2 0.22 CPU s/h")


def speed(bases: list[Path], chunk_s: float | None, repeats: int = 3) -> float:
    """CPU seconds per hour of ECG over all records, median of ``repeats`` passes."""
    records = [read_record(b) for b in bases]
    signals = [(r.physical(0), r.fs) for r in records]
    hours = sum(len(x) / fs for x, fs in signals) / 3600
    runs = []
    for _ in range(repeats):
        cpu = 0.0
        for x, fs in signals:
            chunk = len(x) if chunk_s is None else max(1, round(chunk_s * fs))
            cpu += detect(x, fs, chunk)[1]
        runs.append(cpu / hours)
    return sorted(runs)[len(runs) // 2]


if __name__ == "__main__":
    main()
