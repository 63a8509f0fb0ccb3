"""Kill the server process mid-consultation and start it again: the consultation survives in
the database and both clients reconnect and re-join on their own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.client import ClientOptions, SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Joined, Offer, Welcome
from tests.e2e.server_process import ServerProcess
from tests.helpers import next_of_type

pytestmark = pytest.mark.slow
FAST = ClientOptions(heartbeat_interval_s=0.5, heartbeat_timeout_s=2.0, backoff_max_s=0.5)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path)
    proc.cli(
        "users",
        "add",
        "dw",
        "--role",
        "doctor",
        "--site",
        "wonju",
        "--password-stdin",
        stdin=b"restart-test-password-dw\n",
    )
    proc.cli(
        "users",
        "add",
        "dk",
        "--role",
        "doctor",
        "--site",
        "koriyama",
        "--password-stdin",
        stdin=b"restart-test-password-dk\n",
    )
    try:
        yield proc
    finally:
        proc.stop()


async def test_clients_rejoin_after_server_is_killed(server_process: ServerProcess) -> None:
    await server_process.start()
    url = server_process.base_url
    wonju = SignalingClient(url, UserCredentials("dw", "restart-test-password-dw"), options=FAST)
    koriyama = SignalingClient(url, UserCredentials("dk", "restart-test-password-dk"), options=FAST)
    try:
        await wonju.start()
        await koriyama.start()
        row = await wonju.request_consultation("koriyama", True)
        await koriyama.consultation_action(row.id, ConsultationAction.ACCEPT)
        await wonju.join(row.id)
        await koriyama.join(row.id)
        first_ids = (wonju.peer_id, koriyama.peer_id)
        for client in (wonju, koriyama):  # the first connection's announcements
            await next_of_type(client.recv, Welcome)
            await next_of_type(client.recv, Joined)

        server_process.kill()
        await server_process.start()

        # Each client announces its new connection, then the consultation it re-joined.
        for client in (wonju, koriyama):
            await next_of_type(client.recv, Welcome, timeout=20)
            joined = await next_of_type(client.recv, Joined, timeout=20)
            assert joined.consultation.id == row.id
            assert joined.consultation.state == "active"
            assert client.peer_id in {p.peer_id for p in joined.peers}
        assert wonju.connections == 2
        assert koriyama.connections == 2
        assert (wonju.peer_id, koriyama.peer_id) != first_ids

        # Relay works again between the new connections.
        async with asyncio.timeout(10):
            while True:
                assert koriyama.peer_id is not None
                try:
                    await wonju.send(Offer(to=koriyama.peer_id, sdp="v=0 after restart"))
                    offer = await next_of_type(koriyama.recv, Offer, timeout=2)
                    break
                except TimeoutError:
                    continue  # koriyama's re-join was not in yet
        assert offer.sdp == "v=0 after restart"
        assert offer.sender == wonju.peer_id
    finally:
        await wonju.close()
        await koriyama.close()
