"""In-message fuzzing of the Masimo ASCII decoder (issue 11): a line's date, time and
``KEY=value`` fields mutated, each line ending as the device ends it."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.protocols import masimo
from devices.protocols.common import DECODER_FAULT
from tests.devices import fuzz_harness as fh
from tests.fuzzing import budget, scale

MESSAGES = budget(20_000)
MEMORY_CEILING = 20_000_000
LINE = masimo.encode_line(datetime(2026, 1, 1, tzinfo=UTC), 97, 72, 1.5).decode().rstrip()
VALUES = ["", "-", "---", "nan", "inf", "-inf", "1e999", "9" * 40, "0", "-1", "ZZZ", "=", "%"]


def _mutant(rng: random.Random) -> bytes:
    words = LINE.split(" ")
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(words))
        op = rng.random()
        if op < 0.6 and "=" in words[k]:
            key, _, _ = words[k].partition("=")
            words[k] = f"{key}={rng.choice(VALUES)}"
        elif op < 0.75:
            words[k] = rng.choice([*VALUES, "13/45/99", "25:61:61", "02/30/26"])
        elif op < 0.85:
            del words[k]
        else:
            words.insert(k, rng.choice(words))
    return (" ".join(words) + "\r\n").encode("ascii", errors="replace")


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(600 * scale())  # a hang guard: loaded, the pass can take minutes
def test_mutated_lines_never_escape_nor_stall() -> None:
    figures, failures = fh.run("masimo", lambda: masimo.MasimoDecoder("fuzz"), _mutant, MESSAGES)
    print(f"\nmasimo: {figures}")
    assert failures == []
    assert figures.peak_bytes < MEMORY_CEILING


@pytest.mark.parametrize("path", fh.corpus("masimo"), ids=lambda p: p.name)
def test_every_input_that_once_crashed_is_decoded_now(path: Path) -> None:
    decoder = masimo.MasimoDecoder("fuzz")
    start = time.process_time()
    decoder.receive_data(path.read_bytes(), 0.0)
    assert time.process_time() - start < fh.BUDGET_S
    assert DECODER_FAULT not in decoder.stats.errors
