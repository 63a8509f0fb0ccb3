"""In-message fuzzing of the Datex S/5 decoder (issue 11): displayed-values, wave and alarm
records mutated inside (header lengths, subrecord offsets and types, sample counts, values)
and framed again with a valid checksum."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from devices.protocols import datex
from devices.protocols.common import DECODER_FAULT
from tests.devices import fuzz_harness as fh
from tests.fuzzing import budget, scale

MESSAGES = budget(20_000)
MEMORY_CEILING = 20_000_000

SEEDS = [
    datex.encode_phdb(datex.PhdbValues(1, {"spo2": 97.0, "nibp_sys": 120.0, "heart_rate": 72})),
    datex.encode_waves(2, {datex.WaveType.ECG1: [100, -200] * 30, datex.WaveType.PLETH: [5] * 10}),
    datex.encode_alarm_status(
        datex.AlarmStatus((datex.AlarmDisplay("SpO2 LOW", datex.AlarmColor.YELLOW),)),
        3,
    ),
]
#: Header fields: r_len, time, main type, then the subrecord descriptors (offset, type).
FIELDS = (0, 6, 8, 14, 16, 18, 19, 21, 22, 24, 40, 42)


def _mutant(rng: random.Random) -> bytes:
    return datex.frame(fh.mutate_binary(rng, rng.choice(SEEDS), FIELDS))


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(600 * scale())  # a hang guard: loaded, the pass can take minutes
def test_mutated_records_never_escape_nor_stall() -> None:
    figures, failures = fh.run("datex", lambda: datex.DatexDecoder("fuzz"), _mutant, MESSAGES)
    print(f"\ndatex: {figures}")
    assert failures == []
    assert figures.messages == MESSAGES
    assert figures.peak_bytes < MEMORY_CEILING


@pytest.mark.parametrize("path", fh.corpus("datex"), ids=lambda p: p.name)
def test_every_input_that_once_crashed_is_decoded_now(path: Path) -> None:
    decoder = datex.DatexDecoder("fuzz")
    start = time.process_time()
    decoder.receive_data(path.read_bytes(), 0.0)
    assert time.process_time() - start < fh.BUDGET_S
    assert DECODER_FAULT not in decoder.stats.errors
