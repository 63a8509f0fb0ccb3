"""The application heartbeat on the reliable channel. Sans-I/O.

aiortc keeps a data channel "open" for about 40 s after the link has died, while everything
sent is lost. Each side pings every ``interval_s``; anything received counts as a sign of
life; nothing for ``timeout_s`` means the peer is dead, and the caller rebuilds the connection
through signaling (aiortc has no ICE restart). Round-trip times come for free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


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

    def tick(self, now: float) -> list[str]:
        """Messages to send now (a ping when one is due)."""
        if self._started is None:
            self.start(now)
        if now < self._next_ping:
            return []
        self._next_ping = now + self.interval_s
        self._seq += 1
        return [json.dumps({"t": "hb", "seq": self._seq, "at": now})]

    def received(self, text: str, now: float) -> str | None:
        """Note a sign of life; returns the reply to a ping, if ``text`` is one."""
        self._heard = now
        if not text.startswith('{"t": "hb'):
            return None
        try:
            msg = json.loads(text)
        except ValueError:
            return None
        if msg.get("t") == "hb":
            return json.dumps({"t": "hb-ack", "seq": msg.get("seq"), "at": msg.get("at")})
        if msg.get("t") == "hb-ack" and isinstance(msg.get("at"), int | float):
            self.rtt_s = now - float(msg["at"])
        return None

    def is_heartbeat(self, text: str) -> bool:
        return text.startswith('{"t": "hb')

    def dead(self, now: float) -> bool:
        return self._heard is not None and now - self._heard > self.timeout_s
