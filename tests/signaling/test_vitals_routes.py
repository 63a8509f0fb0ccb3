"""The bedside's record over HTTP on a real server: a gateway of the consultation's sites
uploads, a replay changes nothing, everyone else is refused with a reason, the room reads
trends and alarms back, refusals and views are audited; no input makes the server fail."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from signaling.config import DEFAULT_SITES, SiteConfig
from signaling.schema import Role
from signaling.storage.models import AuditEventRow
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import act, active_consultation, api, request_consultation

SEOUL = SiteConfig(
    code="seoul", name="Seoul", country="KR", language="ko", timezone="Asia/Seoul", mains_hz=60
)
T0 = 1_800_000_000
GATEWAY_KEY = "gateway-key-0123456789abcdef-0123456789"


class Room:
    """An active Wonju-Koriyama consultation, its gateway and everyone else."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.cid = ""

    async def setup(self) -> None:
        self.tokens, self.cid = await active_consultation(
            self.server,
            [
                ("tw", Role.TECHNICIAN, "wonju"),
                ("dk", Role.DOCTOR, "koriyama"),
                ("ds", Role.DOCTOR, "seoul"),
                ("ew", Role.ENGINEER, "wonju"),
            ],
        )
        for name, site in [("gw-wonju", "wonju"), ("gw-seoul", "seoul")]:
            await self.server.add_gateway(name, site, GATEWAY_KEY)
            self.tokens[name] = await self._gateway_token(name)

    async def _gateway_token(self, name: str) -> str:
        async with httpx.AsyncClient(base_url=self.server.base_url) as http:
            response = await http.post("/api/auth/gateway", json={"name": name, "key": GATEWAY_KEY})
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    async def upload(
        self, who: str, body: object, cid: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        response = await api(
            self.server,
            "POST",
            f"/api/consultations/{cid or self.cid}/record",
            self.tokens[who],
            content=body if isinstance(body, bytes) else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code < 500, response.text
        return response.status_code, dict(response.json())

    async def trends(self, who: str, query: str) -> tuple[int, dict[str, Any]]:
        response = await api(
            self.server, "GET", f"/api/consultations/{self.cid}/trends?{query}", self.tokens[who]
        )
        assert response.status_code < 500, response.text
        return response.status_code, dict(response.json())

    async def audit(self, action: str) -> list[AuditEventRow]:
        async with self.server.services.db.session() as session:
            query = select(AuditEventRow).where(AuditEventRow.action == action)
            return list((await session.scalars(query.order_by(AuditEventRow.seq))).all())


@pytest_asyncio.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    async with run_server(make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL))) as server:
        r = Room(server)
        await r.setup()
        yield r


def _numerics(code: str, seconds: range, value: float, unit: str = "/min") -> list[dict[str, Any]]:
    return [
        {
            "device": "monitor-1",
            "code": code,
            "unit": unit,
            "value": value,
            "time": T0 + s + 0.25,
            "mdc": 147842,
            "refid": "MDC_ECG_HEART_RATE",
            "loinc": "8867-4",
            "some_future_field": "ignored",
        }
        for s in seconds
    ]


ALARM = {
    "id": "limit-spo2-1",
    "device": "monitor-1",
    "code": "spo2",
    "condition": "spo2_low",
    "priority": "medium",
    "kind": "physiological",
    "source": "limit",
    "state": "active",
    "started": T0 + 30.0,
    "value": 86.0,
    "limit": 90.0,
    "unit": "%",
}


async def test_a_gateway_uploads_and_the_room_reads_trends(room: Room) -> None:
    body = {"numerics": _numerics("heart_rate", range(60), 72.0), "alarms": [ALARM]}
    assert await room.upload("gw-wonju", body) == (200, {"numerics": 60, "alarms": 1, "limits": 0})
    assert await room.upload("gw-wonju", body) == (200, {"numerics": 0, "alarms": 0, "limits": 0})

    window = "since=2027-01-15T08:00:00Z&until=2027-01-15T08:01:00Z"  # T0, T0 + 60
    status, trends = await room.trends("dk", f"codes=heart_rate,spo2&{window}&step=10")
    assert status == 200, trends
    assert (trends["since"], trends["step"]) == (T0, 10)
    [series] = trends["series"]
    assert series["code"] == "heart_rate"
    assert (series["mdc"], series["loinc"], series["unit"]) == (147842, "8867-4", "/min")
    assert series["points"] == [[T0 + 10 * k, 72.0] for k in range(6)]
    [alarm] = trends["alarms"]
    assert (alarm["id"], alarm["condition"], alarm["state"]) == (
        "limit-spo2-1",
        "spo2_low",
        "active",
    )

    # Both sites' clinicians may read; the audit says who read which window.
    assert (await room.trends("tw", window))[0] == 200
    views = await room.audit("vitals.trends")
    assert [(r.actor_name, json.loads(r.detail)["since"]) for r in views] == [
        ("dk", T0),
        ("tw", T0),
    ]
    records = await room.audit("vitals.record")
    assert len(records) == 1  # the replay stored nothing and is not a record event
    assert json.loads(records[0].detail)["numerics_stored"] == 60
    assert (await room.server.services.audit.verify()).ok


