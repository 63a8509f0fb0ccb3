"""In-message fuzzing of the Nonin decoder (issue 11), formats #2, #7 and #8: a packet's
status, pleth and FLOAT bytes mutated, every frame then given a valid checksum (#2, #7) or
its bit-7 framing (#8)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from devices.protocols import nonin
from devices.protocols.common import DECODER_FAULT
from tests.devices import fuzz_harness as fh
from tests.fuzzing import budget, scale

#: The codec's CI pass, shared by its three data formats (one decoder, one format each time);
#: ``make fuzz`` runs ten times as many.
MESSAGES = budget(20_000)
MEMORY_CEILING = 20_000_000
FORMATS = (nonin.Format.PLETH_8, nonin.Format.PLETH_16, nonin.Format.NUMERICS)


def _byte(rng: random.Random, old: int) -> int:
    return rng.choice((0, 1, 0x7F, 0x80, 0xFF, old ^ (1 << rng.randrange(8)), rng.randrange(256)))


def _mutant_for(fmt: nonin.Format, rng: random.Random) -> bytes:
    if fmt is nonin.Format.NUMERICS:
        out = bytearray()
        for _ in range(rng.randint(1, 5)):
            frame = bytearray(nonin.encode_numerics(nonin.Status(0), 72, 97))
            k = rng.randrange(4)
            frame[k] = _byte(rng, frame[k])
            frame[0] |= 0x80  # the frame's start, and nothing else, has bit 7
            frame[1:] = bytes(b & 0x7F for b in frame[1:])
            out += frame
        return bytes(out)
    floats = nonin.packet_floats(72, 97)
    out = bytearray()
    for k in range(nonin.FRAMES_PER_PACKET):
        status = nonin.Status.SYNC if k == 0 else nonin.Status(0)
        head = bytearray(nonin.encode_frame(fmt, nonin.Frame(status, 100, floats[k]))[:4])
        if rng.random() < 0.3:
            at = rng.randrange(1 if fmt is nonin.Format.PLETH_8 else 0, 4)
            head[at] = _byte(rng, head[at])
        out += head + bytes([sum(head) & 0xFF])
    return bytes(out)


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(600 * scale())  # a hang guard: loaded, the pass can take minutes
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"format-{int(f)}")
def test_mutated_frames_never_escape_nor_stall(fmt: nonin.Format) -> None:
    figures, failures = fh.run(
        f"nonin-{int(fmt)}",
        lambda: nonin.NoninDecoder("fuzz", fmt),
        lambda rng: _mutant_for(fmt, rng),
        MESSAGES // len(FORMATS),
    )
    print(f"\nnonin #{int(fmt)}: {figures}")
    assert failures == []
    assert figures.peak_bytes < MEMORY_CEILING


@pytest.mark.parametrize(
    "path", [p for f in FORMATS for p in fh.corpus(f"nonin-{int(f)}")], ids=lambda p: p.name
)
def test_every_input_that_once_crashed_is_decoded_now(path: Path) -> None:
    decoder = nonin.NoninDecoder("fuzz", nonin.Format(int(path.parent.name.split("-")[1])))
    start = time.process_time()
    decoder.receive_data(path.read_bytes(), 0.0)
    assert time.process_time() - start < fh.BUDGET_S
    assert DECODER_FAULT not in decoder.stats.errors
