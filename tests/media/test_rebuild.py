"""The rebuild schedule: doubling delays capped low, reset by a connection that stayed up."""

from __future__ import annotations

from media.rtc.rebuild import Backoff, RebuildPolicy


def test_delays_double_up_to_the_cap_and_never_stop() -> None:
    backoff = Backoff(RebuildPolicy(first_delay_s=0.5, max_delay_s=4.0))
    delays = [backoff.failed(float(t)) for t in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert backoff.failures == 8


def test_a_connection_that_stayed_up_resets_the_schedule_and_a_short_one_does_not() -> None:
    backoff = Backoff(RebuildPolicy(first_delay_s=0.5, max_delay_s=4.0, stable_s=20.0))
    for t in range(3):
        backoff.failed(float(t))  # 0.5, 1, 2
    backoff.opened(10.0)
    assert backoff.failed(15.0) == 4.0  # up 5 s only: still backing off
    backoff.opened(20.0)
    assert backoff.failed(45.0) == 0.5  # up 25 s: a fresh start
    assert backoff.failures == 1


def test_a_connection_with_nothing_to_offer_is_tried_again_soon_without_doubling() -> None:
    """A gather that found no candidate (TURN unreachable) already waited its timeout: the
    next try follows at the first delay however long the outage, and the doubling schedule
    of offered connections carries on where it was."""
    backoff = Backoff(RebuildPolicy(first_delay_s=0.5, max_delay_s=4.0))
    assert [backoff.failed(0.0), backoff.failed(1.0)] == [0.5, 1.0]
    assert [backoff.failed(float(t), offered=False) for t in range(2, 30)] == [0.5] * 28
    assert backoff.failed(31.0) == 2.0
    assert backoff.failures == 31