async def test_limits_reported_by_the_gateway_are_audited_once(room: Room) -> None:
    report = {
        "limits": [{"code": "spo2", "low": 88.0, "high": None, "delay_s": 10.0, "unit": "%"}],
        "changed_by": "dk",
        "time": T0 + 40.0,
    }
    for _ in range(2):
        status, _body = await room.upload("gw-wonju", {"limits": [report]})
        assert status == 200
    [applied] = await room.audit("alarm.limits.applied")
    detail = json.loads(applied.detail)
    assert json.loads(detail["limits"]) == [
        {"code": "spo2", "low": 88.0, "delay_s": 10.0, "unit": "%"}
    ]
    assert (detail["changed_by"], applied.actor_name) == ("dk", "gw-wonju")


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("dk", 403, "only a gateway"),
        ("tw", 403, "only a gateway"),
        ("gw-seoul", 404, "no such consultation"),
        ("ew", 404, "no such consultation"),
    ],
)
async def test_only_the_sites_gateways_record(
    room: Room, who: str, status: int, reason: str
) -> None:
    got, body = await room.upload(who, {"numerics": _numerics("heart_rate", range(2), 70.0)})
    assert (got, reason in body["detail"]) == (status, True)
    denied = await room.audit("vitals.record")
    assert [(r.actor_name, r.outcome) for r in denied] == [(who, "denied")]


async def test_recording_follows_the_consultations_state(room: Room) -> None:
    pending = await request_consultation(room.server, room.tokens["tw"], "koriyama")
    status, body = await room.upload("gw-wonju", {"numerics": []}, cid=pending)
    assert (status, body["detail"]) == (409, "the consultation is requested")
    # Closed: a gateway still backfills what it kept while the server was away.
    await act(room.server, room.tokens["dk"], room.cid, "close")
    status, body = await room.upload(
        "gw-wonju", {"numerics": _numerics("heart_rate", range(3), 70.0)}
    )
    assert (status, body["numerics"]) == (200, 3)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "Invalid JSON"),
        (b"[]", "Input should be an object"),
        ({"numerics": [{"device": "m", "code": "hr", "value": 1}]}, "numerics.0.time"),
        ({"numerics": _numerics("heart rate", range(1), 1.0)}, "numerics.0.code"),
        ({"numerics": [{**_numerics("hr", range(1), 1.0)[0], "time": 1.0}]}, "greater than"),
        ({"numerics": [{**_numerics("hr", range(1), 1.0)[0], "device": "a\x00"}]}, "device"),
        ({"alarms": [{**ALARM, "priority": "urgent"}]}, "alarms.0.priority"),
        ({"numerics": _numerics("hr", range(5001), 1.0)}, "at most 5000"),
    ],
    ids=["empty", "array", "no-time", "bad-code", "1970", "nul", "priority", "too-many"],
)
async def test_bad_uploads_are_refused_with_reasons(room: Room, body: Any, reason: str) -> None:
    status, answer = await room.upload("gw-wonju", body)
    assert status == 422, answer
    assert reason in answer["detail"], answer


async def test_an_upload_past_the_size_limit_is_refused(room: Room) -> None:
    limit = room.server.config.record_max_bytes
    status, answer = await room.upload("gw-wonju", b"{" + b" " * limit + b"}")
    assert (status, answer["detail"]) == (413, f"a record upload may have at most {limit} bytes")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("since=2027-01-15T09:00:00Z&until=2027-01-15T08:00:00Z", "before until"),
        ("since=2027-01-01T00:00:00Z&until=2027-02-01T00:00:00Z&step=1", "at least 134 s"),
        ("codes=heart%20rate", "codes"),
        ("step=0", "greater than or equal to 1"),
        ("since=yesterday", "datetime"),
    ],
)
async def test_bad_trend_queries_are_refused(room: Room, query: str, reason: str) -> None:
    status, answer = await room.trends("dk", query)
    assert status == 422, answer
    assert reason in json.dumps(answer["detail"]), answer


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
_numeric_like = st.fixed_dictionaries(
    {},
    optional={
        "device": st.text(max_size=70),
        "code": st.text(max_size=70),
        "unit": st.text(max_size=40),
        "value": st.none() | st.floats() | st.integers() | st.text(max_size=5),
        "time": st.floats() | st.integers(min_value=-(2**70), max_value=2**70),
        "device_time": st.floats() | st.none(),
        "derived": st.booleans() | st.integers(),
        "quality": st.lists(st.text(max_size=40), max_size=20),
        "mdc": st.integers(min_value=-(2**40), max_value=2**40),
    },
)


@pytest.mark.slow
@pytest.mark.cpu
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=_json
    | st.fixed_dictionaries(
        {"numerics": st.lists(_numeric_like, max_size=5)},
        optional={"alarms": st.lists(st.dictionaries(st.text(max_size=12), _json), max_size=3)},
    )
)
async def test_no_upload_makes_the_server_fail(room: Room, body: Any) -> None:
    status, _answer = await room.upload("gw-wonju", json.dumps(body, allow_nan=True).encode())
    assert status in (200, 422)
