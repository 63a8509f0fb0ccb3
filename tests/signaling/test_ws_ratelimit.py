"""The WebSocket rate limit on a driven clock: a burst, then the steady rate."""

from __future__ import annotations

from runtime.clock import ManualClock
from runtime.ratelimit import TokenBucket


def test_a_burst_then_the_rate_refills_on_the_monotonic_clock() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=10.0, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.1)  # one token back at 10/s
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.step_wall(-3600.0)  # the wall clock jumps back an hour: nothing changes
    assert not bucket.take()
    clock.advance(10.0)  # never more than the burst, however long it waited
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
