"""The application heartbeat on the reliable channel. Sans-I/O.

aiortc keeps a data channel "open" for about 40 s after the link has died, while everything
sent is lost. Each side pings every ``interval_s``; anything received counts as a sign of
life; nothing for ``timeout_s`` means the peer is dead, and the caller rebuilds the connection
through signaling (aiortc has no ICE restart). Round-trip times come for free.

Every ``now`` is the caller's *monotonic* clock: a wall-clock step (an NTP correction) must
neither declare a live peer dead nor keep a dead one alive. The messages are
:class:`~media.rtc.events.Ping` and :class:`~media.rtc.events.Ack` of the events channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.rtc.events import Ack, EventMessage, Ping


@dataclass
class Heartbeat:
    interval_s: float = 0.5
    #: 2.5 s of silence: with pings every 0.5 s a dead peer is declared within 3 s.
    timeout_s: float = 2.5

    def __post_init__(self) -> None:
        self._seq = 0
        self._next_ping = 0.0
        self._heard: float | None = None
        self._started: float | None = None
        self.rtt_s: float | None = None

    def start(self, now: float) -> None:
        self._started = self._heard = now
        self._next_ping = now

    def tick(self, now: float) -> list[Ping]:
        """Messages to send now (a ping when one is due)."""
        if self._started is None:
            self.start(now)
        if now < self._next_ping:
            return []
        self._next_ping = now + self.interval_s
        self._seq += 1
        return [Ping(seq=self._seq, at=now)]

    def heard(self, now: float) -> None:
        """Anything arrived from the peer: a sign of life."""
        self._heard = now

    def received(self, message: EventMessage, now: float) -> Ack | None:
        """Note a message from the peer; returns the reply to a ping, if it is one."""
        self._heard = now
        match message:
            case Ping(seq=seq, at=at):
                return Ack(seq=seq, at=at)
            case Ack(at=at) if at <= now:
                self.rtt_s = now - at
        return None

    def dead(self, now: float) -> bool:
        return self._heard is not None and now - self._heard > self.timeout_s
