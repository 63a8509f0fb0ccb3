"""One video encoder for one quality layer of a camera: BGR images in, VP8 (or H.264)
pictures out. Not for the event loop: :meth:`PictureEncoder.encode` is CPU-heavy and the
codec context is confined to the one thread that calls it (``media.rtc.shared_encoder`` runs
it in a one-thread executor per layer).

The settings are real-time ones (:data:`REALTIME`): the encoder never waits for a later
frame (``lag-in-frames`` 0, ``deadline`` realtime), spends as little search as the picture
allows (``cpu-used``), runs without the temporal denoiser (the room camera's processing may
denoise already, and a diagnostic picture's speckle is signal), marks frames error resilient
(a lost packet spoils less), caps a key frame's size (``max-intra-rate``: a key frame many
times a delta frame's size is a burst every viewer queues behind) and puts a key frame in at
least every :attr:`EncoderSettings.keyframe_interval_s` (viewers ask for one on loss; this
is the net under a lost request), and writes VP8's version 1 (``profile``: the simple loop
filter and bilinear interpolation, cheaper to encode and to decode than version 0's normal
filter and six-tap; every VP8 decoder takes all four versions). Measured: 21-25 % less
decode time in a single-threaded decoder at 720p at the same PSNR (+0.2 dB on the synthetic
pattern, -0.2 dB on a noisy camera-like scene) and bitrate; in Chromium (``telemed bench
browser``, one loaded machine, two interleaved pairs) capture -> display at 720p 31.9 and
34.3 ms against 40.2 and 38.3 ms for version 0 (1.24-1.31 times the in-run aiortc -> aiortc
figure against 1.83-1.89), Chromium's decode 3.3-3.4 ms a frame against 3.7-4.0. Versions 2
and 3 (no loop filter; full-pixel motion) cost too much picture (3: -8.5 dB on the camera
scene). :data:`AIORTC` are aiortc's own VP8 settings, kept to measure against
(``benchmarks/video_encode.py``).

libvpx does not take a new bitrate on an open context (measured: a change of
``bit_rate`` after the first frame changed nothing), so a new bitrate opens a new context,
whose first picture is a key frame: the caller decides how often that is worth it.
"""

from __future__ import annotations

import fractions
import multiprocessing
from dataclasses import dataclass, replace
from typing import Literal

import av
import cv2
import numpy as np
from numpy.typing import NDArray

Codec = Literal["vp8", "h264"]
MIME: dict[Codec, str] = {"vp8": "video/VP8", "h264": "video/H264"}


@dataclass(frozen=True)
class EncoderSettings:
    """How a layer's pictures are encoded. ``cpu_used``: libvpx's speed (negative: real
    time; further from 0 is faster and coarser); ``threads``: the encoder's own threads
    (0: as aiortc chooses, by picture size and cores); ``noise_sensitivity``: libvpx's
    temporal denoiser (0: off); ``error_resilient``; ``keyframe_interval_s``: the longest
    run without a key frame; ``max_intra_pct``: a key frame's cap in percent of a frame's
    share of the bitrate (0: none); ``fps``: the frame rate the rate control plans for;
    ``profile``: VP8's version (RFC 6386 9.1: 0 the normal loop filter and six-tap
    interpolation, 1 the simple loop filter and bilinear, 2 and 3 coarser still)."""

    codec: Codec = "vp8"
    cpu_used: int = -12
    threads: int = 1
    noise_sensitivity: int = 0
    error_resilient: bool = True
    keyframe_interval_s: float = 10.0
    max_intra_pct: int = 450
    static_thresh: int = 1
    fps: float = 30.0
    profile: int = 1
    #: x264's preset, for ``codec="h264"``.
    preset: str = "ultrafast"


#: Real-time settings for the shared encoder (chosen on ``benchmarks/video_encode.py``).
REALTIME = EncoderSettings()
#: aiortc's VP8 encoder as it sets itself up (codecs/vpx.py): the baseline.
AIORTC = EncoderSettings(
    cpu_used=-6,
    threads=0,
    noise_sensitivity=4,
    error_resilient=False,
    keyframe_interval_s=100.0,
    max_intra_pct=0,
    profile=0,
)


@dataclass(frozen=True)
class Picture:
    """An encoded picture: the codec's bytes (one frame), whether it is a key frame, and
    the encoder's frame number."""

    data: bytes
    keyframe: bool
    index: int


