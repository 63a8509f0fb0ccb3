"""Per-key token buckets on a driven clock: each key its own burst and rate, and a bounded
table that a client renaming itself for every request cannot grow."""

from __future__ import annotations

import pytest

from runtime.clock import ManualClock
from runtime.ratelimit import TokenBuckets


def test_each_key_has_its_own_burst_then_the_rate() -> None:
    clock = ManualClock()
    buckets = TokenBuckets(rate=0.5, burst=2, clock=clock)
    assert [buckets.take("dk") for _ in range(3)] == [True, True, False]
    assert buckets.take("dw")  # another clinician is not held back by the first
    clock.advance(2.0)  # one token back at 0.5/s
    assert [buckets.take("dk") for _ in range(2)] == [True, False]


def test_the_table_is_bounded_and_keeps_the_recently_used() -> None:
    clock = ManualClock()
    buckets = TokenBuckets(rate=0.1, burst=1, clock=clock, max_keys=3)
    assert buckets.take("dk")
    for k in range(1000):  # a client naming itself anew each time
        buckets.take(f"instance-{k}")
        if k % 2 == 0:
            assert not buckets.take("dk")  # used again: stays in the table, still empty
    assert len(buckets) == 3
    with pytest.raises(ValueError, match="max_keys"):
        TokenBuckets(rate=1.0, burst=1, max_keys=0)
