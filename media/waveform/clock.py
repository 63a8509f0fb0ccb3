"""A waveform channel's sample clock and the number of each sample, at the gateway. Sans-I/O.

Samples are placed by their index in the channel's stream, never by when a read happened to
return them: a serial read comes back 0-40 ms after its newest byte (the operating system,
the event loop), and a trace drawn at those times breaks and kinks. Each channel counts its
samples: with the device's own sample number where it has one (a jump in it is a gap the
device marks), else with the gateway's count of samples received; a device without a counter
that falls silent longer than its jitter explains has lost samples, and the count then jumps
by the silence's length (an explicit gap, never a squeeze).

:class:`SampleClock` gives each index a time on the gateway's clock::

    time(i) = i / rate + offset + drift * (i - reference)

estimated from arrivals. An arrival is never earlier than the sample it brings, only later by
a varying delay, so each one bounds the line from above and the estimate is their lower
envelope, fitted over the last two minutes: the drift (the device's crystal against ours)
from the least delayed arrivals of the window's two halves, the offset putting the line under
all of them. Its times are the sample's instant plus the smallest delay seen: with 40 ms of
read jitter, within about a millisecond once settled (``tests/media/test_clock.py``). The
times it hands out are monotonic: a new estimate is approached at a bounded slew, never
jumped to, unless the gateway's own clock stepped back.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockSettings:
    #: Arrivals are reduced to their lowest one per bin of this many seconds of samples.
    bin_s: float = 1.0
    #: The drift is fitted over this many seconds of bins (once at least ``drift_min_s``).
    drift_window_s: float = 120.0
    drift_min_s: float = 30.0
    #: A drift beyond this (a fraction of the nominal rate) is not a crystal's: clamped.
    max_drift: float = 0.005
    #: Before a drift is fitted: the offset is the lowest arrival of the last this many s.
    floor_s: float = 10.0
    #: How fast the times handed out may move towards a new estimate, as a fraction of the
    #: time that passes: fast while settling (the first ``settle_s``), slow after.
    settle_s: float = 5.0
    settling_slew: float = 0.2
    slew: float = 0.005
    #: An arrival this far (s) before the line: the gateway's clock stepped back (a time
    #: set by hand); the estimate starts afresh.
    step_s: float = 1.0


class SampleClock:
    """The time of each sample index of one channel, at nominal rate ``rate`` (Hz).

    Call :meth:`observe` with each read (the index of the newest sample it brought, and when
    it arrived), then :meth:`stamp` for the time of a packet's first sample. Indices given to
    :meth:`stamp` should increase; each stamp is then later than the previous one."""

    def __init__(self, rate: float, settings: ClockSettings | None = None) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"sample rate {rate}")
        self.rate = rate
        self.settings = settings or ClockSettings()
        self._bin_samples = max(1, round(self.settings.bin_s * rate))
        self._bins: deque[tuple[int, float]] = deque()  # (index, residual) lowest per bin
        self._bin: int | None = None
        self._bin_low: tuple[int, float] | None = None
        self._first_index: int | None = None
        #: Seconds per sample beyond 1 / rate (the device's drift).
        self.drift = 0.0
        self._reference = 0
        self._offset = 0.0
        self._stamped: tuple[int, float] | None = None
        self.observations = 0
        self.restarts = 0

    # -- estimating -----------------------------------------------------------------------

    def observe(self, index: int, arrival: float) -> None:
        """Sample ``index`` (the newest of a read) had arrived by ``arrival`` (s)."""
        residual = arrival - index / self.rate
        if self._first_index is not None and residual < self._line(index) - self.settings.step_s:
            self._restart()
        if self._first_index is None:
            self._first_index = index
            self._reference, self._offset = index, residual
        self.observations += 1
        bin_ = index // self._bin_samples
        if bin_ != self._bin:
            if self._bin_low is not None:
                self._close_bin(self._bin_low)
            self._bin, self._bin_low = bin_, (index, residual)
        elif self._bin_low is None or residual < self._bin_low[1]:
            self._bin_low = (index, residual)
        # An arrival below the line is proof that the line is too late: lower it at once.
        below = residual - self._line(index)
        if below < 0:
            self._offset += below

    def _restart(self) -> None:
        self._bins.clear()
        self._bin = self._bin_low = self._first_index = self._stamped = None
        self.drift = 0.0
        self.restarts += 1

    def _line(self, index: float) -> float:
        return self._offset + self.drift * (index - self._reference)

    def _close_bin(self, low: tuple[int, float]) -> None:
        self._bins.append(low)
        keep = self.settings.drift_window_s * self.rate
        while self._bins and low[0] - self._bins[0][0] > keep:
            self._bins.popleft()
        self._fit()

    def _fit(self) -> None:
        """Drift: the slope of the line through the lowest point of the older half of the
        window and the lowest of the newer half (each the least delayed of many arrivals,
        so the line is about as good as its two ends; as good as the linear-programming
        fit under all points), found again with the first slope taken out. Offset: the
        line under every point. Until the window is ``drift_min_s`` long a drift cannot be
        told from jitter: the nominal rate, under the points of the last ``floor_s``."""
        points = self._bins
        newest = points[-1][0]
        settings = self.settings
        drift = 0.0
        floor = settings.floor_s * self.rate
        if newest - points[0][0] >= settings.drift_min_s * self.rate:
            middle = (points[0][0] + newest) / 2
            older = [p for p in points if p[0] < middle]
            newer = [p for p in points if p[0] >= middle]
            for _ in range(2):
                a = min(older, key=lambda p: p[1] - drift * p[0])
                b = min(newer, key=lambda p: p[1] - drift * p[0])
                drift = (b[1] - a[1]) / (b[0] - a[0])
            limit = settings.max_drift / self.rate
            drift = min(max(drift, -limit), limit)
            floor = newest - points[0][0]
        self.drift = drift
        self._reference = newest
        self._offset = min(r - drift * (i - newest) for i, r in points if newest - i <= floor)

    # -- reading ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the clock has seen arrivals over at least one bin."""
        return len(self._bins) > 0

    def estimate(self, index: float) -> float:
        """The current estimate of the time of sample ``index`` (not slewed: may step)."""
        if self._first_index is None:
            raise ValueError("no arrival observed yet")
        return index / self.rate + self._line(index)

    def index_at(self, time: float) -> float:
        """The index of the sample the estimate puts at ``time`` (the inverse of
        :meth:`estimate`): the newest sample that can have arrived by then."""
        if self._first_index is None:
            raise ValueError("no arrival observed yet")
        per_sample = 1.0 / self.rate + self.drift
        return (time - self._offset + self.drift * self._reference) / per_sample

    def stamp(self, index: int) -> float:
        """The time of sample ``index`` for a packet about to be sent: the estimate,
        approached at a bounded slew from the previous stamp, so that stamps of increasing
        indices increase and never jump. An index before the previous stamp's is timed from
        that stamp without moving it."""
        estimate = self.estimate(index)
        per_sample = 1.0 / self.rate + self.drift
        if self._stamped is None:
            self._stamped = (index, estimate)
            return estimate
        last_index, last_time = self._stamped
        steps = index - last_index
        nominal = last_time + steps * per_sample
        if steps <= 0:
            return nominal
        settling = (
            self._first_index is not None
            and (index - self._first_index) < self.settings.settle_s * self.rate
        )
        slew = self.settings.settling_slew if settling else self.settings.slew
        allowed = slew * steps / self.rate
        time = min(max(estimate, nominal - allowed), nominal + allowed)
        self._stamped = (index, time)
        return time

    def time_of(self, index: float) -> float:
        """The time of ``index`` on the line the stamps follow (beats, quality windows)."""
        if self._stamped is None:
            return self.estimate(index)
        last_index, last_time = self._stamped
        return last_time + (index - last_index) * (1.0 / self.rate + self.drift)


