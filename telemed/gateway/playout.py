"""A viewer's playout delay (issue 15): the bedside video is sent with the RTP playout-delay
extension at min = max = 0 (render on arrival, media.rtc.playout_delay), and while that
maximum is 0 Chromium ignores its own jitter-buffer target: a viewer on a lossy or jittery
path cannot buffer unless the bedside raises the maximum for it.

A viewer's ``playout-delay`` asks for that: a maximum of ``max_ms`` (0..1000, the events
contract) on one camera's video or on all of this viewer's, min staying 0; ``clear`` (max 0)
when its path is clean again. :class:`GatewayPlayout` applies it to the asking connection's
senders only (rounded up to the extension's 10 ms), and the viewer's next ``video`` event
says the delay in force (media.rtc.peer). A request that changes nothing is not counted; a
change is taken at most :data:`BURST` at once and then one per ``1 / CHANGES_PER_S`` s per
clinician (by identity, across reconnections): a page that flaps must not make every frame's
timing move. Refusals (no such camera, a ``clear`` with a maximum, too often, no open
connection) are logged, each reason once per spell, and leave the delay in force as it was,
which the viewer sees in its ``video`` events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from media.rtc.events import PlayoutDelayRequest
from media.rtc.peer import MediaPeer
from media.rtc.playout_delay import in_units
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.ratelimit import TokenBuckets
from signaling.schema import Peer
from telemed.gateway.peers import identity

log = logging.getLogger(__name__)

#: Changes of playout delay a clinician may make at once ...
BURST = 3
#: ... and then one every 15 s: a few a minute.
CHANGES_PER_S = 1 / 15

TOO_OFTEN = "asked too often: the delay in force stays"
NO_CONNECTION = "no open connection to this viewer"
CLEAR_WITH_MAX = "clear asks for a maximum of 0"


class GatewayPlayout:
    """``cameras``: the bedside's camera names, in the order of each connection's video
    tracks; ``media_of``: a clinician's open connection by its current peer id."""

    def __init__(
        self,
        cameras: Sequence[str],
        media_of: Callable[[str], MediaPeer | None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._cameras = list(cameras)
        self._media_of = media_of
        self._buckets = TokenBuckets(CHANGES_PER_S, BURST, clock)
        # Who is being refused now, and why: each reason logged once per spell (a page that
        # asks in a loop must not fill the log), a spell ending with a change applied.
        self._refusing: set[tuple[str, str]] = set()
        self.applied = 0
        self.refused = 0

    def request(self, peer: Peer, message: PlayoutDelayRequest) -> str | None:
        """A clinician's ``playout-delay``: applied to its connection's video (None), or
        refused (the reason, logged). Cheap: done at once on the event loop."""
        who = identity(peer)
        media = self._media_of(peer.peer_id)
        if media is None:
            return self._refuse(peer, message, NO_CONNECTION)
        if message.reason == "clear" and message.max_ms != 0:
            return self._refuse(peer, message, CLEAR_WITH_MAX)
        positions: list[int] | None = None
        if message.camera is not None:
            if message.camera not in self._cameras:
                return self._refuse(peer, message, f"no camera named {message.camera!r}")
            positions = [self._cameras.index(message.camera)]
        targets = range(len(self._cameras)) if positions is None else positions
        current = [media.playout_delay_of(k) for k in targets]
        sent = [c for c in current if c is not None]
        if not sent:
            return self._refuse(peer, message, "no video is sent to this viewer")
        wanted = in_units(message.max_ms)
        if all(c == wanted for c in sent):
            return None  # in force already: nothing changes, nothing is counted
        if not self._buckets.take(who):
            return self._refuse(peer, message, TOO_OFTEN)
        self._refusing = {(w, r) for w, r in self._refusing if w != who}
        sent_positions = [k for k, c in zip(targets, current, strict=True) if c is not None]
        written = media.set_playout_delay(message.max_ms, sent_positions)
        self.applied += 1
        log.info(
            "playout delay for %s (%s): max %d ms on %s (%s)",
            peer.name,
            peer.site,
            written,
            message.camera or "every camera",
            message.reason,
        )
        return None

    def _refuse(self, peer: Peer, message: PlayoutDelayRequest, reason: str) -> str:
        self.refused += 1
        spell = (identity(peer), reason)
        if spell in self._refusing or len(self._refusing) >= 1024:
            return reason
        self._refusing.add(spell)
        log.warning(
            "playout-delay %d ms (%s) from %s refused: %s",
            message.max_ms,
            message.reason,
            peer.name,
            reason,
        )
        return reason
