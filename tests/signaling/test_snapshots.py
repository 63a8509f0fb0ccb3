"""Bedside snapshots over HTTP on a real server: stored byte for byte with the consultation,
refused with a status and a reason when they are not what they claim, hidden from those who
may not see the consultation, audited with their SHA-256; no input makes the server fail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from signaling.client import SignalingClient, UserCredentials
from signaling.config import DEFAULT_SITES, SiteConfig
from signaling.errors import SignalingError
from signaling.schema import Role
from signaling.server.routes_snapshots import MAX_SNAPSHOT_BYTES
from signaling.storage.models import AuditEventRow
from tests.helpers import PASSWORD, LiveServer, make_config, run_server
from tests.signaling.pictures import jpeg, png
from tests.signaling.sockets import act, active_consultation, api, request_consultation

SEOUL = SiteConfig(
    code="seoul", name="Seoul", country="KR", language="ko", timezone="Asia/Seoul", mains_hz=60
)
PNG_BYTES = png(160, 120)
JPEG_BYTES = jpeg(160, 120)


class Bedside:
    """An active Wonju-Koriyama consultation and everyone who might send it a picture."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.cid = ""

    async def setup(self) -> None:
        self.tokens, self.cid = await active_consultation(
            self.server,
            [
                ("dw", Role.DOCTOR, "wonju"),
                ("tw", Role.TECHNICIAN, "wonju"),
                ("dk", Role.DOCTOR, "koriyama"),
                ("tk", Role.TECHNICIAN, "koriyama"),
                ("ew", Role.ENGINEER, "wonju"),
                ("ds", Role.DOCTOR, "seoul"),
                ("admin", Role.ADMIN, "seoul"),
            ],
        )

    async def post(
        self, who: str, body: bytes, content_type: str | None, cid: str | None = None
    ) -> tuple[int, dict[str, object]]:
        headers = {} if content_type is None else {"Content-Type": content_type}
        response = await api(
            self.server,
            "POST",
            f"/api/consultations/{cid or self.cid}/snapshots",
            self.tokens[who],
            headers=headers,
            content=body,
        )
        assert response.status_code < 500, response.text
        return response.status_code, dict(response.json())

    async def audit(self, action: str) -> list[AuditEventRow]:
        async with self.server.services.db.session() as session:
            query = select(AuditEventRow).where(AuditEventRow.action == action)
            return list((await session.scalars(query.order_by(AuditEventRow.seq))).all())


@pytest_asyncio.fixture
async def bedside(tmp_path: Path) -> AsyncIterator[Bedside]:
    async with run_server(make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL))) as server:
        b = Bedside(server)
        await b.setup()
        yield b


async def test_snapshots_round_trip_byte_for_byte(bedside: Bedside) -> None:
    taken = []
    for who, image, content_type in [
        ("tw", JPEG_BYTES, "image/jpeg"),
        ("dk", PNG_BYTES, "image/png; charset=binary"),
    ]:
        status, body = await bedside.post(who, image, content_type)
        assert status == 201, body
        assert body["consultation_id"] == bedside.cid
        assert body["taken_by"] == who
        assert body["content_type"] == content_type.split(";")[0]
        assert body["bytes"] == len(image)
        assert body["sha256"] == hashlib.sha256(image).hexdigest()
        taken.append(body)
    assert taken[0]["id"] != taken[1]["id"]

    listed = await api(
        bedside.server, "GET", f"/api/consultations/{bedside.cid}/snapshots", bedside.tokens["dw"]
    )
    assert listed.json() == taken
    for body, image in zip(taken, (JPEG_BYTES, PNG_BYTES), strict=True):
        got = await api(
            bedside.server,
            "GET",
            f"/api/consultations/{bedside.cid}/snapshots/{body['id']}",
            bedside.tokens["admin"],
        )
        assert got.status_code == 200
        assert got.content == image
        assert got.headers["content-type"] == body["content_type"]
        assert got.headers["cache-control"] == "no-store"

    takes = await bedside.audit("snapshot.take")
    assert [(r.actor_name, r.outcome, json.loads(r.detail)["sha256"]) for r in takes] == [
        ("tw", "ok", taken[0]["sha256"]),
        ("dk", "ok", taken[1]["sha256"]),
    ]
    assert json.loads(takes[0].detail)["width"] == 160
    views = await bedside.audit("snapshot.view")
    assert [(r.actor_name, json.loads(r.detail)) for r in views] == [
        ("admin", {"snapshot": b["id"], "sha256": b["sha256"]}) for b in taken
    ]
    assert (await bedside.server.services.audit.verify()).ok


