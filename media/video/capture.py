"""Capturing frames in a thread of their own, handing the newest to the event loop.

A USB camera or video grabber (OpenCV ``VideoCapture``: device index, path or URL), a file,
or a synthetic source. The capture thread never waits for the consumer: the hand-over is a
mailbox of one frame, so a slow consumer always gets the newest frame and the frames it
missed are dropped and counted (a live view must not fall behind).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from media.errors import VideoSourceError

if TYPE_CHECKING:
    from media.video.recent import RecentFrames

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CapturedFrame:
    frame_id: int
    #: Wall-clock capture time (s since the epoch): what the latency stamp carries.
    capture_time: float
    image: NDArray[np.uint8]  # H x W x 3, BGR


class FrameSource(Protocol):
    def read(self) -> NDArray[np.uint8] | None:
        """The next frame (BGR), blocking until it is there; None at the end or on failure."""

    def close(self) -> None: ...


class SyntheticSource:
    """A moving test pattern at ``fps``: no camera needed."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._n = 0
        self._next = time.monotonic()
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = np.stack(
            [
                (xx * 255 // max(1, width - 1)),
                (yy * 255 // max(1, height - 1)),
                np.full_like(xx, 96),
            ],
            axis=2,
        ).astype(np.uint8)

    def read(self) -> NDArray[np.uint8] | None:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic())
        frame = self._base.copy()
        x = (self._n * 8) % max(1, self.width - 60)
        frame[self.height // 2 - 30 : self.height // 2 + 30, x : x + 60] = (255, 255, 255)
        self._n += 1
        return frame

    def close(self) -> None:
        pass


class UltrasoundSource:
    """A synthetic diagnostic source at ``fps``: an ultrasound-like sector (speckle, a
    moving bright wall, depth attenuation) on black, so a screen showing it beside the room
    camera's pattern tells the two tracks apart at a glance. Grey, as a B-mode picture.
    What does not move is computed once, by the first read (in the capture thread, not where
    the source is made): a frame then costs a few milliseconds at 640x480."""

    _LUT_STEPS = 1024

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._n = 0
        self._next = time.monotonic()
        self._prepared = False

    def _prepare(self) -> None:
        width, height = self.width, self.height
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        dx, dy = xx - width / 2.0, yy - height * 0.04  # the probe at the top middle
        r = np.hypot(dx, dy) / max(1.0, height * 0.92)  # 0 at the probe, 1 at full depth
        angle = np.arctan2(dx, np.maximum(dy, 1e-3))
        sector = (np.abs(angle) < 0.62) & (r > 0.06) & (r < 1.0)
        self._inside = np.flatnonzero(sector)
        # The wall is bowed across the sector; its depth moves with a 1 Hz "heartbeat".
        bowed = (r - 0.05 * np.cos(3.0 * angle)).ravel()[self._inside]
        self._bowed = np.clip(bowed * self._LUT_STEPS, 0, 2 * self._LUT_STEPS - 1).astype(np.int32)
        self._gain = (np.clip(1.15 - 0.75 * r, 0.0, 1.0) * 190.0).ravel()[self._inside]
        rng = np.random.default_rng(7)
        # Speckle: a fixed grain that drifts a little each frame (tissue moving under it).
        grain = rng.rayleigh(0.5, (height + 16, width + 16)).astype(np.float32) * 0.35
        self._grains = [
            grain[k : k + height, k // 2 : k // 2 + width].ravel()[self._inside] for k in range(16)
        ]
        self._scale = np.zeros((height, width), np.uint8)
        for k in range(1, 10):  # a depth scale on the right edge, a tick every tenth
            y = int(height * (0.04 + 0.092 * k))
            self._scale[y : y + 2, max(0, width - 18) : max(0, width - 8)] = 200
        self._depths = np.arange(2 * self._LUT_STEPS, dtype=np.float32) / self._LUT_STEPS
        self._prepared = True

    def read(self) -> NDArray[np.uint8] | None:
        if not self._prepared:
            self._prepare()
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic())
        depth = 0.5 + 0.08 * np.sin(2 * np.pi * self._n / self.fps)
        wall = 0.9 * np.exp(-(((self._depths - depth) / 0.025) ** 2))
        level = (self._grains[self._n % 16] + wall[self._bowed]) * self._gain
        grey = self._scale.copy()
        grey.ravel()[self._inside] = np.clip(level, 0, 255).astype(np.uint8)
        self._n += 1
        return np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), dtype=np.uint8)

    def close(self) -> None:
        pass


