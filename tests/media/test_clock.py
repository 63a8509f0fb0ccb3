"""A channel's sample clock and sample numbering at the gateway (media/waveform/clock.py),
on reads generated as a serial device delivers them: a device whose crystal drifts against
ours makes samples; each read returns the samples made so far, late by a delay that varies
(the read jitter) above a floor. The truth a stamp is held to: when the sample was made,
plus that floor."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from numpy.typing import NDArray

from media.waveform.clock import SampleClock, SampleTimeline

T0 = 1_800_000_000.0
FLOOR_S = 0.003  # the smallest delay a read has


@dataclass
class Run:
    seconds: list[float] = field(default_factory=list)  # stream time of each read's first
    errors: list[float] = field(default_factory=list)  # stamp - truth, s
    naive: list[float] = field(default_factory=list)  # arrival-based time - truth, s
    stamps: list[float] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)  # the timeline's index of each read
    true_firsts: list[int] = field(default_factory=list)  # the device's own
    missing: list[int] = field(default_factory=list)

    def settled(self, after_s: float) -> NDArray[np.float64]:
        errors = np.array(self.errors, dtype=np.float64)
        return np.asarray(np.abs(errors[np.array(self.seconds) >= after_s]), dtype=np.float64)


def simulate(
    *,
    rate: float = 60.0,
    drift_ppm: float = 150.0,
    jitter_s: float = 0.040,
    seconds: float = 150.0,
    read_every: tuple[float, float] = (0.016, 0.050),
    seed: int = 1,
    silent: tuple[float, float] | None = None,
    blocked: tuple[float, float] | None = None,
    late: tuple[float, float] | None = None,
    timeline: SampleTimeline | None = None,
) -> tuple[Run, SampleTimeline]:
    """Reads of a device making samples at ``rate`` x (1 + drift); each arrives
    FLOOR_S + U(0, jitter_s) after its newest sample. ``silent`` (start, length): the device
    sends nothing then (those samples are lost); ``blocked``: the gateway does not read then
    (the samples wait, and come in one read after); ``late`` (at, delay): the first read
    from ``at`` on comes ``delay`` late, and the next brings what was made meanwhile (the
    device or the gateway was busy: nothing was lost)."""
    rng = np.random.default_rng(seed)
    true_rate = rate * (1 + drift_ppm * 1e-6)
    line = timeline or SampleTimeline(rate)
    run = Run()
    waiting: list[tuple[int, int, float]] = []  # reads not yet placed: (first, n, arrival)
    sent = 0  # the next sample the device has not yet delivered
    t = 0.0
    while t < seconds:
        t += rng.uniform(*read_every)
        newest = int(t * true_rate)
        if newest < sent:
            continue
        if silent and silent[0] <= sent / true_rate < silent[0] + silent[1]:
            sent = newest + 1  # made and lost
            continue
        if blocked and blocked[0] <= t < blocked[0] + blocked[1]:
            continue  # the samples wait for the next read
        n = newest - sent + 1
        arrival = T0 + newest / true_rate + FLOOR_S + rng.uniform(0, jitter_s)
        if late and late[0] <= t < late[0] + late[1] + 1.0:
            arrival += late[1]
            t += late[1]  # nothing read meanwhile
            late = None
        waiting.append((sent, n, arrival))
        for placed in line.place(n, arrival):
            first, count, at = waiting.pop(0)
            stamp = line.stamp(placed.first_index)
            truth = T0 + first / true_rate + FLOOR_S
            run.seconds.append(first / true_rate)
            run.errors.append(stamp - truth)
            run.naive.append(at - (count - 1) / rate - truth)
            run.stamps.append(stamp)
            run.firsts.append(placed.first_index)
            run.true_firsts.append(first)
            run.missing.append(placed.missing)
        sent = newest + 1
    return run, line


def test_without_jitter_the_stamps_are_the_sample_times() -> None:
    run, line = simulate(jitter_s=0.0, seconds=60.0)
    assert run.settled(1.0).max() < 1e-5
    assert line.clock.drift * line.rate == pytest.approx(-150e-6, abs=1e-7)  # faster device


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_with_40_ms_of_read_jitter_the_stamps_are_within_a_millisecond(seed: int) -> None:
    run, line = simulate(seed=seed)
    naive = np.array(run.naive)
    assert np.ptp(naive[len(naive) // 2 :]) > 0.035  # what reads give: tens of ms of jitter
    settled = run.settled(40.0)
    assert np.percentile(settled, 95) < 0.0005
    assert settled.max() < 0.0015
    # The device's drift (150 ppm fast) is followed.
    assert line.clock.drift * line.rate == pytest.approx(-150e-6, abs=30e-6)
    assert sum(run.missing) == 0


def test_stamps_increase_and_never_jump() -> None:
    run, _ = simulate(seed=5, seconds=60.0)
    stamps, firsts = np.array(run.stamps), np.array(run.firsts)
    assert (np.diff(stamps) > 0).all()
    period = np.diff(stamps) / np.diff(firsts)
    settled = np.array(run.seconds[1:]) > 5.0
    # Never further from the nominal sample period than the slew bound (0.5 %) and the
    # device's drift (0.015 %) allow: a trace's time axis never visibly stretches.
    assert np.abs(period[settled] * 60.0 - 1).max() < 0.0052


def test_a_monitor_replying_four_times_a_second_is_timed_within_a_few_ms() -> None:
    """Sparse reads give the envelope fewer points: a looser bound, stated."""
    worst = []
    for seed in (1, 2, 3):
        run, _ = simulate(rate=125.0, read_every=(0.256, 0.256), seed=seed, seconds=180.0)
        worst.append(run.settled(60.0).max())
    assert max(worst) < 0.005


def test_a_silent_device_without_a_counter_leaves_a_gap_of_the_silence() -> None:
    run, line = simulate(seed=6, seconds=60.0, silent=(30.0, 2.0))
    assert line.gaps == 1
    (k,) = [k for k, m in enumerate(run.missing) if m]
    # The read after the silence is numbered as the device numbered it, within a sample.
    assert abs(run.firsts[k] - run.true_firsts[k]) <= 1
    assert abs(run.missing[k] - 120) <= 1
    offsets = np.array(run.firsts) - np.array(run.true_firsts)
    assert (offsets[:k] == 0).all()
    assert (offsets[k:] == offsets[k]).all()  # and every sample after it in its place


def test_a_gateway_that_did_not_read_for_a_second_loses_nothing() -> None:
    run, line = simulate(seed=7, seconds=60.0, blocked=(30.0, 1.0))
    assert line.gaps == 0
    assert run.firsts == run.true_firsts


@pytest.mark.parametrize("delay", [0.2, 0.5, 2.0])
def test_a_read_that_came_late_with_its_samples_after_it_is_no_gap(delay: float) -> None:
    """A read late by more than the stall threshold looks like the first after a silence;
    the next one, bringing what was made meanwhile, says it was not."""
    run, line = simulate(seed=8, seconds=60.0, late=(30.0, delay))
    assert line.gaps == 0 and line.late_reads == 1
    assert run.firsts == run.true_firsts


def test_a_read_held_for_a_silence_is_placed_when_the_device_falls_silent() -> None:
    line = SampleTimeline(60.0)
    for k in range(120):  # 2 s of 1-sample reads, on time
        line.place(1, T0 + k / 60)
    assert line.place(1, T0 + 4.0) == []  # 2 s later, one sample: held
    (placed,) = line.release()
    assert abs(placed.missing - 119) <= 1 and not line.holding


def test_a_device_counter_marks_its_own_gaps_exactly() -> None:
    line = SampleTimeline(100.0)
    assert line.place(10, T0, device_index=5000)[0].first_index == 0
    assert line.place(10, T0 + 0.1, device_index=5010)[0].first_index == 10
    (lost,) = line.place(10, T0 + 0.3, device_index=5030)  # 5020..5029 never came
    assert (lost.first_index, lost.missing) == (30, 10)
    # A counter that goes back (the device restarted) is followed from there.
    assert line.place(10, T0 + 0.4, device_index=7)[0].first_index == 40
    assert line.place(10, T0 + 0.5, device_index=17)[0].first_index == 50


def test_a_clock_stepped_back_starts_afresh() -> None:
    clock = SampleClock(100.0)
    for k in range(300):
        clock.observe(k, T0 + k / 100 + 0.01)
    before = clock.stamp(299)
    clock.observe(300, T0 - 60.0)  # the gateway's clock was set back a minute
    assert clock.restarts == 1
    assert clock.stamp(300) < before - 59.0


def test_a_clock_needs_an_arrival_and_a_rate() -> None:
    with pytest.raises(ValueError, match="no arrival"):
        SampleClock(100.0).stamp(0)
    with pytest.raises(ValueError, match="sample rate"):
        SampleClock(0.0)
    with pytest.raises(ValueError, match="at least one"):
        SampleTimeline(100.0).place(0, T0)
