"""A TCP relay on 127.0.0.1 that a test can cut and mend: a client's network link to a real
server going down and coming back, while the server itself stays up for everyone else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from runtime.tasks import cancel_and_wait


class TcpRelay:
    """Relays each connection made to :attr:`port` to ``target_port`` on 127.0.0.1.

    :meth:`cut` closes every connection through it, and while cut a new connection is
    accepted and closed at once (a refused link); :meth:`mend` lets them through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.is_cut = False
        #: Connections relayed (accepted while not cut).
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        await cancel_and_wait(list(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        self.is_cut = True
        for writer in list(self._writers):
            writer.transport.abort()

    def mend(self) -> None:
        self.is_cut = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.is_cut:
                writer.transport.abort()
                return
            self.connections += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.update((writer, up_writer))
            try:
                async with asyncio.TaskGroup() as pipes:
                    pipes.create_task(_pipe(reader, up_writer))
                    pipes.create_task(_pipe(up_reader, writer))
            finally:
                self._writers.difference_update((writer, up_writer))
                up_writer.transport.abort()
        finally:
            writer.transport.abort()
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then end both (a relay passes no half-closed link)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


@contextlib.asynccontextmanager
async def tcp_relay(target_port: int) -> AsyncIterator[TcpRelay]:
    relay = TcpRelay(target_port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