async def test_the_client_takes_lists_and_reads_snapshots(bedside: Bedside) -> None:
    async with SignalingClient(bedside.server.base_url, UserCredentials("tk", PASSWORD)) as client:
        taken = await client.take_snapshot(bedside.cid, PNG_BYTES, "image/png")
        assert (taken.bytes, taken.taken_by) == (len(PNG_BYTES), "tk")
        assert await client.list_snapshots(bedside.cid) == [taken]
        assert await client.snapshot(bedside.cid, taken.id) == ("image/png", PNG_BYTES)
        with pytest.raises(SignalingError) as refused:
            await client.take_snapshot(bedside.cid, PNG_BYTES[:-1], "image/png")
        assert refused.value.code == 422
        assert "truncated PNG" in refused.value.reason


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (PNG_BYTES, None, 415, "not untyped"),
        (PNG_BYTES, "text/plain", 415, "not text/plain"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif", 415, "image/jpeg or image/png"),
        (b"", "image/png", 422, "empty"),
        (b"\x00" * 1000, "image/jpeg", 422, "not a JPEG"),
        (PNG_BYTES[: len(PNG_BYTES) // 2], "image/png", 422, "truncated PNG"),
        (JPEG_BYTES[:-2], "image/jpeg", 422, "end-of-image"),
        (PNG_BYTES, "image/jpeg", 422, "are a PNG"),
        (JPEG_BYTES + b"<script>", "image/jpeg", 422, "end-of-image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_SNAPSHOT_BYTES, "image/png", 413, "at most"),
    ],
    ids=[
        "no-type",
        "text",
        "gif",
        "empty",
        "zeros",
        "half-png",
        "jpeg-no-eoi",
        "png-as-jpeg",
        "jpeg-tail",
        "too-large",
    ],
)
async def test_bad_bodies_are_refused_with_reasons(
    bedside: Bedside, body: bytes, content_type: str | None, status: int, reason: str
) -> None:
    got, answer = await bedside.post("dw", body, content_type)
    assert got == status
    assert reason in str(answer["detail"])
    listed = await api(
        bedside.server, "GET", f"/api/consultations/{bedside.cid}/snapshots", bedside.tokens["dw"]
    )
    assert listed.json() == []
    refusals = await bedside.audit("snapshot.take")
    assert [(r.outcome, json.loads(r.detail)) for r in refusals] == [("denied", {"why": status})]


async def test_who_may_take_and_see_snapshots(bedside: Bedside) -> None:
    status, body = await bedside.post("tw", PNG_BYTES, "image/png")
    assert status == 201
    sid = body["id"]
    assert isinstance(sid, int)
    # Not a clinician of the two sites: an administrator sees it but takes none.
    assert (await bedside.post("admin", PNG_BYTES, "image/png"))[0] == 403
    # Who may not see the consultation is told it does not exist.
    for who in ("ew", "ds"):
        assert (await bedside.post(who, PNG_BYTES, "image/png"))[0] == 404
        for path in ("snapshots", f"snapshots/{sid}"):
            response = await api(
                bedside.server,
                "GET",
                f"/api/consultations/{bedside.cid}/{path}",
                bedside.tokens[who],
            )
            assert response.status_code == 404, (who, path)
    assert (await bedside.post("dw", PNG_BYTES, "image/png", cid="c-missing"))[0] == 404
    # A snapshot is reached only through its own consultation; odd ids are no snapshot.
    other = await request_consultation(bedside.server, bedside.tokens["dw"], "koriyama")
    for path in (f"{other}/snapshots/{sid}", f"{bedside.cid}/snapshots/{sid + 1}"):
        response = await api(
            bedside.server, "GET", f"/api/consultations/{path}", bedside.tokens["dw"]
        )
        assert response.status_code == 404, path
    for odd in ("0", "-1", str(2**63), "x", "1.5"):
        response = await api(
            bedside.server,
            "GET",
            f"/api/consultations/{bedside.cid}/snapshots/{odd}",
            bedside.tokens["dw"],
        )
        assert response.status_code == 422, odd
    # Not active: a request not yet accepted, then the consultation closed.
    status, body = await bedside.post("dw", PNG_BYTES, "image/png", cid=other)
    assert (status, body["detail"]) == (409, "the consultation has not been accepted yet")
    await act(bedside.server, bedside.tokens["dk"], bedside.cid, "close")
    status, body = await bedside.post("dk", PNG_BYTES, "image/png")
    assert (status, body["detail"]) == (409, "the consultation has ended")
    # Kept with the record after the end.
    kept = await api(
        bedside.server,
        "GET",
        f"/api/consultations/{bedside.cid}/snapshots/{sid}",
        bedside.tokens["dk"],
    )
    assert kept.content == PNG_BYTES
    views = await bedside.audit("snapshot.view")
    assert [(r.actor_name, r.outcome) for r in views] == [
        ("ew", "denied"),
        ("ds", "denied"),
        ("dw", "denied"),
        ("dw", "denied"),
        ("dk", "ok"),
    ]


_TRUNCATED = st.integers(0, len(PNG_BYTES)).map(lambda n: PNG_BYTES[:n])
_FLIPPED = st.tuples(st.integers(0, len(PNG_BYTES) - 1), st.integers(1, 255)).map(
    lambda p: PNG_BYTES[: p[0]] + bytes([PNG_BYTES[p[0]] ^ p[1]]) + PNG_BYTES[p[0] + 1 :]
)
_TYPES = st.sampled_from(
    ["image/png", "image/jpeg", "IMAGE/PNG", "image/gif", "text/html", "", "image/png;;;", "a/b/c"]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40)


@pytest.mark.slow
@pytest.mark.cpu
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.binary(max_size=2000) | _TRUNCATED | _FLIPPED | st.just(JPEG_BYTES[:-1]),
    content_type=_TYPES | st.none(),
)
async def test_no_body_makes_the_server_fail(
    bedside: Bedside, body: bytes, content_type: str | None
) -> None:
    status, answer = await bedside.post("dw", body, content_type)
    assert status in (201, 413, 415, 422), (status, answer)
    if status == 201:  # only the whole picture, sent as what it is
        assert body == PNG_BYTES
    else:
        assert answer["detail"]
