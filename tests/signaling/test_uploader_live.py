"""The journal's uploader against a real server, through the gateway's signaling client: an
answer lost on the way back makes it send the batch again, and the server stores it once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from signaling.client import GatewayCredentials, SignalingClient, UserCredentials
from signaling.journal import Journal, JournalStore
from signaling.schema import ConsultationAction, Role
from signaling.uploader import Uploader, client_post
from tests.helpers import PASSWORD, LiveServer

KEY = "gateway-key-0123456789abcdef-0123456789"
T0 = 1_800_000_000.0


async def _nap(_: float) -> None:
    return None


async def test_a_lost_answer_is_sent_again_and_stored_once(
    server: LiveServer, tmp_path: Path
) -> None:
    await server.add_user("tw", Role.TECHNICIAN, "wonju")
    await server.add_user("dk", Role.DOCTOR, "koriyama")
    await server.add_gateway("bed-1", "wonju", KEY)
    tech = SignalingClient(server.base_url, UserCredentials("tw", PASSWORD))
    doctor = SignalingClient(server.base_url, UserCredentials("dk", PASSWORD))
    gateway = SignalingClient(server.base_url, GatewayCredentials("bed-1", KEY))
    try:
        row = await tech.request_consultation("koriyama", False)
        await doctor.consultation_action(row.id, ConsultationAction.ACCEPT)
        journal = Journal(JournalStore.open(tmp_path / "journal.sqlite3"), lambda: row.id)
        for s in range(30):
            journal.add_numeric(
                {"device": "m", "code": "spo2", "unit": "%", "value": 97.0, "time": T0 + s}
            )
        send = client_post(gateway)
        answers: list[object] = []

        async def lossy(cid: str, body: dict[str, list[Any]]) -> object:
            answer = await send(cid, body)  # the server has it...
            answers.append(answer)
            if len(answers) == 1:
                raise httpx.ReadError("connection reset")  # ...but its answer is lost
            return answer

        uploader = Uploader(journal, lossy, sleep=_nap)
        assert await uploader.step() is None  # kept: not known to be stored
        assert await uploader.step() is False  # sent again, and all is sent
        assert answers == [
            {"numerics": 30, "alarms": 0, "limits": 0},
            {"numerics": 0, "alarms": 0, "limits": 0},
        ]
        assert journal.store.count() == 0
        trend = await doctor.trends(
            row.id, since="2027-01-15T08:00:00Z", until="2027-01-15T08:01:00Z", step=1
        )
        [series] = trend.series
        assert [t for t, _ in series.points] == [int(T0) + s for s in range(30)]
        await journal.close()
    finally:
        for client in (tech, doctor, gateway):
            await client.close()
