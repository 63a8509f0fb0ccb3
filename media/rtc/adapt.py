"""How much video a viewer's path can take, and the resolution and frame rate that fit it.
Sans-I/O: estimates and reports go in with their times, a rung and an encoder target come
out (:mod:`media.rtc.bandwidth` feeds it from aiortc, :mod:`media.rtc.tracks` applies it).

Two estimates bound the video's bitrate, as in WebRTC's congestion control (GCC):

- the receiver's (REMB, the other side's delay-based estimate of what the path carries);
- a loss-based one from the receiver reports: over 10 % lost, cut to what was sent (or
  allowed, if less) times (1 - loss/2); under 2 %, grow by 8 % a report; in between, hold.

The lower of the two, capped by what the current rung needs, is the encoder's target. A
receiver's REMB never exceeds 1.5 times what it receives, so a low REMB may only mean a still
picture that needs few bits; the path is *congested* only when the loss is over 10 % or the
REMB has fallen under 1.2 times the rate actually sent (the receiver saw queues grow and cut
it). The rung (:data:`LADDER`, 720p30 down to paused) follows: down when congested with the
estimate under the rung's floor for :attr:`VideoAdapter.down_after_s` (at once under half of
it: a freeze costs more than a coarser picture), up one step only after the path has stayed
uncongested, with the estimate above the next rung's floor with a margin or the picture
sending less than the path takes, for a while; that while doubles each time a step up had to
be taken back soon after (the path could not carry it). Paused sends no video, so no estimate
arrives to end it: after a pause of :attr:`VideoAdapter.probe_after_s` the lowest rung is
tried again.

Waveforms, numerics and the heartbeat share the path: the target leaves them
:data:`RESERVE_BPS`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class VideoMode(enum.StrEnum):
    FULL = "full"  # the top rung the source allows
    REDUCED = "reduced"
    PAUSED = "paused"


@dataclass(frozen=True)
class Rung:
    name: str
    #: Frame height sent (the source's own when smaller; width follows its aspect); 0: none.
    height: int
    fps: float
    #: The target below which this rung is left for the next one down.
    floor_bps: int
    #: The most this rung is given: more would buy little picture and take the path's room.
    cap_bps: int


LADDER: tuple[Rung, ...] = (
    Rung("720p30", 720, 30.0, 900_000, 1_500_000),
    Rung("480p30", 480, 30.0, 350_000, 900_000),
    Rung("360p15", 360, 15.0, 160_000, 450_000),
    Rung("240p10", 240, 10.0, 64_000, 200_000),
    Rung("paused", 0, 0.0, 0, 0),
)
#: The bandwidth left to the data channels (a 500 Hz ECG and a pleth, numerics, heartbeat).
RESERVE_BPS = 48_000
#: The encoder target used before any estimate arrives (aiortc's VP8 default).
START_BPS = 500_000
#: The least the encoder is asked for while video is sent.
MIN_TARGET_BPS = 40_000
#: Changes of the target smaller than this fraction are not applied: aiortc's VP8 encoder
#: starts afresh (with a key frame, large at a low rate) at every change over 10 %.
TARGET_STEP = 0.2


@dataclass
class VideoAdapter:
    """One viewer's video adaptation. ``source_height``: the frames' height, once known
    (rungs at or above it send the source's own size)."""

    ladder: tuple[Rung, ...] = LADDER
    source_height: int | None = None
    up_margin: float = 1.25
    up_hold_s: float = 4.0
    max_up_hold_s: float = 32.0
    #: A step up taken back within this time doubles the hold before the next one.
    failed_up_within_s: float = 10.0
    probe_after_s: float = 8.0
    down_after_s: float = 1.0
    max_bps: int = 1_500_000
    #: A receiver report's loss counts as news for this long.
    loss_memory_s: float = 3.0

    def __post_init__(self) -> None:
        self._remb: int | None = None
        self._loss_cap = float(self.max_bps)
        self._index = self._top_index()
        # Start at the rung the start target affords, not at the top: a key frame at 720p
        # on a path that takes 256 kbit/s is a freeze of seconds.
        while self._index < len(self.ladder) - 2 and self._rung.floor_bps > START_BPS:
            self._index += 1
        self._hold = self.up_hold_s
        self._above_since: float | None = None
        self._last_up: float | None = None
        self._paused_at: float | None = None
        self._target = min(START_BPS, self._rung.cap_bps)
        self._below_since: float | None = None
        self._loss: tuple[float, float] | None = None  # (fraction, when)
        self._sent: tuple[int, float] | None = None  # (bytes sent in all, when)
        self._send_bps: float | None = None
        self.changes = 0

    # -- inputs ------------------------------------------------------------------------------

    def on_remb(self, bps: int, now: float) -> None:
        """The receiver's estimate of the whole path (bits per second)."""
        self._remb = max(0, bps)
        self._update(now)

    def on_loss(self, fraction: float, now: float) -> None:
        """A receiver report: the fraction (0..1) of the video's packets lost since the last."""
        self._loss = (fraction, now)
        if fraction > 0.10:
            # From what was being sent, or allowed: cuts compound while losses go on.
            base = min(self._loss_cap, self._target, self._send_bps or self._target)
            self._loss_cap = max(MIN_TARGET_BPS, base * (1.0 - fraction / 2.0))
        elif fraction < 0.02:
            self._loss_cap = min(float(self.max_bps), self._loss_cap * 1.08)
        self._update(now)

    def on_sent(self, total_bytes: int, now: float) -> None:
        """The sender's count of bytes sent so far (its outbound RTP statistics)."""
        if self._sent is not None:
            before, then = self._sent
            if now - then < 0.5:
                return
            rate = max(0.0, (total_bytes - before) * 8 / (now - then))
            self._send_bps = rate if self._send_bps is None else 0.5 * self._send_bps + 0.5 * rate
        self._sent = (total_bytes, now)
        self._update(now)

    def congested(self, now: float) -> bool:
        """Whether the path shows it carries less than is sent (see the module's text)."""
        loss = self._loss
        if loss is not None and now - loss[1] <= self.loss_memory_s and loss[0] > 0.10:
            return True
        if self._remb is None or self._send_bps is None:
            return False
        return self._remb < 1.2 * self._send_bps

    def _content_limited(self) -> bool:
        """The picture sends well under what the receiver says the path takes."""
        if self._remb is None or self._send_bps is None:
            return self._remb is None  # no word from the receiver: nothing says stop
        return self._remb >= 1.3 * self._send_bps

    def set_source_height(self, height: int) -> None:
        if height != self.source_height:
            self.source_height = height
            top = self._top_index()
            if self._index < top:
                self._index = top

    def tick(self, now: float) -> None:
        """Time passing without reports: the probe out of a pause, a due step up."""
        self._update(now)

    # -- outputs -----------------------------------------------------------------------------

    @property
    def rung(self) -> Rung:
        return self._rung

    @property
    def mode(self) -> VideoMode:
        if self._rung.height == 0:
            return VideoMode.PAUSED
        return VideoMode.FULL if self._index == self._top_index() else VideoMode.REDUCED

    @property
    def target_bps(self) -> int:
        """What the encoder should be set to (0 while paused)."""
        return 0 if self._rung.height == 0 else int(self._target)

    @property
    def remb_bps(self) -> int | None:
        """The receiver's last estimate (None before one, and after a pause's probe)."""
        return self._remb

    @property
    def send_bps(self) -> int | None:
        """The rate the video is sent at, as last measured."""
        return None if self._send_bps is None else int(self._send_bps)

    @property
    def estimate_bps(self) -> int:
        """The path's estimate for video: the lower of the receiver's and the loss-based."""
        remb = self._remb if self._remb is not None else self.max_bps
        return int(max(0.0, min(remb - RESERVE_BPS, self._loss_cap)))

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to send a ``width`` x ``height`` frame at on the current rung (even
        numbers, the aspect kept; never larger than the source)."""
        self.set_source_height(height)
        wanted = self._rung.height
        if wanted == 0 or wanted >= height:
            return width, height
        scaled_w = max(2, round(width * wanted / height / 2) * 2)
        return scaled_w, max(2, wanted - wanted % 2)

    # -- the rule ----------------------------------------------------------------------------

    @property
    def _rung(self) -> Rung:
        return self.ladder[self._index]

    def _top_index(self) -> int:
        """The highest rung worth sending: the first whose height the source reaches (a
        larger rung would only scale up)."""
        if self.source_height is None:
            return 0
        for i, rung in enumerate(self.ladder):
            if rung.height <= self.source_height:
                return i
        return len(self.ladder) - 1

    def _update(self, now: float) -> None:
        estimate = self.estimate_bps
        if self._last_up is not None and now - self._last_up > self.failed_up_within_s:
            self._last_up = None  # the step up held: the next may come as soon
            self._hold = self.up_hold_s
        paused = len(self.ladder) - 1
        if self._index == paused:
            self._paused_at = self._paused_at if self._paused_at is not None else now
            if now - self._paused_at >= self.probe_after_s:
                # Nothing is sent, so nothing is learnt: try the lowest rung again, from a
                # fresh estimate (the old one is what paused it).
                self._move(paused - 1, now)
                self._remb = None
                self._loss_cap = float(self._rung.floor_bps) * 1.25
            return
        congested = self.congested(now)
        if congested and estimate < self._rung.floor_bps:
            if self._below_since is None:
                self._below_since = now
            severe = estimate < self._rung.floor_bps / 2
            if severe or now - self._below_since >= self.down_after_s:
                while self._index < paused and estimate < self._rung.floor_bps:
                    self._move(self._index + 1, now)
        else:
            self._below_since = None
        if self._index == paused:
            self._paused_at = now
            return
        up = self._index - 1
        roomy = estimate >= self.ladder[up].floor_bps * self.up_margin or self._content_limited()
        if up >= self._top_index() and not congested and roomy:
            if self._above_since is None:
                self._above_since = now
            elif now - self._above_since >= self._hold:
                self._move(up, now)
        else:
            self._above_since = None
        wanted = max(MIN_TARGET_BPS, min(estimate, self._rung.cap_bps))
        if abs(wanted - self._target) > TARGET_STEP * self._target:
            self._target = wanted

    def _move(self, index: int, now: float) -> None:
        going_up = index < self._index
        if not going_up and self._last_up is not None:
            if now - self._last_up <= self.failed_up_within_s:
                self._hold = min(self.max_up_hold_s, self._hold * 2)
            self._last_up = None
        if going_up:
            self._last_up = now
        self._index = index
        self._above_since = None
        self._below_since = None
        self._paused_at = None
        self.changes += 1
        if self._rung.height:
            self._target = max(MIN_TARGET_BPS, min(self.estimate_bps, self._rung.cap_bps))
