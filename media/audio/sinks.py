"""Where talk-back is played: an ALSA device or a WAV file, written from a thread of its own.

A sink's :meth:`write` blocks (a device takes samples at its own pace), so the event loop
never calls it: :class:`SinkThread` holds a bounded queue (oldest dropped, counted) and
writes from its thread. Which sink a spec names: :func:`open_audio_sink`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import wave
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from numpy.typing import NDArray

from media.audio import alsa
from media.audio.capture import SAMPLE_RATE
from media.audio.errors import AudioDeviceError

log = logging.getLogger(__name__)

#: Blocks waiting for the sink before the oldest is dropped: 0.5 s of 20 ms blocks.
SINK_QUEUE_BLOCKS = 25


class AudioSink(Protocol):
    def write(self, samples: NDArray[np.float32]) -> None:
        """Play or store mono 48 kHz samples in [-1, 1]; may block."""

    def close(self) -> None: ...


def to_pcm16(samples: NDArray[np.float32]) -> NDArray[np.int16]:
    return np.asarray(np.clip(samples, -1.0, 32767 / 32768) * 32768, dtype=np.int16)


class WavSink:
    """A 16-bit mono 48 kHz WAV file. The header is brought up to date after every write,
    so the file can be read while it is being written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = wave.open(str(path), "wb")  # noqa: SIM115  # closed by close()
        except OSError as exc:
            raise AudioDeviceError(f"cannot write {path}: {exc}") from None
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(SAMPLE_RATE)
        self.samples = 0

    def write(self, samples: NDArray[np.float32]) -> None:
        self._file.writeframes(to_pcm16(samples).tobytes())
        self.samples += len(samples)

    def close(self) -> None:
        self._file.close()


class AlsaSink:
    """An ALSA playback device through FFmpeg (``plughw:1,0``, ``default``...). Raises
    :class:`AudioDeviceError` naming the device when it cannot be opened."""

    def __init__(self, device: str) -> None:
        alsa.use_system_config()
        self.device = device
        try:
            self._container = av.open(device, mode="w", format="alsa")
            self._stream = self._container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
            # FFmpeg opens the device with the header: now, so that an absent one is said
            # at start, not at the first word of talk-back.
            self._container.start_encoding()
        except (av.FFmpegError, OSError) as exc:
            raise AudioDeviceError(
                f"cannot open ALSA playback device {device!r}: {exc} "
                "(is it plugged in? `aplay -l` lists the cards)"
            ) from None
        self._pts = 0
        self.samples = 0

    def write(self, samples: NDArray[np.float32]) -> None:
        frame = av.AudioFrame.from_ndarray(
            to_pcm16(samples).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += len(samples)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.samples += len(samples)

    def close(self) -> None:
        with contextlib.suppress(av.FFmpegError, OSError):  # the device may be gone
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()


def open_audio_sink(spec: str) -> AudioSink:
    """``alsa:NAME`` (an ALSA playback device, e.g. ``alsa:plughw:1,0``) or a path to a WAV
    file (written). Raises :class:`AudioDeviceError` when it cannot be opened."""
    if spec.startswith(("alsa:", "pulse:")):
        return AlsaSink(alsa.device_name(spec))
    return WavSink(Path(spec))


class SinkThread:
    """Writes blocks to ``sink`` from a thread of its own. :meth:`put` (from the event loop)
    never blocks: past ``maxsize`` waiting blocks the oldest is dropped (counted). A sink
    that fails is logged once and closed; what comes after is dropped."""

    def __init__(self, sink: AudioSink, maxsize: int = SINK_QUEUE_BLOCKS) -> None:
        self.sink = sink
        self._queue: queue.Queue[NDArray[np.float32] | None] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audio-sink", daemon=True)
        self.dropped = 0
        self.written = 0
        self.failed = False

    def start(self) -> None:
        self._thread.start()

    def put(self, samples: NDArray[np.float32] | None) -> None:
        """Queue a block (None: stop once the queue is written)."""
        with self._lock:  # one producer at a time, so the drop-then-put cannot race
            while True:
                try:
                    self._queue.put_nowait(samples)
                    return
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                        self.dropped += 1

    def _run(self) -> None:
        try:
            while (samples := self._queue.get()) is not None:
                if self.failed:
                    continue
                try:
                    self.sink.write(samples)
                    self.written += 1
                except Exception:  # a device unplugged: said once, the rest dropped
                    self.failed = True
                    log.exception("talk-back sink failed; talk-back is not played")
        finally:
            self.sink.close()

    def join(self, timeout: float = 5.0) -> None:
        """After ``put(None)``: wait for the thread (blocking; call it off the event loop)."""
        self._thread.join(timeout)
