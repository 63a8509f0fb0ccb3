"""Reading an audio source in a thread of its own, handing 20 ms blocks to the event loop.

The capture thread never waits for the consumer: the hand-over is a bounded mailbox that
drops the oldest block when the event loop falls behind (counted), so the sound a viewer
hears stays live. Blocks keep their index, so a dropped block leaves a gap in the RTP
timestamps (the receiver conceals it) instead of shifting everything after it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from media.audio.errors import AudioDeviceError

log = logging.getLogger(__name__)

#: Everything in this package runs at Opus's own rate, in 20 ms blocks (one Opus frame).
SAMPLE_RATE = 48_000
BLOCK_SAMPLES = 960
BLOCK_S = BLOCK_SAMPLES / SAMPLE_RATE
#: Blocks the mailbox holds before it drops the oldest: 200 ms.
MAILBOX_BLOCKS = 10
#: How long a lost device is left before it is opened again.
REOPEN_S = 2.0


@dataclass(frozen=True, eq=False)
class AudioBlock:
    #: Blocks since the capture started, counting those dropped (sample = index * 960).
    index: int
    #: Wall-clock time (s since the epoch) when the block's last sample was captured.
    capture_time: float
    #: ``BLOCK_SAMPLES`` mono samples, float32 in [-1, 1].
    samples: NDArray[np.float32]


class AudioSource(Protocol):
    def read(self) -> NDArray[np.float32] | None:
        """The next block (``BLOCK_SAMPLES`` mono float32), blocking until it is there (a
        device paces itself; a file or a synthetic source sleeps until the block is due).
        None when the source has ended or failed."""

    def close(self) -> None: ...


class AudioMailbox:
    """Blocks from a thread to the event loop, in order, at most ``maxsize`` waiting: when
    full, :meth:`put` drops the oldest (counted in :attr:`dropped`). ``put`` never blocks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = MAILBOX_BLOCKS) -> None:
        if maxsize <= 0:
            raise ValueError("a mailbox on a live path needs a positive maxsize")
        self._loop = loop
        self._lock = threading.Lock()
        self._blocks: collections.deque[AudioBlock] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def put(self, block: AudioBlock | None) -> None:
        """From the capture thread. None means the source has ended."""
        with self._lock:
            if block is None:
                self.closed = True
            else:
                if len(self._blocks) >= self._maxsize:
                    self._blocks.popleft()
                    self.dropped += 1
                self._blocks.append(block)
        self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> AudioBlock | None:
        """The oldest block waiting; None once the source has ended and all were taken."""
        while True:
            with self._lock:
                if self._blocks:
                    return self._blocks.popleft()
                self._ready.clear()
                if self.closed:
                    return None
            await self._ready.wait()


class AudioCaptureThread:
    """Reads ``source`` in a daemon thread into ``mailbox`` until :meth:`stop`.

    ``reopen``: how to open the source again when it fails or ends (a USB device unplugged
    and plugged back); tried every ``REOPEN_S`` until it works or the capture is stopped.
    Without it, the capture ends with its source (the mailbox is told)."""

    def __init__(
        self,
        source: AudioSource,
        mailbox: AudioMailbox,
        reopen: Callable[[], AudioSource] | None = None,
        name: str = "audio",
    ) -> None:
        self.source: AudioSource | None = source
        self.mailbox = mailbox
        self.blocks = 0
        self.reopened = 0
        self._reopen = reopen
        self._name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                samples = self._read()
                if samples is None:
                    if self._reopen is None or not self._reopen_source():
                        break
                    continue
                self.blocks += 1
                self.mailbox.put(AudioBlock(index, time.time(), samples))
                index += 1
        finally:
            if self.source is not None:
                self.source.close()
            self.mailbox.put(None)

    def _read(self) -> NDArray[np.float32] | None:
        if self.source is None:
            return None
        try:
            return self.source.read()
        except Exception:  # a driver failure: the reason goes to the log
            log.exception("audio capture from %s failed", self._name)
            return None

    def _reopen_source(self) -> bool:
        """Close the failed source and open it again; False once the capture is stopped."""
        assert self._reopen is not None
        if self.source is not None:
            self.source.close()
            self.source = None
        log.warning("audio source %s lost; opening it again every %.0f s", self._name, REOPEN_S)
        while not self._stop.wait(REOPEN_S):
            try:
                self.source = self._reopen()
            except AudioDeviceError as exc:
                log.debug("audio source %s still absent: %s", self._name, exc)
                continue
            except Exception:  # not a known absence: said, and tried again all the same
                log.exception("opening audio source %s again failed", self._name)
                continue
            self.reopened += 1
            log.warning("audio source %s is back", self._name)
            return True
        return False

    async def stop(self) -> None:
        """Stop and wait for the thread (without blocking the event loop). A device read
        returns within a block, a paced source within one block's time."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5.0)
