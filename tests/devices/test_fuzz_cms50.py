"""In-message fuzzing of the CMS50 decoders (issue 11): live-data packets whose data bytes
(flags, pleth, pulse rate, SpO2, perfusion index) are mutated and encoded again with their
high byte, and legacy 5-byte packets with their bit-7 framing kept."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from devices.protocols import cms50
from devices.protocols.common import DECODER_FAULT
from tests.devices import fuzz_harness as fh
from tests.fuzzing import budget, scale

#: Each decoder's CI pass (live and legacy are two decoders); ``make fuzz`` runs ten times as
#: many.
MESSAGES = budget(20_000)
MEMORY_CEILING = 20_000_000
VALUES = (0, 1, 0x7E, 0x7F, 0x80, 0xFE, 0xFF)


def _live(rng: random.Random) -> bytes:
    out = bytearray()
    for p in range(rng.randint(1, 10)):
        packet = cms50.encode_live(cms50.LiveSample(p, 70, 97, 2.5))
        data = [b & 0x7F | (0x80 if packet[1] & (1 << i) else 0) for i, b in enumerate(packet[2:])]
        for _ in range(rng.randint(0, 3)):
            k = rng.randrange(len(data))
            data[k] = rng.choice(VALUES) if rng.random() < 0.6 else rng.randrange(256)
        out += cms50._with_high_byte(cms50.LIVE_DATA, data)
    return bytes(out)


def _legacy(rng: random.Random) -> bytes:
    out = bytearray()
    for p in range(rng.randint(1, 10)):
        packet = bytearray(cms50.encode_legacy(cms50.LiveSample(p, 70, 97, None)))
        if rng.random() < 0.5:
            k = rng.randrange(5)
            packet[k] = rng.choice(VALUES) if rng.random() < 0.6 else rng.randrange(256)
        packet[0] |= 0x80  # the legacy framing: bit 7 on the first byte only
        out += bytes([packet[0], *(b & 0x7F for b in packet[1:])])
    return bytes(out)


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(600 * scale())  # a hang guard: loaded, the pass can take minutes
@pytest.mark.parametrize(
    ("name", "make", "mutant"),
    [
        ("cms50", cms50.Cms50Decoder, _live),
        ("cms50-legacy", cms50.Cms50LegacyDecoder, _legacy),
    ],
    ids=["live", "legacy"],
)
def test_mutated_packets_never_escape_nor_stall(
    name: str, make: type[cms50.Cms50Decoder], mutant: fh.Mutant
) -> None:
    figures, failures = fh.run(name, lambda: make("fuzz"), mutant, MESSAGES)
    print(f"\n{name}: {figures}")
    assert failures == []
    assert figures.peak_bytes < MEMORY_CEILING


@pytest.mark.parametrize(
    "path", fh.corpus("cms50") + fh.corpus("cms50-legacy"), ids=lambda p: p.name
)
def test_every_input_that_once_crashed_is_decoded_now(path: Path) -> None:
    legacy = path.parent.name == "cms50-legacy"
    decoder = cms50.Cms50LegacyDecoder("fuzz") if legacy else cms50.Cms50Decoder("fuzz")
    start = time.process_time()
    decoder.receive_data(path.read_bytes(), 0.0)
    assert time.process_time() - start < fh.BUDGET_S
    assert DECODER_FAULT not in decoder.stats.errors
