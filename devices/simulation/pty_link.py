"""The device end of a pseudo-terminal, standing in for a USB serial cable.

A host opens :attr:`PtyLink.path` exactly as it would open ``/dev/ttyUSB0``. The optional
``link`` is a stable symlink to the current pty, so that :meth:`unplug` and :meth:`replug`
behave like pulling the cable out and putting it back (the path vanishes, then returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from pathlib import Path


class PtyLink:
    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        self._on_data: Callable[[bytes], None] | None = None
        #: Bytes the simulator wrote that the pty would not take (nobody reading).
        self.overflowed = 0

    @property
    def path(self) -> str:
        """The path a host opens: the stable link when there is one."""
        if self.link is not None:
            return str(self.link)
        if self._slave is None:
            raise RuntimeError("not plugged in")
        return os.ttyname(self._slave)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self, on_data: Callable[[bytes], None]) -> None:
        """Create the pty and start delivering what the host writes to ``on_data``."""
        master, slave = os.openpty()
        # Raw mode: no echo of host commands, no line editing, all 8 bits through.
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave, self._on_data = master, slave, on_data
        asyncio.get_running_loop().add_reader(master, self._readable)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(slave))
            tmp.replace(self.link)

    def _readable(self) -> None:
        assert self._master is not None
        assert self._on_data is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no host has the port open at the moment
            return
        if data:
            self._on_data(data)

    def write(self, data: bytes) -> None:
        """Send to the host without blocking; what does not fit is lost, as on a real wire."""
        if self._master is None or not data:
            return
        try:
            written = os.write(self._master, data)
        except (BlockingIOError, OSError):
            written = 0
        self.overflowed += len(data) - written

    def unplug(self) -> None:
        """Close the pty: the host's reads fail, and the link path disappears."""
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def replug(self) -> None:
        assert self._on_data is not None, "plug() first"
        self.unplug()
        self.plug(self._on_data)
