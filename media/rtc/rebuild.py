"""When to give a peer connection up and when to make the next one. Sans-I/O.

A connection to a viewer is given up when it has not opened by ``open_timeout_s`` after the
offer (the answer was lost, or ICE found no path: an offer made while the TURN server was
down has no relay candidate and can never connect), when aiortc says it ``failed``, or when
the heartbeat hears nothing. aiortc has no ICE restart, so the way back is a new connection.

The next offer waits a delay that doubles after each connection that failed without having
been up for ``stable_s`` (``first_delay_s``, twice that, ... up to ``max_delay_s``) and
starts again from ``first_delay_s`` once a connection has stayed up that long. It never gives
up while the viewer is in the consultation: the cap is small (a few seconds) so that media is
back within about that long after the path returns, whatever the outage's length.

A connection that could not even be offered because gathering found no candidate (relay-only
ICE with the TURN server unreachable: a blackout of the site's line) is not backed off: the
gather already waited its own timeout (aioice's five seconds) sending a few STUN requests, so
it is the probe of the path, and the next one starts after ``first_delay_s``. Doubling there
would only add the delay to the time media takes to come back after a long outage (measured:
5.3 s after a 120 s blackout with the doubling, the issue's bound being 5 s).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RebuildPolicy:
    #: An offer whose connection has not opened by then is given up (aiortc's own ICE
    #: failure takes about a minute; a good path connects in well under a second).
    open_timeout_s: float = 12.0
    first_delay_s: float = 0.5
    max_delay_s: float = 4.0
    #: A connection up this long counts as a success: the next failure starts from the
    #: first delay again.
    stable_s: float = 20.0


class Backoff:
    """One viewer's rebuild schedule. ``now`` is a monotonic clock's."""

    def __init__(self, policy: RebuildPolicy | None = None) -> None:
        self.policy = policy or RebuildPolicy()
        self._delay = self.policy.first_delay_s
        self._opened_at: float | None = None
        #: Connections that failed in a row (reset by a stable one).
        self.failures = 0

    def opened(self, now: float) -> None:
        self._opened_at = now

    def failed(self, now: float, *, offered: bool = True) -> float:
        """The connection was given up at ``now``: seconds to wait before the next offer.
        ``offered=False``: it had no candidate to offer (its gather timed out reaching the
        TURN server); the wait is ``first_delay_s`` and the doubling schedule is untouched."""
        policy = self.policy
        if not offered:
            self.failures += 1
            return policy.first_delay_s
        if self._opened_at is not None and now - self._opened_at >= policy.stable_s:
            self._delay = policy.first_delay_s
            self.failures = 0
        self._opened_at = None
        self.failures += 1
        delay = self._delay
        self._delay = min(self._delay * 2, policy.max_delay_s)
        return delay
