"""The shared hub's two connections to Redis: the ordered command link and the subscriber.

**Commands** (:class:`CommandLink`): every command this process gives Redis goes through one
queue and one connection, so Redis runs them in the order this process issued them (a relayed
message and a later leave reach the other processes in that order). Commands are packed into
RESP once, when queued; a writer task writes whatever is queued as one buffer and goes on
without waiting for the replies of what it wrote before (Redis answers in order; a reader
task matches each reply to its command). A burst of relayed messages thus costs one write
and no round trip per message.

- :meth:`CommandLink.send`: a command nobody awaits (a relay's ``PUBLISH``, a leave). An
  error reply to it means what this process holds in Redis can no longer be trusted: the
  link ends with :class:`LinkLost`.
- :meth:`CommandLink.call`: a command whose reply is awaited. Raises
  :class:`~signaling.server.hub.HubUnavailable` when the link is not running, is lost
  meanwhile, or Redis answers with an error.
- Bounded: the commands queued and those written but not yet answered together past
  :data:`HIGH_WATER` make the link :attr:`~CommandLink.backlogged` (socket readers await
  :meth:`~CommandLink.drained`: backpressure); past :data:`QUEUE_LIMIT` (Redis has stopped
  answering) the link ends with :class:`LinkLost`.
- :meth:`CommandLink.run` runs the writer and the reply reader on a connected redis-py
  :class:`~redis.asyncio.connection.Connection` until one of them fails; then
  :meth:`CommandLink.fail` tells whoever still waits. A link runs once: a reconnection makes
  a new one. Nothing here times out: the hub's heartbeat, a command awaited within the
  liveness, notices a Redis that stopped answering.

**Subscriptions** (:class:`Subscriber`): one connection per process receives every channel
it subscribes to, in the order Redis published them; each message is handed to ``dispatch``
as it is read, without awaiting anything. :meth:`Subscriber.subscribe` returns a future
resolved once Redis confirms the subscription (from then on every message published there
arrives); subscriptions and unsubscriptions are sent in the order asked.

Both speak RESP2 through redis-py's connection (its URL options, authentication and TLS; its
hiredis parser when ``hiredis`` is installed, several times cheaper per message than the
pure-Python one) and not through its client objects, whose per-command and per-message
bookkeeping was most of the hub's CPU per relayed message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from signaling.server.hub import HubUnavailable

#: Commands queued or unanswered: above HIGH_WATER socket readers wait; past QUEUE_LIMIT the
#: link is taken as lost (Redis has stopped answering).
HIGH_WATER = 5000
QUEUE_LIMIT = 20000
#: Commands written to the socket in one write, at most.
BATCH = 1000

Arg = str | int | bytes


class LinkLost(Exception):
    """This process can no longer trust what it knows of the others (said why)."""


def pack(args: tuple[Arg, ...]) -> bytes:
    """One command in RESP: an array of bulk strings (str as UTF-8, int in decimal)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = arg
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


