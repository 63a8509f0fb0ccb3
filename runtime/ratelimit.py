"""Token buckets on a monotonic clock: ``burst`` at once, then ``rate`` a second.

:class:`TokenBucket` limits one sender (a WebSocket connection); :class:`TokenBuckets` one
bucket per key (a clinician's identity), in a bounded table: a client that names itself
anew for every request cannot grow it, and a key pushed out (the least recently used)
comes back with a full bucket, which grants it at most ``burst`` more.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from runtime.clock import SYSTEM_CLOCK, Clock


@dataclass
class _Tokens:
    tokens: float
    stamp: float


def _spend(bucket: _Tokens, now: float, rate: float, burst: float) -> bool:
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
    bucket.stamp = now
    if bucket.tokens < 1.0:
        return False
    bucket.tokens -= 1.0
    return True


class TokenBucket:
    """``rate`` a second on average, ``burst`` at once; on the ``clock``'s monotonic time."""

    def __init__(self, rate: float, burst: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self._rate, self._burst = rate, float(burst)
        self._clock = clock
        self._bucket = _Tokens(float(burst), clock.monotonic())

    def take(self) -> bool:
        """Spend one token; False (nothing spent) when none is left."""
        return _spend(self._bucket, self._clock.monotonic(), self._rate, self._burst)


class TokenBuckets:
    """A :class:`TokenBucket` per key, at most ``max_keys`` of them."""

    def __init__(
        self, rate: float, burst: int, clock: Clock = SYSTEM_CLOCK, max_keys: int = 1024
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._rate, self._burst = rate, float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Tokens] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> bool:
        """Spend one of ``key``'s tokens; False (nothing spent) when it has none left."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Tokens(self._burst, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return _spend(bucket, now, self._rate, self._burst)
