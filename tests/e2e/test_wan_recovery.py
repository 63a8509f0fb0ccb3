"""The call across a WAN that fails: both sides forced through TURN (relay-only ICE), the TURN
server behind the userspace impairment relay (benchmarks.impair), so a blackout of the relay
or a crash of coturn is the loss of the only path. The gateway must give up what cannot work
and connect again once the path allows, without the doctor doing anything."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from benchmarks.impair import PROFILES, UdpImpairmentRelay
from signaling.config import TurnConfig
from telemed.gateway.runner import Gateway
from tests.e2e.bedside import bedside
from tests.e2e.coturn import TURN_SECRET, Coturn, coturn
from tests.e2e.doctor import Doctor, active_consultation, gateway_in, tasks, until
from tests.helpers import LiveServer, make_config, run_server

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def _wan(tmp_path: Path) -> AsyncIterator[tuple[LiveServer, UdpImpairmentRelay, Coturn]]:
    """coturn behind a relay with the wired Koriyama-Wonju profile; the server hands out
    TURN credentials for the relay's address."""
    turn_server = coturn(tmp_path)
    turn_server.start()
    relay = UdpImpairmentRelay(("127.0.0.1", turn_server.port), PROFILES["wired"], seed=1)
    try:
        async with relay:
            turn = TurnConfig(
                urls=(f"turn:127.0.0.1:{relay.port}?transport=udp",), secret=TURN_SECRET
            )
            async with run_server(make_config(tmp_path, turn=turn)) as server:
                yield server, relay, turn_server
    finally:
        turn_server.stop()


async def _deaths(gateway: Gateway, at_least: int, seconds: float) -> None:
    assert gateway.peers is not None
    async with asyncio.timeout(seconds):
        while gateway.peers.deaths < at_least:
            await asyncio.sleep(0.05)


async def test_a_connection_that_cannot_open_is_made_again_once_the_path_allows(
    tmp_path: Path,
) -> None:
    """The offer is made while the path to TURN is down: it has no relay candidate and can
    never connect. It is given up, made again with backoff, and connects once the path is
    back."""
    async with _wan(tmp_path) as (server, relay, _):
        tech, doctor, row = await active_consultation(server)
        doctor = Doctor(doctor.client, use_ice_servers=True, relay_only=True)
        try:
            relay.blackout(True)
            async with (
                bedside(server, relay_only=True) as gateway,
                tasks(doctor.answer_offers()),
            ):
                await gateway_in(gateway, row.id)
                await doctor.client.join(row.id)
                await _deaths(gateway, 1, seconds=30)  # given up, not waited on for a minute
                assert gateway.peers is not None and gateway.peers.opened_total == 0
                relay.blackout(False)
                await until(lambda: len(doctor.packets) >= 30, doctor, seconds=30)
                assert gateway.peers.open_peers
        finally:
            if doctor.media is not None:
                await doctor.media.close()
            await doctor.client.close()
            await tech.close()


async def test_media_comes_back_after_turn_crashes_and_returns_and_after_a_blackout(
    tmp_path: Path,
) -> None:
    """A TURN-only call: coturn dies for 10 s (its allocations are gone for good), then the
    relay's path goes dark for 10 s. Each time the gateway rebuilds once the path is back,
    and closing the dead connections (whose TURN release never comes) holds nothing up."""
    async with _wan(tmp_path) as (server, relay, turn_server):
        tech, doctor, row = await active_consultation(server)
        doctor = Doctor(doctor.client, use_ice_servers=True, relay_only=True)
        try:
            async with (
                bedside(server, relay_only=True) as gateway,
                tasks(doctor.answer_offers()),
            ):
                await gateway_in(gateway, row.id)
                await doctor.client.join(row.id)
                await until(lambda: len(doctor.packets) >= 30, doctor, seconds=30)
                assert gateway.peers is not None

                turn_server.stop()
                await _deaths(gateway, 1, seconds=10)
                await asyncio.sleep(10)
                turn_server.start()
                before = len(doctor.packets)
                await until(lambda: len(doctor.packets) > before + 30, doctor, seconds=30)
                opened = gateway.peers.opened_total
                assert opened >= 2

                relay.blackout(True)
                deaths = gateway.peers.deaths
                await _deaths(gateway, deaths + 1, seconds=10)
                await asyncio.sleep(10)
                relay.blackout(False)
                before = len(doctor.packets)
                await until(lambda: len(doctor.packets) > before + 30, doctor, seconds=30)
                assert gateway.peers.opened_total > opened
        finally:
            if doctor.media is not None:
                await doctor.media.close()
            await doctor.client.close()
            await tech.close()
