"""The bedside's cameras: what ``--camera`` names (a room camera, and the video output of an
imaging modality through a USB capture device), and each one's pipeline.

``--camera SPEC`` is the room camera (as it always was); ``--camera NAME=SPEC`` a named one,
repeatable: ``--camera room=0 --camera ultrasound=/dev/video2``. A camera named ``room`` is
the room camera (purpose ``room``: denoise, contrast and the site's overlay as configured);
any other name is *diagnostic* (sent as captured: see media.video.processing), unless a
``:room`` or ``:diagnostic`` suffix says otherwise (``--camera ultrasound=/dev/video2:diagnostic``).
SPEC is ``synthetic`` (a test pattern for the room, a moving ultrasound-like sector for a
diagnostic camera), a camera index, a device path, a file or a URL.

Each camera is a :class:`LiveCamera`: its capture thread, its frame worker, the pipeline
serving every viewer's track (encoded once per quality layer for every viewer,
media.rtc.shared_encoder; ``encoding="per-viewer"`` is the old way, each connection's aiortc
sender encoding its own copy, kept as the benchmarks' baseline) and, for a diagnostic
camera, its last seconds of captured frames (:class:`~media.video.recent.RecentFrames`),
from which a doctor keeps a frame.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

from media.rtc.shared_encoder import SharedFrames
from media.rtc.tracks import ProcessedFrames
from media.video.capture import (
    CaptureThread,
    FrameSource,
    LatestFrame,
    OpenCvSource,
    SyntheticSource,
    UltrasoundSource,
)
from media.video.encoder import REALTIME, EncoderSettings
from media.video.processing import FrameProcessor, ProcessingSettings
from media.video.recent import RecentFrames
from telemed.gateway.peers import CameraFeed

Purpose = Literal["room", "diagnostic"]
#: ``shared``: one encode per quality layer for every viewer; ``per-viewer``: aiortc encodes
#: for each connection (the baseline it replaced).
Encoding = Literal["shared", "per-viewer"]
#: As the events contract's CameraName (media.rtc.events).
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: As the events contract's Cameras list allows.
MAX_CAMERAS = 8
ROOM = "room"


@dataclass(frozen=True)
class CameraSpec:
    """A camera to open: its ``name`` (what the room labels it by), ``source`` (``synthetic``,
    an index, a path, a file or a URL) and ``purpose``."""

    name: str
    source: str
    purpose: Purpose

    @classmethod
    def parse(cls, text: str) -> CameraSpec:
        """``SPEC`` (the room camera), or ``NAME=SPEC``, either with an optional ``:room``
        or ``:diagnostic``. Raises ValueError saying what is wrong."""
        name, sep, rest = text.partition("=")
        named = bool(sep) and _NAME.match(name) is not None
        if not named:
            # No name: a URL's query (rtsp://h/s?a=b) has "=" too, but no valid name before.
            name, rest = ROOM, text
        source, purpose = rest, None
        for suffix in ("room", "diagnostic"):
            if rest.endswith(f":{suffix}"):
                source, purpose = rest.removesuffix(f":{suffix}"), suffix
        if not source:
            raise ValueError(f"--camera {text!r}: no source (synthetic, an index, a path, a URL)")
        if not named and purpose == "diagnostic":
            raise ValueError(f"--camera {text!r}: a diagnostic camera needs a name (NAME=SPEC)")
        if purpose is None:
            purpose = "room" if name == ROOM else "diagnostic"
        return cls(name, source, "room" if purpose == "room" else "diagnostic")


def parse_cameras(texts: tuple[str, ...] | list[str]) -> tuple[CameraSpec, ...]:
    """Each ``--camera``; raises ValueError for a bad one, two of one name, or too many."""
    cameras = tuple(CameraSpec.parse(text) for text in texts)
    return check_cameras(cameras)


def check_cameras(cameras: tuple[CameraSpec, ...]) -> tuple[CameraSpec, ...]:
    """Raises ValueError for two cameras of one name, or more than :data:`MAX_CAMERAS`."""
    names = [c.name for c in cameras]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--camera: {', '.join(twice)} named twice (NAME=SPEC, one each)")
    if len(cameras) > MAX_CAMERAS:
        raise ValueError(f"--camera: at most {MAX_CAMERAS} cameras")
    return cameras


class LiveCamera:
    """One camera's pipeline. :meth:`start` opens the source (raises VideoSourceError) and
    starts its capture thread; :meth:`stop` stops the thread and the frame worker (the
    caller owns :attr:`frames`'s run task)."""

    def __init__(
        self,
        spec: CameraSpec,
        settings: ProcessingSettings,
        encoding: Encoding = "shared",
        encoder: EncoderSettings = REALTIME,
    ) -> None:
        self.spec = spec
        self.encoding = encoding
        self.encoder = encoder
        diagnostic = spec.purpose == "diagnostic"
        self.settings = settings.for_diagnostic() if diagnostic else settings
        #: A diagnostic camera's last seconds, as captured (None for the room camera).
        self.recent = RecentFrames() if diagnostic else None
        self.capture: CaptureThread | None = None
        self.processor: FrameProcessor | None = None
        self.frames: ProcessedFrames | None = None

    def _source(self) -> FrameSource:
        spec, settings = self.spec, self.settings
        if spec.source == "synthetic":
            kind = UltrasoundSource if spec.purpose == "diagnostic" else SyntheticSource
            return kind(settings.width, settings.height)
        return OpenCvSource(int(spec.source) if spec.source.isdigit() else spec.source)

    def start(self, loop: asyncio.AbstractEventLoop) -> ProcessedFrames:
        mailbox = LatestFrame(loop)
        self.capture = CaptureThread(
            self._source(), mailbox, name=f"capture-{self.spec.name}", recent=self.recent
        )
        self.capture.start()
        self.processor = FrameProcessor(self.settings)
        if self.encoding == "shared":
            self.frames = SharedFrames(mailbox, self.processor, self.encoder, name=self.spec.name)
        else:
            self.frames = ProcessedFrames(mailbox, self.processor)
        return self.frames

    def feed(self) -> CameraFeed:
        """What the peer set needs of it (call after :meth:`start`)."""
        frames = self.frames
        assert frames is not None
        return CameraFeed(self.spec.name, self.spec.purpose, frames.track, self._size)

    def lossy_method(self) -> str | None:
        """The opened source's lossy format, if any (None before it is opened)."""
        if self.capture is None:
            return None
        method = getattr(self.capture.source, "lossy_method", None)
        return method if isinstance(method, str) else None

    def _size(self) -> tuple[int, int] | None:
        return None if self.capture is None else self.capture.size

    async def stop(self) -> None:
        if self.capture is not None:
            await self.capture.stop()
        if self.processor is not None:
            self.processor.close()