#: Capture formats (FOURCC) that are lossy, by the DICOM name of their compression.
LOSSY_FOURCC = {
    "MJPG": "ISO_10918_1",
    "JPEG": "ISO_10918_1",
    "H264": "ISO_14496_10",
    "AVC1": "ISO_14496_10",
    "X264": "ISO_14496_10",
    "HEVC": "ISO_23008_2",
    "H265": "ISO_23008_2",
    # MPEG-4 Part 2 has no DICOM defined term; named by its standard as the others are.
    "XVID": "ISO_14496_2",
    "MP4V": "ISO_14496_2",
    "DIVX": "ISO_14496_2",
    "FMP4": "ISO_14496_2",  # FFmpeg's tag for the same
}


class OpenCvSource:
    """A camera (device index), a video file or a stream URL through OpenCV. Raises
    :class:`~media.errors.VideoSourceError` when it cannot be opened."""

    def __init__(self, target: int | str, width: int | None = None, height: int | None = None):
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise VideoSourceError(f"cannot open video source {target!r}")
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> NDArray[np.uint8] | None:
        ok, frame = self._cap.read()
        return np.asarray(frame, dtype=np.uint8) if ok else None

    @property
    def lossy_method(self) -> str | None:
        """How the device (or file) delivers its frames when that is lossy, as DICOM's
        Lossy Image Compression Method names it (``ISO_10918_1``: JPEG, an MJPEG capture
        card's usual format; ``ISO_14496_10``: H.264); None for raw formats (YUYV, NV12...)
        and codecs not known to be lossy. A frame kept from it must say it was."""
        code = int(self._cap.get(cv2.CAP_PROP_FOURCC))
        fourcc = bytes((code >> shift) & 0xFF for shift in (0, 8, 16, 24)).decode("latin-1")
        return LOSSY_FOURCC.get(fourcc.upper())

    def close(self) -> None:
        self._cap.release()


class LatestFrame:
    """A one-frame mailbox from a thread to the event loop. ``put`` never blocks; ``get``
    waits for a frame newer than the last one taken."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._frame: CapturedFrame | None = None
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False
        #: Why the source ended, when it failed (None: it ended, or has not).
        self.failure: BaseException | None = None

    def put(self, frame: CapturedFrame | None) -> None:
        """From the capture thread. None means the source ended: the last frame, if not yet
        taken, is still delivered before ``get`` returns None."""
        with self._lock:
            if frame is None:
                # The end must not replace the source's last frame: a short file (or a
                # camera unplugged just after a frame) would otherwise lose it unseen.
                self.closed = True
            else:
                if self._frame is not None:
                    self.dropped += 1  # never taken: the newer frame replaces it
                self._frame = frame
        self._loop.call_soon_threadsafe(self._ready.set)

    def fail(self, error: BaseException) -> None:
        """From the capture thread: the source failed with ``error`` (and so has ended)."""
        with self._lock:
            self.failure = error
        self.put(None)

    def ended_because(self) -> str:
        """Why no frame will come again, in words for a log or a viewer's error."""
        failure = self.failure
        return (
            "the video source ended" if failure is None else f"the video source failed: {failure!r}"
        )

    async def get(self) -> CapturedFrame | None:
        """The newest frame; None once the source has ended."""
        while True:
            with self._lock:
                frame, self._frame = self._frame, None
                if frame is not None or self.closed:
                    self._ready.clear()
                    return frame
                self._ready.clear()
            await self._ready.wait()


class CaptureThread:
    """Reads ``source`` in a daemon thread into a :class:`LatestFrame` until :meth:`stop`.

    When the source raises, the failure is logged with its traceback, the source closed, and
    the mailbox ended with the failure (:attr:`LatestFrame.failure`), which the pipeline
    passes on to every viewer."""

    def __init__(
        self,
        source: FrameSource,
        mailbox: LatestFrame,
        *,
        name: str = "capture",
        recent: RecentFrames | None = None,
    ) -> None:
        """``name``: the thread's (one per camera); ``recent``: also keep a copy of each
        frame there (a diagnostic camera's last seconds, for a doctor's freeze and keep)."""
        self.source = source
        self.mailbox = mailbox
        self.recent = recent
        self.frames = 0
        #: The last frame's (width, height) as captured (None before the first).
        self.size: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def failure(self) -> BaseException | None:
        """What the source raised, when a failure ended the capture."""
        return self.mailbox.failure

    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            while not self._stop.is_set():
                image = self.source.read()
                if image is None:
                    break
                self.frames += 1
                self.size = (image.shape[1], image.shape[0])
                frame = CapturedFrame(self.frames, time.time(), image)
                if self.recent is not None:
                    self.recent.add(frame)
                self.mailbox.put(frame)
        except Exception as exc:  # a driver failure ends the capture, logged and reported
            log.exception("capture failed after %d frames", self.frames)
            failure = exc
        finally:
            self.source.close()
            if failure is not None:
                self.mailbox.fail(failure)
            else:
                self.mailbox.put(None)

    async def stop(self) -> None:
        """Stop and wait for the thread (without blocking the event loop)."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5.0)
