"""Pieces every decoder shares."""

from __future__ import annotations

import logging

import numpy as np

from devices.codes import VitalCode
from devices.model import DecoderStats, DeviceEvent, FrameError, Observation, Quality, WaveformChunk

log = logging.getLogger("devices.decode")


class DecoderBase:
    """Owns the stats and turns faults into counted, logged :class:`FrameError` events."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.stats = DecoderStats()

    def _error(
        self, events: list[DeviceEvent], reason: str, skipped: int, now: float, detail: str = ""
    ) -> None:
        self.stats.error(reason)
        log.info("%s: %s %s(%d bytes skipped)", self.device_id, reason, detail, skipped)
        events.append(FrameError(self.device_id, reason, skipped, now, detail[:200]))


class NumericThrottle:
    """Passes a numeric on when it changes, and otherwise once every ``every`` frames, so a
    60 Hz device yields about one observation a second per code while changes go out at once.

    Counting frames rather than seconds keeps decoding independent of how the bytes were
    split into reads.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self._last: dict[str, tuple[float | None, Quality, int]] = {}

    def offer(
        self,
        events: list[DeviceEvent],
        observation: Observation,
        frame: int,
    ) -> None:
        key = observation.code.key
        last = self._last.get(key)
        current = (observation.value, observation.quality)
        if last is None or last[:2] != current or frame - last[2] >= self.every:
            self._last[key] = (*current, frame)
            events.append(observation)


def chunk(
    code: VitalCode,
    rate: float,
    samples: list[float],
    device_id: str,
    now: float,
    first_time: float | None = None,
) -> WaveformChunk:
    """A chunk whose last sample arrived ``now`` (when the device gives no sample time)."""
    start = first_time if first_time is not None else now - (len(samples) - 1) / rate
    return WaveformChunk(
        code=code,
        sample_rate=rate,
        first_sample_time=start,
        samples=np.asarray(samples, dtype=np.float32),
        device_id=device_id,
        receive_time=now,
    )
