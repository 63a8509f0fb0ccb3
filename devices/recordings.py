"""Reading WFDB records (PhysioNet: MIT-BIH and others): header, signals in formats 212 and
16, and MIT-format annotations. Enough to replay a real recording through a simulator and to
score beat detection; no network access, no third-party reader.

A header line per signal gives ``file format[+offset] gain(baseline)/units adcres adczero
initval checksum blocksize description``; :func:`read_record` checks every signal's first
value and 16-bit checksum against it, so a misread file fails loudly instead of replaying
nonsense.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from devices.errors import RecordError

#: MIT annotation codes and their symbols (ecgcodes.h).
_SYMBOLS = {
    1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E",
    11: "j", 12: "/", 13: "Q", 14: "~", 16: "|", 18: "s", 19: "T", 20: "*", 21: "D",
    22: '"', 23: "=", 24: "p", 25: "B", 26: "^", 27: "t", 28: "+", 29: "u", 30: "?",
    31: "!", 32: "[", 33: "]", 34: "e", 35: "n", 36: "@", 37: "x", 38: "f", 39: "(",
    40: ")", 41: "r",
}  # fmt: skip
#: Symbols that mark a beat (the ones beat detection is scored on).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
_SKIP, _NUM, _SUB, _CHN, _AUX = 59, 60, 61, 62, 63


@dataclass(frozen=True)
class Signal:
    name: str
    file: str
    fmt: int
    offset: int
    gain: float
    baseline: int
    units: str
    initial: int
    checksum: int


@dataclass(frozen=True)
class Record:
    name: str
    fs: float
    signals: tuple[Signal, ...]
    #: Raw ADC values, one column a signal.
    adc: NDArray[np.int32]

    def index(self, *names: str) -> int | None:
        """The first signal whose name is one of ``names`` (case-insensitive)."""
        wanted = [n.lower() for n in names]
        for name in wanted:
            for i, s in enumerate(self.signals):
                if s.name.lower() == name:
                    return i
        return None

    def physical(self, i: int) -> NDArray[np.float64]:
        """Signal ``i`` in its units; invalid samples (the format's minimum) are NaN."""
        s = self.signals[i]
        raw = self.adc[:, i]
        out = (raw - s.baseline) / s.gain
        invalid = -2048 if s.fmt == 212 else -32768
        return np.where(raw == invalid, np.nan, out)


_SIGNAL = re.compile(
    r"^(?P<file>\S+)\s+(?P<fmt>\d+)(?:x\d+)?(?::\d+)?(?:\+(?P<offset>\d+))?"
    r"(?:\s+(?P<gain>[-\d.e+]+)(?:\((?P<baseline>-?\d+)\))?(?:/(?P<units>\S+))?"
    r"(?:\s+(?P<adcres>\d+)(?:\s+(?P<adczero>-?\d+)(?:\s+(?P<init>-?\d+)"
    r"(?:\s+(?P<checksum>-?\d+)(?:\s+(?P<block>\d+)(?:\s+(?P<desc>.*))?)?)?)?)?)?)?$"
)


def _lines(path: Path) -> list[str]:
    return [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]


def read_record(base: Path) -> Record:
    """Read ``base.hea`` and its signal files. Raises :class:`RecordError`."""
    header = base.with_suffix(".hea")
    if not header.is_file():
        raise RecordError(f"no header {header}")
    lines = _lines(header)
    fields = lines[0].split()
    name, count = fields[0], int(fields[1])
    fs = float(fields[2].split("/")[0]) if len(fields) > 2 else 250.0
    length = int(fields[3]) if len(fields) > 3 else None
    signals = []
    for i, line in enumerate(lines[1 : 1 + count]):
        match = _SIGNAL.match(line)
        if match is None:
            raise RecordError(f"{header}: signal line {i + 1} unreadable: {line!r}")
        g = match.groupdict()
        gain = float(g["gain"]) if g["gain"] and float(g["gain"]) != 0 else 200.0
        adczero = int(g["adczero"]) if g["adczero"] else 0
        signals.append(
            Signal(
                name=(g["desc"] or f"signal {i}").strip(),
                file=g["file"],
                fmt=int(g["fmt"]),
                offset=int(g["offset"] or 0),
                gain=gain,
                baseline=int(g["baseline"]) if g["baseline"] is not None else adczero,
                units=g["units"] or "mV",
                initial=int(g["init"]) if g["init"] else 0,
                checksum=int(g["checksum"]) if g["checksum"] else 0,
            )
        )
    files = sorted({s.file for s in signals}, key=[s.file for s in signals].index)
    columns: list[NDArray[np.int32]] = []
    for file in files:
        group = [s for s in signals if s.file == file]
        columns += _read_group(base.parent / file, group, length)
    n = min(len(c) for c in columns)
    adc = np.stack([c[:n] for c in columns], axis=1)
    for i, s in enumerate(signals):
        if adc[0, i] != s.initial:
            raise RecordError(f"{s.name}: first sample {adc[0, i]} but the header says {s.initial}")
        total = int(adc[:, i].astype(np.int64).sum())
        wrapped = ((total + 32768) % 65536) - 32768
        if wrapped != s.checksum:
            raise RecordError(f"{s.name}: checksum {wrapped} but the header says {s.checksum}")
    return Record(name, fs, tuple(signals), adc)


def _read_group(path: Path, group: list[Signal], length: int | None) -> list[NDArray[np.int32]]:
    fmts = {s.fmt for s in group}
    if len(fmts) != 1:
        raise RecordError(f"{path.name}: mixed formats {fmts}")
    fmt, nsig = fmts.pop(), len(group)
    raw = np.fromfile(path, dtype=np.uint8, offset=group[0].offset)
    if fmt == 16:
        values = raw[: len(raw) // 2 * 2].view("<i2").astype(np.int32)
    elif fmt == 212:
        triples = raw[: len(raw) // 3 * 3].reshape(-1, 3).astype(np.int32)
        first = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
        second = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
        values = np.empty(len(triples) * 2, dtype=np.int32)
        values[0::2], values[1::2] = first, second
        values = np.where(values >= 2048, values - 4096, values)
    else:
        raise RecordError(f"{path.name}: format {fmt} is not supported (212 and 16 are)")
    frames = len(values) // nsig
    if length is not None:
        frames = min(frames, length)
    values = values[: frames * nsig].reshape(frames, nsig)
    return [values[:, k] for k in range(nsig)]


def read_annotations(base: Path, extension: str = "atr") -> tuple[NDArray[np.int64], list[str]]:
    """Sample indices and symbols of a MIT-format annotation file."""
    data = base.with_suffix(f".{extension}").read_bytes()
    words = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2")
    samples: list[int] = []
    symbols: list[str] = []
    t, i = 0, 0
    while i < len(words):
        word = int(words[i])
        code, value = word >> 10, word & 0x3FF
        i += 1
        if code == 0 and value == 0:
            break
        if code == _SKIP:
            if i + 2 > len(words):
                raise RecordError("annotation file ends inside a SKIP")
            # A signed 32-bit interval, high half first (PDP-11 order); it may go backwards.
            skip = (int(words[i]) << 16) | int(words[i + 1])
            t += skip - (1 << 32) if skip & 0x80000000 else skip
            i += 2
        elif code in (_NUM, _SUB, _CHN):
            continue
        elif code == _AUX:
            i += (value + 1) // 2
        else:
            t += value
            samples.append(t)
            symbols.append(_SYMBOLS.get(code, "?"))
    return np.asarray(samples, dtype=np.int64), symbols