@dataclass(frozen=True)
class Placement:
    """Where a chunk goes in its channel's stream."""

    #: The stream index of its first sample.
    first_index: int
    #: Samples missing just before it (a gap the device marked, or a silence): the chunk's
    #: first index is that much past the end of the previous one.
    missing: int = 0


class SampleTimeline:
    """Numbers a channel's samples and keeps its clock.

    A device counter (``device_index``) is followed while it moves forward by less than
    ``max_jump_s``: a jump is a gap the device marks, exactly. A counter that goes back or
    leaps (the device restarted) is followed again from there.

    Without a counter, the samples are counted, and the clock tells a silence: a read whose
    arrival the clock puts more than ``stall_s`` past its usual delay after its newest
    sample may follow a silence in which samples were lost, or may only be late (the gateway
    or the device busy; its samples then come in a burst). It is held until the next read
    tells which: if the count is still behind the clock then, the held read is placed after
    a gap of the samples missing; if the next read caught up, without one. A silence costs
    one read's latency; a late read, no gap. Losses shorter than ``stall_s`` go unseen.

    :meth:`place` returns the placements of the reads it decides, in order; a held read's
    placement comes with the next read's (or from :meth:`release`)."""

    def __init__(
        self,
        rate: float,
        *,
        stall_s: float = 0.15,
        max_jump_s: float = 3600.0,
        clock: ClockSettings | None = None,
    ) -> None:
        self.rate = rate
        self.clock = SampleClock(rate, clock)
        self.stall_samples = stall_s * rate
        self.max_jump = max_jump_s * rate
        self._next = 0  # the index the next sample takes, counted
        self._device_origin: int | None = None  # stream index = device index - origin
        self._started = False
        #: The usual excess of the clock's newest possible index over the newest counted
        #: one (the read delay, in samples), from recent reads without a loss.
        self._excess: deque[float] = deque(maxlen=64)
        #: A read that may follow a silence: (n, arrival, its excess over the usual).
        self._held: tuple[int, float, float] | None = None
        self.gaps = 0
        self.gap_samples = 0
        #: Reads held and then found only late (no gap).
        self.late_reads = 0

    @property
    def holding(self) -> bool:
        return self._held is not None

    def place(self, n: int, arrival: float, device_index: int | None = None) -> list[Placement]:
        """A read of ``n`` samples (n >= 1) arrived at ``arrival``; ``device_index``: the
        device's own number of the first of them, if it has one. Returns the placements
        decided now, in the order the reads came: a held read's first, then this one's
        unless it is held in turn."""
        if n < 1:
            raise ValueError("a chunk has at least one sample")
        if device_index is not None:
            return [*self.release(), self._counted(n, arrival, device_index)]
        out: list[Placement] = []
        if self._held is not None:
            held_n, held_arrival, held_excess = self._held
            self._held = None
            # Still behind the clock with this read counted after the held one: lost.
            behind = self._beyond_usual(held_n + n, arrival)
            missing = 0
            if behind > self.stall_samples:
                missing = max(0, round(min(held_excess, behind)))
            else:
                self.late_reads += 1
            out.append(self._commit(held_n, held_arrival, missing))
        if self._started and self.clock.ready:
            beyond = self._beyond_usual(n, arrival)
            if beyond > self.stall_samples:
                self._held = (n, arrival, beyond)
                return out
            self._excess.append(beyond + self._usual())
        out.append(self._commit(n, arrival, 0))
        return out

    def release(self) -> list[Placement]:
        """The held read's placement, decided on the evidence so far (a gap): for a device
        that fell silent right after it."""
        if self._held is None:
            return []
        n, arrival, excess = self._held
        self._held = None
        return [self._commit(n, arrival, max(0, round(excess)))]

    def _counted(self, n: int, arrival: float, device_index: int) -> Placement:
        missing = 0
        if self._device_origin is not None:
            jump = device_index - self._device_origin - self._next
            if 0 <= jump <= self.max_jump:
                missing = jump
            else:  # restarted or leapt: continue from here, by the clock
                self._device_origin = None
        if self._device_origin is None:
            if self._started and self.clock.ready:
                missing = max(0, round(self._beyond_usual(n, arrival)))
                if missing <= self.stall_samples:
                    missing = 0
            self._device_origin = device_index - (self._next + missing)
        return self._commit(n, arrival, missing)

    def _usual(self) -> float:
        return float(np.median(self._excess)) if self._excess else 0.0

    def _beyond_usual(self, n: int, arrival: float) -> float:
        """How far (samples) the newest index the clock allows by ``arrival`` is past the
        newest of ``n`` more counted samples, beyond the usual read delay."""
        return self.clock.index_at(arrival) - (self._next + n - 1) - self._usual()

    def _commit(self, n: int, arrival: float, missing: int) -> Placement:
        self._started = True
        first = self._next + missing
        if missing:
            self.gaps += 1
            self.gap_samples += missing
        self._next = first + n
        self.clock.observe(first + n - 1, arrival)
        return Placement(first, missing)

    def time_of(self, index: float) -> float:
        return self.clock.time_of(index)

    def stamp(self, index: int) -> float:
        return self.clock.stamp(index)
