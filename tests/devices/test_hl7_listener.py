"""The HL7 listener's long-lived task against senders that die, send garbage, or break its
decoder: it keeps serving every other sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from devices import codes
from devices.model import DeviceEvent, DeviceState, DeviceStatus, Observation
from devices.protocols.hl7_pcd import Hl7Decoder, Numeric, build_oru
from devices.protocols.mllp import MllpFramer, frame
from devices.transports.mllp_tcp import Hl7Listener
from runtime.tasks import cancel_and_wait, spawn

VALID = build_oru([Numeric(codes.SPO2, 95)], [], when=1_800_000_000.0)


@contextlib.asynccontextmanager
async def _serving(listener: Hl7Listener) -> AsyncIterator[asyncio.Task[None]]:
    task = spawn(listener.run(), "hl7-listener")
    try:
        async with asyncio.timeout(10):
            await listener.ready.wait()
        yield task
    finally:
        await cancel_and_wait([task])


async def _answers(reader: asyncio.StreamReader, count: int) -> list[str]:
    """The MSA-1 codes of the next ``count`` answers."""
    framer, codes_seen = MllpFramer(), list[str]()
    async with asyncio.timeout(10):
        while len(codes_seen) < count:
            data = await reader.read(65536)
            assert data, "the listener closed the connection"
            for body in framer.receive_data(data):
                assert isinstance(body, bytes)
                msa = next(s for s in body.decode().split("\r") if s.startswith("MSA"))
                codes_seen.append(msa.split("|")[1])
    return codes_seen


async def _next_event(listener: Hl7Listener, wanted: type[DeviceEvent]) -> DeviceEvent:
    async with asyncio.timeout(10):
        while True:
            event = await listener.events.get()
            if isinstance(event, wanted):
                return event


async def test_a_sender_dying_mid_frame_and_garbage_leave_the_listener_serving() -> None:
    listener = Hl7Listener("127.0.0.1", 0)
    async with _serving(listener) as task:
        await _die_then_send_garbage_and_a_message(listener)
        assert not task.done()


async def _die_then_send_garbage_and_a_message(listener: Hl7Listener) -> None:
    # One sender dies in the middle of a message: its kernel resets the connection.
    _, dying = await asyncio.open_connection("127.0.0.1", listener.port)
    dying.write(frame(VALID)[: len(VALID) // 2])
    await dying.drain()
    sock = dying.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dying.transport.abort()
    gone = await _next_event(listener, DeviceStatus)
    assert isinstance(gone, DeviceStatus)
    assert gone.state is DeviceState.DISCONNECTED

    # Another sends bytes outside any frame, a frame python-hl7 once crashed on, then a
    # valid message: a NAK for the broken one, an ACK for the valid one.
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(b"\x00noise" + frame("MSH|\r~\\&|MON|ICU\rOBX|") + frame(VALID))
        await writer.drain()
        assert (await _answers(reader, 2))[1] == "AA"
        spo2 = await _next_event(listener, Observation)
        assert isinstance(spo2, Observation)
        assert spo2.value == 95.0
    finally:
        writer.close()
        await writer.wait_closed()


class _BrokenDecoder(Hl7Decoder):
    """A decoder with a bug its first message meets."""

    error = RuntimeError("a decoder bug")

    def receive_data(self, data: bytes, now: float) -> list[DeviceEvent]:
        raise self.error


async def test_a_handler_that_fails_is_logged_and_the_others_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made: list[str] = []

    def decoders(device_id: str) -> Hl7Decoder:
        made.append(device_id)
        return _BrokenDecoder(device_id) if len(made) == 1 else Hl7Decoder(device_id)

    listener = Hl7Listener("127.0.0.1", 0, decoder=decoders)
    async with _serving(listener) as task:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(frame(VALID))
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # that connection is closed...
        writer.close()
        failures = [
            r
            for r in caplog.records
            if r.levelno >= logging.ERROR and r.exc_info and r.exc_info[1] is _BrokenDecoder.error
        ]
        assert [r.name for r in failures] == ["devices.transports.mllp_tcp"]  # ...logged once
        assert made[0] in failures[0].getMessage()  # naming the sender

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(frame(VALID))
        assert await _answers(reader, 1) == ["AA"]  # ...and the next sender is served
        writer.close()
        assert not task.done()
