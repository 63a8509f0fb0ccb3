"""Talk-back: the remote doctors' sound, played at the bedside one speaker at a time.

Push-to-talk in the browser disables the microphone track, which then goes on sending
silence: what counts as talking is the level (:class:`SpurtDetector`), not the presence of
packets. The first viewer to talk holds the floor until their spurt ends; what another says
meanwhile is not played (logged once per spurt), because two voices summed on one bedside
speaker are understood by nobody. Each spurt is logged once when it starts and once when it
ends; only spurts reach the sink.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

import av
import numpy as np
from numpy.typing import NDArray

from media.audio.sinks import SinkThread
from runtime.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

#: A frame louder than this (RMS, dB full scale) is speech; a disabled browser microphone
#: sends digital silence, an open one in a quiet room about -60 dBFS.
TALK_THRESHOLD_DBFS = -45.0
#: A spurt ends after this long without a loud frame (pauses between words stay inside).
HANGOVER_S = 0.6


class Spurt(enum.Enum):
    STARTED = "started"
    ENDED = "ended"


def level_dbfs(samples: NDArray[np.float32]) -> float:
    """RMS level in dB full scale (-inf for digital silence)."""
    if not len(samples):
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


@dataclass
class SpurtDetector:
    """Sans-I/O: levels and arrival times in, the start and end of each spurt out."""

    threshold_dbfs: float = TALK_THRESHOLD_DBFS
    hangover_s: float = HANGOVER_S
    talking: bool = False
    last_loud: float = -math.inf
    started: float = 0.0

    def feed(self, level: float, now: float) -> Spurt | None:
        """One frame's level at ``now`` (monotonic s): a transition, or None."""
        if level >= self.threshold_dbfs:
            self.last_loud = now
            if not self.talking:
                self.talking, self.started = True, now
                return Spurt.STARTED
            return None
        return self.expire(now)

    def expire(self, now: float) -> Spurt | None:
        """End the spurt if it has been quiet for the hangover (also without frames)."""
        if self.talking and now - self.last_loud > self.hangover_s:
            self.talking = False
            return Spurt.ENDED
        return None


def decoded_mono(frame: av.AudioFrame) -> NDArray[np.float32]:
    """A decoded frame (aiortc gives s16 stereo, interleaved) as mono float32 in [-1, 1]."""
    data = np.asarray(frame.to_ndarray(), dtype=np.float64)
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data.reshape(channels, -1).mean(axis=0)
    else:
        mono = data.reshape(-1, channels).mean(axis=1)
    if frame.format.name.startswith("s16"):
        mono = mono / 32768.0
    elif frame.format.name.startswith("s32"):
        mono = mono / 2147483648.0
    return np.asarray(mono, dtype=np.float32)


class TalkBack:
    """Frames from every viewer's connection (:meth:`feed`, on the event loop) to one sink,
    written from the sink's thread. Start the sink thread before feeding; :meth:`close`
    stops it."""

    def __init__(self, sink: SinkThread, clock: Clock = SYSTEM_CLOCK) -> None:
        self.sink = sink
        self._clock = clock
        self._detectors: dict[str, SpurtDetector] = {}
        self.floor: str | None = None
        self.spurts = 0
        self.frames_played = 0

    def feed(self, who: str, frame: av.AudioFrame) -> None:
        """One decoded frame from ``who`` (a name for the logs)."""
        samples = decoded_mono(frame)
        now = self._clock.monotonic()
        detector = self._detectors.setdefault(who, SpurtDetector())
        transition = detector.feed(level_dbfs(samples), now)
        self._release_stale_floor(now)
        if transition is Spurt.ENDED:
            self._ended(who, detector)
        if detector.talking and self.floor is None:
            # A new spurt, or one that was held back while someone else had the floor.
            self.floor = who
            self.spurts += 1
            log.info("talk-back from %s", who)
        elif transition is Spurt.STARTED and self.floor != who:
            log.info("talk-back from %s not played: %s is talking", who, self.floor)
        if self.floor == who:
            self.sink.put(samples)
            self.frames_played += 1

    def forget(self, who: str) -> None:
        """``who``'s connection has gone: end their spurt (and free the floor)."""
        detector = self._detectors.pop(who, None)
        if detector is not None and detector.talking:
            self._ended(who, detector)

    def _release_stale_floor(self, now: float) -> None:
        # The speaker's frames may stop altogether (a closed tab, DTX): their spurt ends
        # by time, or the floor would stay theirs.
        if self.floor is not None:
            holder = self._detectors.get(self.floor)
            if holder is not None and holder.expire(now) is Spurt.ENDED:
                self._ended(self.floor, holder)

    def _ended(self, who: str, detector: SpurtDetector) -> None:
        if who == self.floor:
            self.floor = None
            talked = detector.last_loud - detector.started
            log.info("talk-back from %s ended (%.1f s)", who, talked)

    def close(self) -> None:
        """Stop the sink thread once what is queued is written (blocking: call it off the
        event loop)."""
        self.sink.put(None)
        self.sink.join()