async def connect(url: str, connect_timeout_s: float) -> AbstractConnection:
    """A connection to the Redis at ``url`` (RESP2, replies decoded, no read timeout and no
    retries: a failure ends the hub's session). Raises redis-py's ``ConnectionError`` or
    ``TimeoutError`` when Redis cannot be reached."""
    pool = aioredis.ConnectionPool.from_url(
        url,
        decode_responses=True,
        protocol=2,
        socket_timeout=None,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    conn: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
    await conn.connect()  # type: ignore[no-untyped-call]
    return conn


class CommandLink:
    """The ordered, pipelined command queue of one session with Redis (see the module)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[bytes, asyncio.Future[Any] | None]] = deque()
        # Written, reply not yet read: whose reply it is (None: nobody awaits it).
        self._unanswered: deque[asyncio.Future[Any] | None] = deque()
        self._work = asyncio.Event()
        self._written = asyncio.Event()
        self._drained = asyncio.Event()
        self._running = True
        self._broken: str | None = None

    @property
    def running(self) -> bool:
        """True until the link fails or is lost (commands queued before :meth:`run` starts
        wait for it)."""
        return self._running and self._broken is None

    def lose(self, why: str) -> None:
        """Take the link as lost: :meth:`run` ends with :class:`LinkLost` (``why``)."""
        if self._broken is None:
            self._broken = why
        self._work.set()

    def _waiting(self) -> int:
        return len(self._queue) + len(self._unanswered)

    @property
    def backlogged(self) -> bool:
        return self._waiting() >= HIGH_WATER

    async def drained(self) -> None:
        """Return once the link is not :attr:`backlogged`, or has failed."""
        while self.backlogged and self.running:
            self._drained.clear()
            await self._drained.wait()

    def send(self, *args: Arg) -> None:
        """Queue a command nobody waits for; dropped when the link is not running (what this
        process held in Redis is being reaped)."""
        if not self.running:
            return
        if self._waiting() >= QUEUE_LIMIT:
            self._broken = f"more than {QUEUE_LIMIT} commands wait for Redis"
            self._work.set()
            return
        self._queue.append((pack(args), None))
        self._work.set()

    async def call(self, *args: Arg) -> Any:
        """Queue a command and await its reply. Raises :class:`HubUnavailable`."""
        if not self.running:
            raise HubUnavailable("the server's hub is not connected to Redis")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((pack(args), future))
        self._work.set()
        return await asyncio.shield(future)

    async def run(self, conn: AbstractConnection) -> None:
        """Write and read on ``conn`` until either fails: raises an ``ExceptionGroup`` of
        :class:`LinkLost` or the connection's error. Call once; :meth:`fail` after."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._write(conn), name="hub-write")
            group.create_task(self._read(conn), name="hub-replies")

    async def _write(self, conn: AbstractConnection) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                if self._broken:
                    raise LinkLost(self._broken)
                chunk: list[bytes] = []
                for _ in range(min(BATCH, len(self._queue))):
                    data, future = self._queue.popleft()
                    chunk.append(data)
                    self._unanswered.append(future)
                self._written.set()
                await conn.send_packed_command(chunk, check_health=False)
            if self._broken:
                raise LinkLost(self._broken)

    async def _read(self, conn: AbstractConnection) -> None:
        unanswered = self._unanswered
        while True:
            if not unanswered:
                self._written.clear()
                await self._written.wait()
                continue
            try:
                reply = await conn.read_response(disconnect_on_error=False)
            except ResponseError as exc:
                reply = exc
            future = unanswered.popleft()
            if isinstance(reply, ResponseError):
                if future is None:
                    raise LinkLost(f"a command failed: {reply!r}")
                if not future.done():
                    future.set_exception(HubUnavailable(repr(reply)))
            elif future is not None and not future.done():
                future.set_result(reply)
            if not unanswered and not self.backlogged:
                self._drained.set()

    def fail(self, why: str) -> None:
        """The link is gone: whoever awaits a reply gets :class:`HubUnavailable`."""
        self._running = False
        waiting = [*self._unanswered, *(future for _, future in self._queue)]
        self._unanswered.clear()
        self._queue.clear()
        for future in waiting:
            if future is not None and not future.done():
                future.set_exception(HubUnavailable(why))
        self._drained.set()


class Subscriber:
    """The subscriber connection of one session with Redis (see the module): ``dispatch``
    gets each message's channel and data; an exception it raises ends the session, so it
    catches what it can survive."""

    def __init__(self, dispatch: Callable[[str, str], None]) -> None:
        self._dispatch = dispatch
        self._ops: deque[tuple[bool, str]] = deque()
        self._work = asyncio.Event()
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def subscribe(self, channel: str) -> asyncio.Future[None]:
        """Subscribe to ``channel``; the future resolves when Redis has confirmed it (fails
        with :class:`HubUnavailable` when the session ends first)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, deque()).append(future)
        self._ops.append((True, channel))
        self._work.set()
        return future

    def unsubscribe(self, channel: str) -> None:
        self._ops.append((False, channel))
        self._work.set()

    async def run(self, conn: AbstractConnection) -> None:
        """Subscribe and read on ``conn`` until either fails (raises an ``ExceptionGroup``
        of the connection's error, or of what ``dispatch`` raised). Call once; :meth:`fail`
        after."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._subscriptions(conn), name="hub-subscribe")
            group.create_task(self._read(conn), name="hub-read")

    async def _subscriptions(self, conn: AbstractConnection) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._ops:
                chunk = []
                while self._ops:
                    subscribe, channel = self._ops.popleft()
                    chunk.append(pack(("SUBSCRIBE" if subscribe else "UNSUBSCRIBE", channel)))
                await conn.send_packed_command(chunk, check_health=False)

    async def _read(self, conn: AbstractConnection) -> None:
        dispatch = self._dispatch
        while True:
            reply = await conn.read_response(disconnect_on_error=False)
            kind = reply[0]
            if kind == "message":
                dispatch(reply[1], reply[2])
            elif kind == "subscribe":
                waiters = self._waiters.get(reply[1])
                if waiters:
                    future = waiters.popleft()
                    if not waiters:
                        del self._waiters[reply[1]]
                    if not future.done():
                        future.set_result(None)

    def fail(self, why: str) -> None:
        """The session is gone: whoever awaits a subscription gets :class:`HubUnavailable`."""
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(HubUnavailable(why))
        self._waiters.clear()
        self._ops.clear()
