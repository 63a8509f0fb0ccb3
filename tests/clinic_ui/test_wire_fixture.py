"""The waveform packets the browser's decoder is tested on (``wire.test.mjs``) are what the
Python encoder writes today: the two sides of the wire cannot drift apart unnoticed.

After a deliberate change of the format, rewrite the file with
``.venv/bin/python -m tests.clinic_ui.test_wire_fixture``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from media.rtc.wire import MAX_INDEX, WirePacket, decode, encode

FIXTURE = Path(__file__).with_name("wire_packets.json")

_ECG = [0.0, 0.12, 0.55, 1.48, -0.31, -0.08, 0.02, 0.0, 0.05, 0.11]
_PLETH = [np.nan, 41.0, 44.5, 50.25, 61.0, 70.0, 66.5, 58.0, np.nan, 47.0, 45.5, np.nan]

PACKETS = {
    "ecg 500 Hz, no gaps": WirePacket(1, 7, 500.0, 1_795_000_000.125, np.array(_ECG), 3_500),
    # Gaps at both ends and across the second bitmap byte; the sequence about to wrap; an
    # index beyond 32 bits.
    "pleth 125 Hz, gaps": WirePacket(
        2, 2**32 - 1, 125.0, 1_795_000_001.5, np.array(_PLETH), 2**40 + 3
    ),
    # The largest index a browser reads exactly.
    "nothing but gaps": WirePacket(1, 0, 500.0, 1_795_000_002.0, np.full(3, np.nan), MAX_INDEX),
}


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def fixture() -> list[dict[str, Any]]:
    """Each packet's bytes (hex) and what the reference decoder makes of them."""
    entries = []
    for name, packet in PACKETS.items():
        data = encode(packet)
        back = decode(data)
        entries.append(
            {
                "name": name,
                "hex": data.hex(),
                "channel": back.channel,
                "sequence": back.sequence,
                "sampleRate": back.sample_rate,
                "firstTime": back.first_time,
                "firstIndex": back.first_index,
                "samples": [_number(float(v)) for v in back.samples],
            }
        )
    return entries


def test_the_browser_is_tested_on_what_the_encoder_writes() -> None:
    stored = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert stored == fixture(), "rewrite it: python -m tests.clinic_ui.test_wire_fixture"


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(fixture(), indent=2) + "\n", encoding="utf-8")
