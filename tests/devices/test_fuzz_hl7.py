"""In-message fuzzing of the HL7/MLLP decoder (issue 11): valid ORU^R01 and ORU^R40 messages
with their fields, components, units, values, times and segments mutated, each in a valid
MLLP frame. Every message must be answered once (AA, AE or AR)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from devices import codes
from devices.model import AlarmKind, AlarmPriority, DeviceAlarm
from devices.protocols.common import DECODER_FAULT
from devices.protocols.hl7_acm import build_r40
from devices.protocols.hl7_pcd import Hl7Decoder, Numeric, Wave, build_oru
from devices.protocols.mllp import MllpFramer, frame
from tests.devices import fuzz_harness as fh
from tests.fuzzing import budget, scale

#: The CI pass (issue 11: 20,000 a codec); ``make fuzz`` runs ten times as many. python-hl7
#: parses ~1 ms a message: ~25 s of CPU, the dearest of the codecs' passes.
MESSAGES = budget(20_000)
MEMORY_CEILING = 20_000_000

SEEDS = [
    build_oru(
        [
            Numeric(codes.SPO2, 97),
            Numeric(codes.HEART_RATE, 72),
            Numeric(codes.NIBP_SYS, 120),
            Numeric(codes.ABP_MEAN, 93),
            Numeric(codes.TEMPERATURE, None),
        ],
        [
            Wave(codes.ECG_II, 500, [0.1, -0.2, 0.3, 0.5] * 5, 1_700_000_000.5),
            Wave(codes.PLETH, 125, [0.5] * 8, 1_700_000_000.5),
        ],
        when=1_700_000_001.0,
    ),
    build_r40(
        DeviceAlarm("spo2_low", AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL, codes.SPO2),
        "A17",
        "start",
        1_700_000_000.0,
        value=86,
    ),
]

VALUES = [
    "",
    "^",
    "^^",
    "~",
    "\\",
    "&",
    "0",
    "-1",
    "-999",
    "1e999",
    "-1e999",
    "NaN",
    "inf",
    "9" * 40,
    "^120",
    "<^5",
    "1^:^2",
    "ADT",
    "ORU",
    "ORU^R01",
    "ORU^R40",
    "R01",
    "NA",
    "NM",
    "SN",
    "X",
    "20260101120000+9900",
    "20260101120000.9999999999999999999",
    "2026010112000099999999999999999",
    "99999999999999",
    "0^MDC_ATTR_SAMP_RATE^MDC",
    "150033^MDC_PRESS_BLD_ART_SYS^MDC",
    "999999^MDC_UNKNOWN^MDC",
    "9279-1^Respiratory rate^LN",
    "kPa^kPa^UCUM",
    "[degF]",
    "266016^MDC_DIM_MMHG^MDC",
    "furlong",
    "1.1.2.1",
    "1.1.2.1.1",
    "00A0B0C0D0E0F001^EUI-64",
    "x" * 300,
]


def _mutate(rng: random.Random, text: str) -> str:
    segments = text.rstrip("\r").split("\r")
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        k = rng.randrange(len(segments))
        fields = segments[k].split("|")
        if op < 0.55:  # a field, or one component of it
            f = rng.randrange(len(fields))
            if rng.random() < 0.3 and "^" in fields[f]:
                parts = fields[f].split("^")
                parts[rng.randrange(len(parts))] = rng.choice(VALUES)
                fields[f] = "^".join(parts)
            else:
                fields[f] = rng.choice(VALUES)
            segments[k] = "|".join(fields)
        elif op < 0.65:  # fields lost or added
            if rng.random() < 0.5:
                segments[k] = "|".join(fields[: rng.randrange(len(fields) + 1)])
            else:
                segments[k] += "|" * rng.randint(1, 20)
        elif op < 0.75 and len(segments) > 1:  # a segment lost or repeated
            if rng.random() < 0.5:
                del segments[k]
            else:
                segments.insert(k, segments[k])
        elif op < 0.85:  # MSH-1/MSH-2, the separators
            head = list(segments[0])
            if len(head) > 8:
                head[rng.randrange(3, 9)] = rng.choice("|^~\\&\r#")
            segments[0] = "".join(head)
        else:  # characters
            line = list(segments[k])
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(line) + 1)
                if rng.random() < 0.5 and line:
                    del line[min(at, len(line) - 1)]
                else:
                    line.insert(at, rng.choice("|^~\\&\r0123456789.+-eE"))
            segments[k] = "".join(line)
    return "\r".join(segments) + "\r"


def _mutant(rng: random.Random) -> bytes:
    return frame(_mutate(rng, rng.choice(SEEDS)).encode("utf-8", errors="replace"))


def _answered_once(decoder: fh.Feeds, data: bytes) -> None:
    assert isinstance(decoder, Hl7Decoder)
    answers = MllpFramer().receive_data(decoder.data_to_send())
    if len(answers) != 1:
        raise AssertionError(f"{len(answers)} answers to one message")
    (answer,) = answers
    assert isinstance(answer, bytes)
    msa = [s for s in answer.decode().split("\r") if s.startswith("MSA|")]
    if len(msa) != 1 or msa[0].split("|")[1] not in ("AA", "AE", "AR"):
        raise AssertionError(f"not an acknowledgement: {answer!r}")


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(600 * scale())  # a hang guard: loaded, the pass can take minutes
def test_mutated_messages_are_each_answered_and_never_escape_nor_stall() -> None:
    figures, failures = fh.run(
        "hl7", lambda: Hl7Decoder("fuzz"), _mutant, MESSAGES, after_feed=_answered_once
    )
    print(f"\nhl7: {figures}")
    assert failures == []
    assert figures.messages == MESSAGES
    assert figures.peak_bytes < MEMORY_CEILING


@pytest.mark.parametrize("path", fh.corpus("hl7"), ids=lambda p: p.name)
def test_every_input_that_once_crashed_is_answered_now(path: Path) -> None:
    decoder = Hl7Decoder("fuzz")
    start = time.process_time()
    decoder.receive_data(path.read_bytes(), 0.0)
    assert time.process_time() - start < fh.BUDGET_S
    assert DECODER_FAULT not in decoder.stats.errors
    _answered_once(decoder, b"")
