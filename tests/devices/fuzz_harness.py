"""The in-message fuzz harness of the device codecs (issue 11).

Byte-level mutation of a framed stream mostly breaks the frame's check (CRC, checksum) and
never reaches the message parser. Here a codec's valid messages are mutated *inside* (its
fields, counts, lengths, unit codes, values) and framed again with a valid check, so every
mutant reaches the parser. For each mutant fed:

- no exception escapes ``receive_data``, and none is caught at its message boundary
  either (a "decoder fault" is a bug too); an input that raised is kept under
  ``fuzz_corpus/<codec>/`` and replayed by every later run;
- the feed's CPU time (``time.process_time``: the process's own, so a loaded machine does
  not fail it) stays under :data:`BUDGET_S` (measured outside the traced lives: tracing
  quadruples it);
- the memory traced (``tracemalloc`` peak over a decoder's life, one in ten of them
  including the first and the last) stays under the codec's ceiling.

Sized with :func:`tests.fuzzing.budget`. The figures of a run are in :class:`Figures`.
"""

from __future__ import annotations

import gc
import hashlib
import random
import struct
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devices.model import DecoderStats
from devices.protocols.common import DECODER_FAULT

CORPUS = Path(__file__).parent / "fuzz_corpus"
#: The most CPU one message may take to decode (issue 11: "no single message over 50 ms").
BUDGET_S = 0.050

INTERESTING_16 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF)
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFE, 0xFF)


#: Makes one framed mutant.
Mutant = Callable[[random.Random], bytes]


class Feeds(Protocol):
    stats: DecoderStats

    def receive_data(self, data: bytes, now: float) -> Sequence[object]: ...


@dataclass
class Figures:
    """What a run measured."""

    messages: int = 0
    max_cpu_s: float = 0.0
    peak_bytes: int = 0
    crashes: int = 0

    def __str__(self) -> str:
        return (
            f"{self.messages} mutated messages, max {self.max_cpu_s * 1000:.2f} ms CPU per "
            f"message, peak traced memory {self.peak_bytes / 1e3:.0f} kB, "
            f"{self.crashes} crashes or decoder faults"
        )


def mutate_binary(rng: random.Random, data: bytes, fields: Sequence[int] = ()) -> bytes:
    """One to four structure-aware edits of a binary message: a 16-bit field (at a known
    field offset when given, else any even offset) set to an interesting value or nudged
    by one, a byte set, a span cut, duplicated (once, or up to 4 KB of copies) or
    truncated."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out += bytes(rng.randint(1, 8))
            continue
        op = rng.random()
        if op < 0.45 and len(out) >= 2:
            if fields and rng.random() < 0.5:
                at = min(rng.choice(fields), len(out) - 2)
            else:
                at = rng.randrange(0, len(out) - 1) & ~1
            (old,) = struct.unpack_from(">H", out, at)
            new = (
                rng.choice(INTERESTING_16)
                if rng.random() < 0.6
                else (old + rng.choice((-1, 1, -2, 2))) & 0xFFFF
            )
            struct.pack_into(">H", out, at, new)
        elif op < 0.7:
            out[rng.randrange(len(out))] = (
                rng.choice(INTERESTING_8) if rng.random() < 0.5 else rng.randrange(256)
            )
        elif op < 0.8:
            start = rng.randrange(len(out))
            del out[start : start + rng.randint(1, 16)]
        elif op < 0.87:
            start = rng.randrange(len(out))
            out[start:start] = out[start : start + rng.randint(1, 32)]
        elif op < 0.9:  # a span repeated many times: lists that claim and hold much
            start = rng.randrange(len(out))
            span = out[start : start + rng.randint(4, 64)]
            out[start:start] = span * rng.randint(2, max(2, 4096 // len(span)))
        else:
            del out[rng.randrange(len(out)) :]
    return bytes(out)


def crash_file(codec: str, data: bytes) -> Path:
    """Where a crashing input is kept (named by its content, so kept once)."""
    return CORPUS / codec / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.bin"


def corpus(codec: str) -> list[Path]:
    """Every input that ever crashed ``codec``'s decoder (framed bytes, as fed)."""
    folder = CORPUS / codec
    return sorted(folder.glob("*.bin")) if folder.is_dir() else []


def run(
    codec: str,
    make_decoder: Callable[[], Feeds],
    mutants: Callable[[random.Random], bytes],
    count: int,
    *,
    seed: int = 11,
    fresh_every: int = 500,
    after_feed: Callable[[Feeds, bytes], None] | None = None,
) -> tuple[Figures, list[str]]:
    """Feed ``count`` framed mutants to decoders (a new one every ``fresh_every``, so the
    state a run builds up is exercised too, and bounded). Returns the figures and the
    failures (crashes with the file kept, messages over the budget)."""
    rng = random.Random(seed)
    figures = Figures()
    failures: list[str] = []
    decoder = make_decoder()
    # The collector runs between decoders' lives, not inside a timed feed: its pauses are
    # the process's, not the message's.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for k in range(count):
            if k % fresh_every == 0:
                gc.collect()
                if tracemalloc.is_tracing():
                    figures.peak_bytes = max(figures.peak_bytes, tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                if k:
                    decoder = make_decoder()
                # Memory is traced over one decoder's life in ten (tracing costs four
                # times the decoding), the first and the last among them.
                block = k // fresh_every
                if block % 10 == 0 or k + fresh_every >= count:
                    tracemalloc.start()
            data = mutants(rng)
            figures.messages += 1
            faults = decoder.stats.errors.get(DECODER_FAULT, 0)
            start = time.process_time()
            try:
                decoder.receive_data(data, 1_700_000_000.0 + k)
                if after_feed is not None:
                    after_feed(decoder, data)
                if decoder.stats.errors.get(DECODER_FAULT, 0) != faults:
                    # Caught at the message boundary, but a bug all the same.
                    raise AssertionError("a decoder fault (caught at the message boundary)")
            except Exception as exc:
                figures.crashes += 1
                path = crash_file(codec, data)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                failures.append(f"{type(exc).__name__}: {exc} (kept as {path.name})")
                decoder = make_decoder()
                continue
            elapsed = time.process_time() - start
            if tracemalloc.is_tracing():
                continue  # tracing's own cost (about 4x) is not the decoder's
            if elapsed > BUDGET_S:
                # Once more on a new decoder: a message is slow, not a moment of the process.
                again = time.process_time()
                make_decoder().receive_data(data, 1_700_000_000.0 + k)
                elapsed = min(elapsed, time.process_time() - again)
                figures.max_cpu_s = max(figures.max_cpu_s, elapsed)
                if elapsed > BUDGET_S:
                    path = crash_file(codec, data).with_name(f"slow-{k}.bin")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    failures.append(f"message {k} took {elapsed * 1000:.1f} ms (kept)")
                continue
            figures.max_cpu_s = max(figures.max_cpu_s, elapsed)
        if tracemalloc.is_tracing():
            figures.peak_bytes = max(figures.peak_bytes, tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
        if collecting:
            gc.enable()
    return figures, failures
