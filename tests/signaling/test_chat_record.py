"""Chat as part of the consultation's record: stored before it is relayed, replayed in every
``joined`` (after a re-join and after a server restart), refused once the consultation is not
active, listed over HTTP; and the summary a consultation comes to."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from signaling.client import SignalingClient, UserCredentials
from signaling.schema import Chat, Role
from signaling.storage.models import AuditEventRow
from tests.helpers import PASSWORD, LiveServer, make_config, run_server
from tests.signaling.pictures import png
from tests.signaling.sockets import (
    act,
    api,
    connect,
    join,
    nothing_pending,
    recv,
    request_consultation,
)


async def _people(server: LiveServer) -> dict[str, str]:
    tokens = {}
    for name, role, site in [
        ("dw", Role.DOCTOR, "wonju"),
        ("dk", Role.DOCTOR, "koriyama"),
        ("tk", Role.TECHNICIAN, "koriyama"),
        ("ew", Role.ENGINEER, "wonju"),
        ("admin", Role.ADMIN, "koriyama"),
    ]:
        await server.add_user(name, role, site)
        tokens[name] = await server.token(name)
    return tokens


async def _active(server: LiveServer, tokens: dict[str, str]) -> str:
    cid = await request_consultation(server, tokens["dw"], "koriyama")
    await act(server, tokens["dk"], cid, "accept")
    return cid


async def _audit(server: LiveServer, action: str) -> list[AuditEventRow]:
    async with server.services.db.session() as session:
        query = select(AuditEventRow).where(AuditEventRow.action == action)
        return list((await session.scalars(query.order_by(AuditEventRow.seq))).all())


async def _skip_to(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = await recv(ws)
        if message["type"] == kind:
            return message


async def test_chat_is_stored_relayed_with_its_id_and_replayed_on_rejoin(
    server: LiveServer,
) -> None:
    tokens = await _people(server)
    cid = await _active(server, tokens)
    a, _ = await connect(server, tokens["dw"])
    b, _ = await connect(server, tokens["dk"])
    await join(a, cid)
    await join(b, cid)
    assert (await recv(a))["type"] == "peer-joined"

    sent = []
    for ws, text in [(a, "血圧は?"), (b, "혈압 120/80"), (a, "thanks")]:
        await ws.send(json.dumps({"type": "chat", "text": text, "id": 999}))
        echoes = [await recv(a), await recv(b)]
        assert echoes[0] == echoes[1]
        assert echoes[0]["type"] == "chat"
        assert echoes[0]["text"] == text
        sent.append(echoes[0])
    ids = [m["id"] for m in sent]
    assert ids == sorted(ids)
    assert 999 not in ids  # the server assigns ids; a client's is ignored
    assert [m["sender_name"] for m in sent] == ["dw", "dk", "dw"]
    assert [m["sender_site"] for m in sent] == ["wonju", "koriyama", "wonju"]

    # Leave and come back: the joined carries the stored messages, as relayed, in order.
    await a.send(json.dumps({"type": "leave", "consultation_id": cid}))
    assert (await recv(a))["type"] == "left"
    assert (await recv(b))["type"] == "peer-left"
    rejoined = await join(a, cid)
    assert rejoined["chat"] == sent

    # The HTTP record is the same list, for members and viewers; typed in the client.
    record = await api(server, "GET", f"/api/consultations/{cid}/chat", tokens["tk"])
    assert record.json() == sent
    admin_view = await api(server, "GET", f"/api/consultations/{cid}/chat", tokens["admin"])
    assert admin_view.json() == sent
    async with SignalingClient(server.base_url, UserCredentials("dk", PASSWORD)) as client:
        history = await client.chat_history(cid)
    assert history == [Chat.model_validate(m) for m in sent]

    sends = await _audit(server, "chat.send")
    assert [(r.actor_name, json.loads(r.detail)) for r in sends] == [
        ("dw", {"chars": 4, "message": ids[0]}),
        ("dk", {"chars": 9, "message": ids[1]}),
        ("dw", {"chars": 6, "message": ids[2]}),
    ]
    assert all(r.consultation_id == cid for r in sends)
    views = await _audit(server, "chat.view")
    assert [(r.actor_name, r.outcome) for r in views] == [
        ("tk", "ok"),
        ("admin", "ok"),
        ("dk", "ok"),
    ]
    assert (await server.services.audit.verify()).ok
    for ws in (a, b):
        await ws.close()


async def test_chat_record_is_hidden_from_others(server: LiveServer) -> None:
    tokens = await _people(server)
    cid = await _active(server, tokens)
    for who in ("ew",):  # an engineer sees no consultation
        refused = await api(server, "GET", f"/api/consultations/{cid}/chat", tokens[who])
        assert refused.status_code == 404
    missing = await api(server, "GET", "/api/consultations/c-missing/chat", tokens["dw"])
    assert missing.status_code == 404
    denied = await _audit(server, "chat.view")
    assert [(r.actor_name, r.outcome) for r in denied] == [("ew", "denied"), ("dw", "denied")]


async def test_chat_is_refused_unless_active_and_nothing_is_stored(server: LiveServer) -> None:
    tokens = await _people(server)
    cid = await request_consultation(server, tokens["dw"], "koriyama")
    a, _ = await connect(server, tokens["dw"])
    await join(a, cid)
    await a.send(json.dumps({"type": "chat", "text": "anyone?"}))
    early = await recv(a)
    assert (early["code"], early["reason"], early["ref"]) == (
        "not_active",
        "the consultation has not been accepted yet",
        "chat",
    )

    await act(server, tokens["dk"], cid, "accept")
    assert (await recv(a))["type"] == "consultation-state"
    assert (await recv(a))["type"] == "consultation"
    await a.send(json.dumps({"type": "chat", "text": "kept"}))
    kept = await recv(a)
    assert kept["text"] == "kept"

    await act(server, tokens["dk"], cid, "close")
    assert (await recv(a))["type"] == "consultation-state"
    assert (await recv(a))["type"] == "consultation"
    await a.send(json.dumps({"type": "chat", "text": "too late"}))
    late = await recv(a)
    assert (late["type"], late["code"], late["reason"]) == (
        "error",
        "not_active",
        "the consultation has ended",
    )
    await nothing_pending(a)
    record = await api(server, "GET", f"/api/consultations/{cid}/chat", tokens["dw"])
    assert [m["text"] for m in record.json()] == ["kept"]
    assert [json.loads(r.detail)["chars"] for r in await _audit(server, "chat.send")] == [4]
    await a.close()


async def test_chat_is_replayed_after_a_server_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with run_server(config) as server:
        tokens = await _people(server)
        cid = await _active(server, tokens)
        a, _ = await connect(server, tokens["dw"])
        await join(a, cid)
        sent = []
        for text in ("first", "second"):
            await a.send(json.dumps({"type": "chat", "text": text}))
            sent.append(await recv(a))
        await a.close()
    async with run_server(config) as again:
        b, _ = await connect(again, await again.token("dk"))
        joined = await join(b, cid)
        assert joined["chat"] == sent
        # New messages continue the record after the old ones.
        await b.send(json.dumps({"type": "chat", "text": "third"}))
        third = await recv(b)
        assert third["id"] > sent[-1]["id"]
        await b.close()


async def test_summary_of_a_consultation(server: LiveServer) -> None:
    tokens = await _people(server)
    await server.add_gateway("bed-1", "wonju", "g" * 40)
    cid = await request_consultation(server, tokens["dw"], "koriyama")
    requested = await api(server, "GET", f"/api/consultations/{cid}/summary", tokens["dk"])
    assert requested.status_code == 200
    body = requested.json()
    assert (body["started_at"], body["ended_at"], body["duration_s"]) == (None, None, None)
    assert (body["participants"], body["messages"], body["snapshots"]) == ([], 0, 0)
    assert body["consultation"]["allowed_actions"] == ["accept", "close"]

    await act(server, tokens["dk"], cid, "accept")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        gateway = await http.post("/api/auth/gateway", json={"name": "bed-1", "key": "g" * 40})
    sockets = []
    for token in (tokens["dk"], gateway.json()["token"], tokens["dw"]):
        ws, _ = await connect(server, token)
        await join(ws, cid)
        sockets.append(ws)
    await sockets[0].send(json.dumps({"type": "chat", "text": "one"}))
    await sockets[2].send(json.dumps({"type": "chat", "text": "two"}))
    await _skip_to(sockets[2], "chat")
    await _skip_to(sockets[2], "chat")
    taken = await api(
        server,
        "POST",
        f"/api/consultations/{cid}/snapshots",
        tokens["tk"],
        content=png(),
        headers={"Content-Type": "image/png"},
    )
    assert taken.status_code == 201, taken.text

    before = datetime.now().astimezone()
    live = (await api(server, "GET", f"/api/consultations/{cid}/summary", tokens["dw"])).json()
    after = datetime.now().astimezone()
    started = datetime.fromisoformat(live["started_at"])
    assert live["ended_at"] is None
    # While active, the duration runs until now.
    assert (before - started).total_seconds() <= live["duration_s"]
    assert live["duration_s"] <= (after - started).total_seconds()

    await act(server, tokens["dw"], cid, "close")
    async with SignalingClient(server.base_url, UserCredentials("admin", PASSWORD)) as client:
        summary = await client.consultation_summary(cid)
    consultation = summary.consultation
    assert consultation.state == "closed"
    assert summary.started_at == consultation.accepted_at
    assert summary.ended_at == consultation.ended_at
    assert summary.started_at is not None and summary.ended_at is not None
    elapsed = datetime.fromisoformat(summary.ended_at) - datetime.fromisoformat(summary.started_at)
    assert summary.duration_s == elapsed.total_seconds()
    assert [(p.kind, p.name, p.role, p.site) for p in summary.participants] == [
        ("user", "dk", Role.DOCTOR, "koriyama"),
        ("user", "dw", Role.DOCTOR, "wonju"),
        ("gateway", "bed-1", Role.GATEWAY, "wonju"),
    ]
    assert (summary.messages, summary.snapshots) == (2, 1)

    hidden = await api(server, "GET", f"/api/consultations/{cid}/summary", tokens["ew"])
    assert hidden.status_code == 404
    assert [r.outcome for r in await _audit(server, "consultation.summary")] == [
        "ok",
        "ok",
        "ok",
        "denied",
    ]
    for ws in sockets:
        await ws.close()
