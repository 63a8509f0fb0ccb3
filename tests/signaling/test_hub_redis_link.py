"""The shared hub's connections to a real Redis: commands reach it in the order queued, even
written without waiting for replies; each reply goes to its own command; an error answers the
one command that caused it, or, for a command nobody awaits, ends the link; the subscriber
gets every message, byte for byte, in the order published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from runtime.tasks import cancel_and_wait, spawn
from signaling.server.hub import HubUnavailable
from signaling.server.hub_redis_link import (
    BATCH,
    CommandLink,
    LinkLost,
    Subscriber,
    connect,
    pack,
)
from tests.helpers import eventually
from tests.redis_server import redis_server


@asynccontextmanager
async def _running(url: str, link: CommandLink) -> AsyncIterator[asyncio.Task[None]]:
    conn = await connect(url, 10.0)
    task = spawn(link.run(conn), "test-link")
    try:
        yield task
    finally:
        if not task.done():
            await cancel_and_wait([task])
        link.fail("test over")
        await conn.disconnect()


def test_pack_is_resp_bulk_strings() -> None:
    assert pack(("PUBLISH", "c", "é", 12, b"\x00")) == (
        b"*5\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\n\xc3\xa9\r\n$2\r\n12\r\n$1\r\n\x00\r\n"
    )


async def test_commands_run_in_order_and_each_reply_is_its_own(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis") as redis:
        link = CommandLink()
        async with _running(redis.url, link):
            # More than one write's worth, queued at once, nobody awaiting them...
            count = 3 * BATCH + 17
            for i in range(count):
                link.send("RPUSH", "order", i)
            # ...then awaited ones, each answered with its own reply.
            lengths = await asyncio.gather(*(link.call("RPUSH", "order", "x") for _ in range(5)))
            assert lengths == [count + 1 + i for i in range(5)]
            listed = await link.call("LRANGE", "order", 0, -1)
            assert listed == [str(i) for i in range(count)] + ["x"] * 5
            # An error answers the command that caused it; the link goes on.
            with pytest.raises(HubUnavailable):
                await link.call("INCR", "order")
            assert await link.call("ECHO", "still here") == "still here"
            assert link.running


async def test_a_failed_command_nobody_awaits_ends_the_link(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis") as redis:
        link = CommandLink()
        async with _running(redis.url, link) as task:
            link.send("SET", "k", "v")
            link.send("INCR", "k")  # not a number: nobody would hear of it
            waiting = asyncio.ensure_future(link.call("GET", "k"))
            with pytest.raises(ExceptionGroup) as lost:
                await task
            assert lost.group_contains(LinkLost)
            link.fail("lost")
            with pytest.raises(HubUnavailable):
                await waiting
            assert not link.running
            with pytest.raises(HubUnavailable):
                await link.call("GET", "k")


async def test_the_subscriber_gets_every_message_in_order(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis") as redis:
        got: list[tuple[str, str]] = []
        subscriber = Subscriber(lambda channel, data: got.append((channel, data)))
        sub = await connect(redis.url, 10.0)
        reading = spawn(subscriber.run(sub), "test-subscriber")
        link = CommandLink()
        try:
            async with _running(redis.url, link):
                await asyncio.gather(subscriber.subscribe("a"), subscriber.subscribe("b"))
                sent = [("a" if i % 3 else "b", f"d{i}\n{'é' * (i % 50)}") for i in range(2500)]
                for channel, data in sent:
                    link.send("PUBLISH", channel, data)
                assert await link.call("ECHO", "done") == "done"
                subscriber.unsubscribe("b")
                await subscriber.subscribe("a")  # confirmed after the unsubscription
                link.send("PUBLISH", "b", "not heard")
                link.send("PUBLISH", "a", "last")
                await eventually(lambda: got and got[-1] == ("a", "last"))
                assert got == [*sent, ("a", "last")]
        finally:
            await cancel_and_wait([reading])
            subscriber.fail("test over")
            await sub.disconnect()