def aiortc_threads(width: int, height: int, cpus: int) -> int:
    """aiortc's choice of VP8 threads (codecs/vpx.py ``number_of_threads``)."""
    pixels = width * height
    if pixels >= 1920 * 1080 and cpus > 8:
        return 8
    if pixels > 1280 * 960 and cpus >= 6:
        return 3
    if pixels > 640 * 480 and cpus >= 3:
        return 2
    return 1


def _vp8_options(settings: EncoderSettings, bitrate: int) -> dict[str, str]:
    options = {
        # As aiortc: a 1 s buffer, constant bitrate (minrate = maxrate = bit_rate).
        "bufsize": str(bitrate),
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "undershoot-pct": "100",
        "overshoot-pct": "15",
        "partitions": "0",
        "cpu-used": str(settings.cpu_used),
        "deadline": "realtime",
        "lag-in-frames": "0",
        "noise-sensitivity": str(settings.noise_sensitivity),
        "static-thresh": str(settings.static_thresh),
        "profile": str(settings.profile),
    }
    if settings.error_resilient:
        options["error-resilient"] = "default"
    if settings.max_intra_pct > 0:
        options["max-intra-rate"] = str(settings.max_intra_pct)
    return options


def open_context(
    settings: EncoderSettings, width: int, height: int, bitrate: int
) -> av.video.codeccontext.VideoCodecContext:
    """A codec context for ``width`` x ``height`` at ``bitrate`` bits per second."""
    name = "libvpx" if settings.codec == "vp8" else "libx264"
    context = av.CodecContext.create(name, "w")
    assert isinstance(context, av.video.codeccontext.VideoCodecContext)
    context.width = width
    context.height = height
    context.bit_rate = bitrate
    context.pix_fmt = "yuv420p"
    fps = round(settings.fps)
    context.time_base = fractions.Fraction(1, fps)
    context.framerate = fractions.Fraction(fps, 1)
    context.gop_size = max(1, round(settings.keyframe_interval_s * settings.fps))
    threads = settings.threads or aiortc_threads(width, height, multiprocessing.cpu_count())
    context.thread_count = threads
    if settings.codec == "vp8":
        context.qmin = 2
        context.qmax = 56
        context.options = _vp8_options(settings, bitrate)
    else:
        context.profile = "Baseline"
        context.options = {
            "preset": settings.preset,
            "tune": "zerolatency",
            "level": "31",
            "bufsize": str(bitrate),
            "maxrate": str(bitrate),
            # Annex B with the parameter sets before every key frame, as aiortc packs it;
            # several threads encode slices of one picture (frame threads would each hold
            # a picture back).
            "x264-params": f"repeat-headers=1:sliced-threads={int(threads > 1)}",
        }
    return context


class PictureEncoder:
    """Encodes BGR images at a fixed ``size`` (width, height), scaled down when larger.

    Call :meth:`encode` from one thread only (the codec context is not shared). A change of
    ``bitrate`` opens a new context (its first picture a key frame)."""

    def __init__(self, settings: EncoderSettings, size: tuple[int, int]) -> None:
        self.settings = settings
        self.size = size
        self._context: av.video.codeccontext.VideoCodecContext | None = None
        self._bitrate = 0
        self._index = 0
        #: Contexts opened (the first, then one per bitrate change).
        self.opened = 0

    @property
    def bitrate(self) -> int:
        """The bitrate of the open context (0 before the first picture)."""
        return self._bitrate if self._context is not None else 0

    def encode(
        self, image: NDArray[np.uint8], bitrate: int, keyframe: bool = False
    ) -> Picture | None:
        """The picture of ``image`` (BGR, any size: scaled to :attr:`size`); ``keyframe``
        forces a key frame. None when the codec gives nothing for it (it drops a frame to
        hold its bitrate)."""
        width, height = self.size
        if image.shape[1] != width or image.shape[0] != height:
            image = np.asarray(
                cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
        # BGR to I420 in one OpenCV pass (cheaper than swscale from bgr24 in PyAV).
        planar = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(planar, format="yuv420p")
        if self._context is None or bitrate != self._bitrate:
            self._context = open_context(self.settings, width, height, bitrate)
            self._bitrate = bitrate
            self.opened += 1
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        frame.pts = self._index
        frame.time_base = self._context.time_base
        self._index += 1
        packets = self._context.encode(frame)
        if not packets:
            return None
        data = b"".join(bytes(p) for p in packets)
        return Picture(data, any(p.is_keyframe for p in packets), self._index - 1)


def with_settings(settings: EncoderSettings, **changes: object) -> EncoderSettings:
    """``settings`` with some fields changed (for benchmarks and tests)."""
    return replace(settings, **changes)  # type: ignore[arg-type]
