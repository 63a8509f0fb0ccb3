"""Frame processing, run off the event loop: scaling to the negotiated size, optional
enhancement for medical video, an overlay (site, time) and the latency stamp.

A *diagnostic* source (an ultrasound's or endoscope's video output through a capture device)
is sent as the modality drew it: scaled only, never denoised, equalised or written on, since
a doctor reads its pixels (speckle is signal, a contrast change can hide or fake a finding,
and text drawn over it would cover the image and be burned into a kept frame)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from numpy.typing import NDArray

from media.video.capture import CapturedFrame
from media.video.stamp import draw_stamp


@dataclass(frozen=True)
class ProcessingSettings:
    width: int = 640
    height: int = 480
    #: Contrast-limited adaptive histogram equalisation: helps ultrasound and endoscopy.
    clahe: bool = False
    #: Edge-preserving smoothing for noisy grabber input.
    denoise: bool = False
    overlay: str = ""
    timezone: str = "UTC"
    stamp: bool = True
    #: An imaging modality's video: no denoise, CLAHE or overlay, whatever the above say.
    diagnostic: bool = False

    def for_diagnostic(self) -> ProcessingSettings:
        """These settings for a diagnostic source (the same size and stamp)."""
        return replace(self, clahe=False, denoise=False, overlay="", diagnostic=True)


def _u8(array: object) -> NDArray[np.uint8]:
    return np.asarray(array, dtype=np.uint8)


def process_frame(frame: CapturedFrame, settings: ProcessingSettings) -> NDArray[np.uint8]:
    """The frame as it is sent (BGR, ``width`` x ``height``). Pure function; CPU-heavy."""
    image = frame.image
    if image.shape[1] != settings.width or image.shape[0] != settings.height:
        shrinking = image.shape[1] > settings.width
        image = _u8(
            cv2.resize(
                image,
                (settings.width, settings.height),
                interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
            )
        )
    else:
        image = image.copy()
    enhance = not settings.diagnostic
    if enhance and settings.denoise:
        image = _u8(cv2.bilateralFilter(image, 5, 30, 5))
    if enhance and settings.clahe:
        lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        lab[:, :, 0] = clahe.apply(lab[:, :, 0])
        image = _u8(cv2.cvtColor(lab, cv2.COLOR_LAB2BGR))
    if enhance and settings.overlay:
        when = datetime.fromtimestamp(frame.capture_time, UTC).astimezone(
            ZoneInfo(settings.timezone)
        )
        # The zone is named: the other site reads this clock and must not guess whose it is.
        text = f"{settings.overlay}  {when:%Y-%m-%d %H:%M:%S %Z}"
        y = settings.height - 12
        cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
    # The stamp stays on a diagnostic source too: it covers 76 x 68 px of the top-left corner
    # (where a modality's screen has its header, not the image), it is what glass-to-glass
    # latency is measured by, and what a viewer can name a frozen frame by (keep-frame's
    # frame_id); a kept frame is built from the captured image, never from this one, so the
    # stamp is not in the record.
    if settings.stamp:
        draw_stamp(image, frame.frame_id, round(frame.capture_time * 1000))
    return image


class FrameProcessor:
    """Runs :func:`process_frame` in its own single worker thread: frames are processed in
    order and never on the event loop. Owns the executor: :meth:`close` shuts it down."""

    def __init__(self, settings: ProcessingSettings) -> None:
        self.settings = settings
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="frames")

    async def process(self, frame: CapturedFrame) -> NDArray[np.uint8]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, process_frame, frame, self.settings)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
