"""The last seconds of a camera's captured frames, as copies: what a doctor froze on a
diagnostic camera can then be found by its frame id (the latency stamp carries it) and
kept as captured, not as processed and encoded for the link.

Bounded three ways (seconds, frames, bytes), the oldest dropped first: a 1080p source at
60 fps must not hold gigabytes. :meth:`RecentFrames.add` runs in the capture thread;
:meth:`RecentFrames.find` on the event loop (a scan of at most :data:`MAX_FRAMES` ids under
a lock, no pixel work).
"""

from __future__ import annotations

import collections
import threading

from media.video.capture import CapturedFrame

#: How much of a source is held.
KEEP_S = 2.0
MAX_FRAMES = 120
MAX_BYTES = 256 * 1024 * 1024
#: Frames held for viewers that froze them (the oldest hold is dropped first).
MAX_HELD = 8


class RecentFrames:
    def __init__(
        self, seconds: float = KEEP_S, max_frames: int = MAX_FRAMES, max_bytes: int = MAX_BYTES
    ) -> None:
        if seconds <= 0 or max_frames < 1 or max_bytes < 1:
            raise ValueError("RecentFrames holds a positive time, count and size")
        self.seconds = seconds
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._frames: collections.deque[CapturedFrame] = collections.deque()
        self._bytes = 0
        #: Frames a viewer froze, by id modulo 2^32, oldest hold first.
        self._held: collections.OrderedDict[int, CapturedFrame] = collections.OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def held_ids(self) -> list[int]:
        """The ids (modulo 2^32) of the frames held for viewers, oldest hold first."""
        with self._lock:
            return list(self._held)

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def add(self, frame: CapturedFrame) -> None:
        """Keep a copy of ``frame`` (from the capture thread): the source may reuse its
        buffer, and whoever processes the frame must not change what is kept."""
        kept = CapturedFrame(frame.frame_id, frame.capture_time, frame.image.copy())
        with self._lock:
            self._frames.append(kept)
            self._bytes += kept.image.nbytes
            oldest_wanted = frame.capture_time - self.seconds
            while len(self._frames) > 1 and (
                len(self._frames) > self.max_frames
                or self._bytes > self.max_bytes
                or self._frames[0].capture_time < oldest_wanted
            ):
                self._bytes -= self._frames.popleft().image.nbytes

    def hold(self, frame_id: int) -> bool:
        """Hold frame ``frame_id`` beyond the recent seconds (a viewer froze it), among the
        last :data:`MAX_HELD` holds; False when it is no longer among the recent frames."""
        wanted = frame_id & 0xFFFFFFFF
        with self._lock:
            if wanted in self._held:
                self._held.move_to_end(wanted)
                return True
            for frame in reversed(self._frames):
                if frame.frame_id & 0xFFFFFFFF == wanted:
                    self._held[wanted] = frame  # shared with the ring: never changed
                    while len(self._held) > MAX_HELD:
                        self._held.popitem(last=False)
                    return True
            return False

    def find(self, frame_id: int | None) -> tuple[CapturedFrame | None, bool]:
        """The frame ``frame_id`` names (the stamp's 32 bits: compared modulo 2^32), held
        or recent, and True; or the newest and False when it is neither (or None was
        asked); (None, False) when nothing is held yet. The frame is shared: do not change
        it."""
        with self._lock:
            if frame_id is not None:
                wanted = frame_id & 0xFFFFFFFF
                if wanted in self._held:
                    return self._held[wanted], True
                for frame in reversed(self._frames):
                    if frame.frame_id & 0xFFFFFFFF == wanted:
                        return frame, True
            return (self._frames[-1] if self._frames else None), False
