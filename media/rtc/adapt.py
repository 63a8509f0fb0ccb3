"""How much video a viewer's path can take, and the resolution and frame rate that fit it.
Sans-I/O: estimates and reports go in with their times, a rung and an encoder target come
out (:mod:`media.rtc.bandwidth` feeds it from aiortc, :mod:`media.rtc.tracks` applies it).

The path's estimate for video follows WebRTC's loss-based controller (GCC), with the
receiver reports' round-trip time as its delay signal:

- over 10 % of the video's packets lost in a report, or the round-trip time more than
  :attr:`VideoAdapter.queue_s` above the least seen (a queue building at the bottleneck),
  the path is *congested*: the estimate is cut to what was sent (or the estimate, if less) times
  (1 - loss/2), or 0.85 for a queue, at most once a second;
- under 2 % lost and no queue, it grows 8 % a report (2 % within a quarter of the rate at
  which the path last filled up), to at most 1.5 times what is sent; in between, it holds.

It starts at :data:`START_BPS`. The receiver's REMB is recorded but, by default, not followed
(``use_remb``): aiortc's delay-based estimator, through a TURN relay on a path with 5 ms of
jitter, signalled overuse with no queue at all (REMB 40 kbit/s on an idle 256 kbit/s uplink,
no packet dropped), and as REMB is 0.85 times what arrived after each overuse, following it
spirals down. With ``use_remb``, the estimate is the lower of the two, and a REMB under 1.2
times the rate sent is congestion too.

The encoder's target is :data:`HEADROOM` of the estimate, capped by what the current rung
needs. The rung
(:data:`LADDER`, 720p30 down to 120p5, then paused) follows:

- down when congested with the estimate under the rung's floor for
  :attr:`VideoAdapter.down_after_s` (at once under half of it: a freeze costs more than a
  coarser picture); to paused only after :attr:`VideoAdapter.pause_after_s` on the lowest;
- up one step after the path has stayed uncongested with the estimate above the next rung's
  floor (with a margin) for a hold, or uncongested for :attr:`VideoAdapter.probe_up_after_s`
  with the estimate at least that floor (a calm path's estimate may always grow to it, even
  for a still picture that sends little); both waits double each time a step up had to be
  taken back soon after;
- out of a pause: no video is sent, so nothing is learnt; after
  :attr:`VideoAdapter.probe_after_s` the lowest rung is tried again.

The top rung is the source's own size: a camera between two of the ladder's heights (320x240)
is sent as it is, at the ladder's full frame rate and the cap of the rung above.

Waveforms, numerics and the heartbeat share the path and are not in the REMB's count of what
arrives; their queueing is (the REMB is delay-based), so when they and the video together
fill the path the REMB falls and the video yields. Nothing is subtracted for them up front:
on a 256 kbit/s path that would leave the lowest rungs nothing.
"""

from __future__ import annotations

