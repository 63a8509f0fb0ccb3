"""Pieces every decoder shares."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from devices.codes import VitalCode
from devices.model import DecoderStats, DeviceEvent, FrameError, Observation, Quality, WaveformChunk

log = logging.getLogger("devices.decode")

#: The reason a :class:`FrameError` gives for a message whose decoding raised something the
#: decoder did not foresee (a bug met on input): stable, so the stats count them together.
DECODER_FAULT = "decoder fault"
#: The reason of the one report of each code or unit a decoder read but could not map.
UNMAPPED = "unmapped"


def finite(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None: NaN and the infinities are "no
    value" (a quality flag says so), never a number passed on."""
    return value if value is not None and math.isfinite(value) else None


class DecoderBase:
    """Owns the stats and turns faults into counted, logged :class:`FrameError` events."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.stats = DecoderStats()
        self._faults_logged: set[str] = set()

    def _error(
        self, events: list[DeviceEvent], reason: str, skipped: int, now: float, detail: str = ""
    ) -> None:
        self.stats.error(reason)
        log.info("%s: %s %s(%d bytes skipped)", self.device_id, reason, detail, skipped)
        events.append(FrameError(self.device_id, reason, skipped, now, detail[:200]))

    def _unmapped(self, events: list[DeviceEvent], what: str, now: float) -> None:
        """Something decoded that cannot be passed on (a code outside the table, a unit
        unknown): counted every time in ``stats.unmapped``, and reported the first time as
        a :data:`UNMAPPED` :class:`FrameError` of no bytes, so it never vanishes unsaid."""
        count = self.stats.unmapped.get(what, 0)
        self.stats.unmapped[what] = count + 1
        if count == 0:
            log.info("%s: unmapped: %s", self.device_id, what)
            events.append(FrameError(self.device_id, UNMAPPED, 0, now, what[:200]))

    def _guarded(
        self,
        events: list[DeviceEvent],
        now: float,
        size: int,
        decode: Callable[[list[DeviceEvent]], None],
    ) -> bool:
        """Run ``decode`` on one message (it appends that message's events to the list it is
        given): the message boundary no exception crosses. Whatever it raises, its events
        are dropped (a message half read may be half wrong), the fault is counted as a
        :data:`DECODER_FAULT` of ``size`` bytes, logged with its traceback the first time
        each kind of fault occurs, and the stream goes on. True if the message decoded."""
        mine: list[DeviceEvent] = []
        try:
            decode(mine)
        except Exception as exc:
            kind = type(exc).__name__
            if kind not in self._faults_logged:
                self._faults_logged.add(kind)
                log.warning("%s: decoding a message raised", self.device_id, exc_info=True)
            self._error(events, DECODER_FAULT, size, now, f"{kind}: {exc}")
            return False
        events += mine
        return True


def bit7_frames(
    buf: bytearray, length: int, start_bit: bool
) -> tuple[list[bytes], list[tuple[str, int]], int]:
    """Split ``buf`` into frames of ``length`` bytes that are framed by bit 7 alone: the first
    byte has bit 7 == ``start_bit``, every other byte the opposite (Contec's legacy stream,
    Nonin #8). Returns the frames, the faults as (reason, bytes skipped), and how many bytes
    were consumed (the rest may be a frame still arriving)."""
    frames: list[bytes] = []
    faults: list[tuple[str, int]] = []
    i, n = 0, len(buf)
    while i < n:
        if bool(buf[i] & 0x80) != start_bit:
            start = i
            while i < n and bool(buf[i] & 0x80) != start_bit:
                i += 1
            faults.append(("bytes outside a frame (no start byte)", i - start))
            continue
        if n - i < length:
            break
        bad = next((k for k in range(1, length) if bool(buf[i + k] & 0x80) == start_bit), None)
        if bad is not None:
            faults.append(("truncated frame", bad))
            i += bad
            continue
        frames.append(bytes(buf[i : i + length]))
        i += length
    return frames, faults, i


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
    with np.errstate(over="ignore"):
        values = np.asarray(samples, dtype=np.float32)
    # Beyond float32 (a scale a device can state) or infinite: no usable value, so a gap.
    values[~np.isfinite(values)] = np.nan
    return WaveformChunk(
        code=code,
        sample_rate=rate,
        first_sample_time=start,
        samples=values,
        device_id=device_id,
        receive_time=now,
    )