import collections
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
    Rung("120p5", 120, 5.0, 24_000, 64_000),
    Rung("paused", 0, 0.0, 0, 0),
)
#: A diagnostic camera's ladder (an ultrasound's or endoscope's video output): a higher
#: ceiling on every rung, since speckle, fine edges and motion are what the doctor reads and
#: cost bits to keep, and the frame rate kept longer (30 fps down to 360p): a cine loses
#: more with half its frames than with a smaller picture. It adapts to the path like the room
#: camera's, from its own reports (both tracks see the same losses and cut together).
DIAGNOSTIC_LADDER: tuple[Rung, ...] = (
    Rung("720p30", 720, 30.0, 1_200_000, 3_000_000),
    Rung("480p30", 480, 30.0, 500_000, 2_000_000),
    Rung("360p30", 360, 30.0, 250_000, 1_000_000),
    Rung("240p15", 240, 15.0, 80_000, 300_000),
    Rung("120p5", 120, 5.0, 24_000, 64_000),
    Rung("paused", 0, 0.0, 0, 0),
)
DIAGNOSTIC_MAX_BPS = 3_000_000
#: Where the loss-based estimate starts (as WebRTC's does): a path is not assumed to take
#: more before reports say so (aiortc's encoders start at 500k, over a 256k uplink).
START_BPS = 300_000
#: The least the encoder is asked for while video is sent.
MIN_TARGET_BPS = 40_000
#: The share of the estimate the encoder is given: the rest keeps the bottleneck's queue
#: short for the waveforms, numerics and heartbeat behind the video (a target at the estimate
#: ran the 256 kbit/s uplink full: waveforms 540 ms late at p95, 7 % lost; at 0.8, 337 ms; at
#: 0.7, 184 ms).
HEADROOM = 0.7
#: The least the estimate falls to (under 120p5's floor: paused).
MIN_ESTIMATE_BPS = 8_000
#: Changes of the target smaller than these fractions are not applied: aiortc's VP8 encoder
#: starts afresh at every change over 10 %, with a key frame, which on a 256 kbit/s path is
#: a burst of a third of a second that every waveform packet queues behind. A cut goes in
#: at once; a rise waits until it is worth a key frame.
TARGET_STEP_DOWN = 0.15
TARGET_STEP_UP = 0.4


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
    #: On a reduced rung with the path uncongested this long (times the hold's doubling),
    #: one step up is tried even without an estimate above the next floor: a receiver's
    #: REMB is at most 1.5x what arrives, so a picture that needs few bits never earns one.
    probe_up_after_s: float = 8.0
    down_after_s: float = 1.0
    #: How long the lowest rung must stay congested under its floor before video pauses.
    pause_after_s: float = 4.0
    max_bps: int = 1_500_000
    #: A receiver report's loss, or a queue, counts as news for this long.
    loss_memory_s: float = 3.0
    #: A round-trip time this much above the least seen is a queue at the bottleneck.
    queue_s: float = 0.1
    rtt_window_s: float = 10.0
    use_remb: bool = False

    def __post_init__(self) -> None:
        self._remb: int | None = None
        self._loss_cap = float(START_BPS)
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
        self._lossy_at: float | None = None  # the last report with over 10 % lost
        self._sent: tuple[int, float] | None = None  # (bytes sent in all, when)
        self._send_bps: float | None = None
        self._calm_since: float | None = None
        self._min_rtt: float | None = None
        self._rtts: collections.deque[tuple[float, float]] = collections.deque()
        self._queue_at: float | None = None
        self._cut_at: float | None = None
        #: The rate sent when the path last filled up (a loss or a queue).
        self._congested_at: float | None = None
        self._moved_at: float | None = None
        self.changes = 0

    @classmethod
    def diagnostic(cls) -> VideoAdapter:
        """The adaptation of a diagnostic camera (:data:`DIAGNOSTIC_LADDER`)."""
        return cls(ladder=DIAGNOSTIC_LADDER, max_bps=DIAGNOSTIC_MAX_BPS)

    # -- inputs ------------------------------------------------------------------------------

    def on_remb(self, bps: int, now: float) -> None:
        """The receiver's estimate of the whole path (bits per second)."""
        self._remb = max(0, bps)
        self._update(now)

    def on_loss(self, fraction: float, now: float) -> None:
        """A receiver report: the fraction (0..1) of the video's packets lost since the last."""
        if fraction > 0.10:
            self._lossy_at = now
            self._cut(1.0 - fraction / 2.0, now)
        elif fraction < 0.02 and not self.congested(now):
            # Near where the path last filled up, gently (2 %); elsewhere 8 % a report.
            at = self._congested_at
            near = at is not None and 0.8 * at < self._loss_cap < 1.25 * at
            grown = self._loss_cap * (1.02 if near else 1.08)
            if self._send_bps is not None:
                # Never far above what is sent (as a REMB is not): a path proven at 80k is
                # not known to take 300k, and stepping up on that guess overflows it. But a
                # calm path may always reach the next rung's floor, so a still picture (that
                # sends little) can be tried a step up.
                up = self.ladder[max(0, self._index - 1)].floor_bps
                grown = min(grown, max(1.5 * self._send_bps + 10_000, self._loss_cap, up))
            self._loss_cap = min(float(self.max_bps), grown)
        self._update(now)

    def on_rtt(self, seconds: float, now: float) -> None:
        """The round-trip time the last receiver report gave."""
        if seconds <= 0:
            return
        # The least over a window, not ever: the path itself changes (Wi-Fi to a mobile
        # network), and its new round trip is not a queue. A queue that stands longer than
        # the window fills the bottleneck's buffer, and its losses say so.
        self._rtts.append((now, seconds))
        while self._rtts and now - self._rtts[0][0] > self.rtt_window_s:
            self._rtts.popleft()
        self._min_rtt = min(rtt for _, rtt in self._rtts)
        if seconds > self._min_rtt + self.queue_s:
            self._queue_at = now
            # A report's round trip still shows the queue the last cut is draining: a queue
            # cuts at most every 1.5 s (about a round trip and a report interval).
            self._cut(0.85, now, every_s=1.5)
        self._update(now)

    def _queued(self, now: float) -> bool:
        return self._queue_at is not None and now - self._queue_at <= self.loss_memory_s

    def _cut(self, factor: float, now: float, every_s: float = 1.0) -> None:
        if self._cut_at is not None and now - self._cut_at < every_s:
            return  # one cut a second: the reports after a cut still show the old queue
        self._cut_at = now
        self._congested_at = self._send_bps or self._loss_cap
        # From what was being sent (the path did not carry it), or the estimate if less:
        # cuts compound while losses go on.
        base = min(self._loss_cap, self._send_bps or self._loss_cap)
        # Below the encoder's least target too: a path that cannot carry even that pauses.
        self._loss_cap = max(MIN_ESTIMATE_BPS, base * factor)

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
        # Any heavy loss lately, not just the last report's: one clean report between lossy
        # ones does not make a path sound.
        if self._lossy_at is not None and now - self._lossy_at <= self.loss_memory_s:
            return True
        if self._queued(now):
            return True
        if not self.use_remb or self._remb is None or self._send_bps is None:
            return False
        return self._remb < 1.2 * self._send_bps

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
        remb = self._remb if self.use_remb and self._remb is not None else self.max_bps
        return int(max(0.0, min(remb, self._loss_cap)))

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
        rung = self.ladder[self._index]
        top = self._top_index()
        if self._index != top or top == 0 or self.source_height is None:
            return rung
        # The top rung for a source under the one above it (a 320x240 camera on 240p10)
        # sends the source at the ladder's full frame rate and the cap of the rung above it.
        above = self.ladder[top - 1]
        if rung.fps >= above.fps and rung.height == self.source_height:
            return rung
        fps = max(r.fps for r in self.ladder[:top])
        return Rung(
            f"{min(rung.height, self.source_height)}p{fps:g}",
            rung.height,
            fps,
            rung.floor_bps,
            above.cap_bps,
        )

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
                while self._index < paused - 1 and estimate < self._rung.floor_bps:
                    self._move(self._index + 1, now)
            # The last step, to no video at all, only when the lowest rung has stayed
            # congested a while: after a collapse (the path fell from megabits to 256k) the
            # reports go on telling of the old queue for seconds after the cuts that fixed it.
            if self._below_since is None:  # a step was just taken: the lowest's clock starts
                self._below_since = now
            lowest = self._index == paused - 1 and estimate < self._rung.floor_bps
            if lowest and now - self._below_since >= self.pause_after_s:
                self._move(paused, now)
        else:
            self._below_since = None
        if self._index == paused:
            self._paused_at = now
            return
        if congested:
            self._calm_since = None
        elif self._calm_since is None:
            self._calm_since = now
        up = self._index - 1
        roomy = up >= 0 and estimate >= self.ladder[up].floor_bps * self.up_margin
        if up >= self._top_index() and not congested and roomy:
            if self._above_since is None:
                self._above_since = now
            elif now - self._above_since >= self._hold:
                self._move(up, now)
        else:
            self._above_since = None
        probe_after = self.probe_up_after_s * self._hold / self.up_hold_s
        calm_for = 0.0 if self._calm_since is None else now - self._calm_since
        since_move = now - self._moved_at if self._moved_at is not None else calm_for
        # Tried only where it may fit: the estimate reaches the next floor.
        fits = up >= 0 and estimate >= self.ladder[up].floor_bps
        if up >= self._top_index() and fits and min(calm_for, since_move) >= probe_after:
            self._move(up, now)
        wanted = int(max(MIN_TARGET_BPS, min(HEADROOM * estimate, self._rung.cap_bps)))
        step = TARGET_STEP_DOWN if wanted < self._target else TARGET_STEP_UP
        if abs(wanted - self._target) > step * self._target:
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
        self._moved_at = now
        self._above_since = None
        self._below_since = None
        self._paused_at = None
        self.changes += 1
        if self._rung.height:
            wanted = min(HEADROOM * self.estimate_bps, self._rung.cap_bps)
            if going_up and self._send_bps is not None:
                # A step up changes the size, not (yet) the rate: a little over what was
                # sent, and the reports raise it from there. Jumping to the estimate made
                # each step up a burst the slow uplink could not carry.
                wanted = min(wanted, 1.15 * self._send_bps)
            self._target = int(max(MIN_TARGET_BPS, wanted))
