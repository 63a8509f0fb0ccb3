"""The patient of a consultation on a real server: named by the requesting site, seen whole
there; without cross-border consent nothing identifying reaches anyone else, in any HTTP
response (every GET route of the API is walked) or WebSocket message (the lobby's pushes,
joined, chat, the end); with consent the consulting site sees who it is."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection

from signaling.config import DEFAULT_SITES, SiteConfig
from signaling.schema import IDENTIFYING_FIELDS, Role
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.pictures import png
from tests.signaling.sockets import api, connect, recv

SEOUL = SiteConfig(
    code="seoul", name="Seoul", country="KR", language="ko", timezone="Asia/Seoul", mains_hz=60
)
KEY = "gateway-key-0123456789abcdef-0123456789"
PATIENT = {
    "pseudonym": "WJ-0042",
    "birth_year": 1958,
    "sex": "female",
    "ward": "ICU-east",
    "bed": "bed-7",
    "reason": "chest pain since the morning",
    "allergies": ["penicillin"],
    "name": "김영희",
    "name_romanised": "Kim Younghee",
}
#: Values that would identify the patient: none may appear in what crosses the border.
IDENTIFYING = ["김영희", "Kim Younghee", "ICU-east", "bed-7"]
SHARED = {"pseudonym", "age_band", "sex", "reason", "allergies", "identified"}


def assert_deidentified(text: str) -> None:
    """Nothing identifying in ``text`` (a response body or a message)."""
    for value in IDENTIFYING:
        assert value not in text, (value, text[:400])
    try:
        document = json.loads(text)
    except ValueError:
        return
    for patient in _patients(document):
        assert set(patient) == SHARED, patient
        assert patient["identified"] is False
        assert (patient["pseudonym"], patient["age_band"]) == ("WJ-0042", "60-69")


def _patients(document: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        for key, value in document.items():
            # A FHIR resource's "patient" is a reference (checked by the text search).
            if key == "patient" and isinstance(value, dict) and "reference" not in value:
                found.append(value)
            found += _patients(value)
    elif isinstance(document, list):
        for item in document:
            found += _patients(item)
    return found


class Sites:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}

    async def setup(self) -> None:
        for name, role, site in [
            ("tw", Role.TECHNICIAN, "wonju"),
            ("dk", Role.DOCTOR, "koriyama"),
            ("tk", Role.TECHNICIAN, "koriyama"),
            ("admin", Role.ADMIN, "seoul"),
        ]:
            await self.server.add_user(name, role, site)
            self.tokens[name] = await self.server.token(name)
        await self.server.add_gateway("bed-1", "wonju", KEY)
        async with httpx.AsyncClient(base_url=self.server.base_url) as http:
            answer = await http.post("/api/auth/gateway", json={"name": "bed-1", "key": KEY})
        self.tokens["bed-1"] = str(answer.json()["token"])

    async def request(self, consent: bool, patient: object = PATIENT) -> httpx.Response:
        return await api(
            self.server,
            "POST",
            "/api/consultations",
            self.tokens["tw"],
            json={
                "consulting_site": "koriyama",
                "consent_cross_border": consent,
                "reason": "ECG",
                "patient": patient,
            },
        )

    async def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await api(self.server, method, path, self.tokens[who], **kwargs)
        assert response.status_code < 500, response.text
        return response


@pytest_asyncio.fixture
async def sites(tmp_path: Path) -> AsyncIterator[Sites]:
    async with run_server(
        make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL), api_docs=True)
    ) as server:
        s = Sites(server)
        await s.setup()
        yield s


async def _drain(ws: ClientConnection) -> list[str]:
    """Every message queued for ``ws`` (up to the pong of a ping sent now)."""
    await ws.send(json.dumps({"type": "ping", "nonce": 7}))
    texts: list[str] = []
    while True:
        message = await recv(ws)
        if message == {"type": "pong", "nonce": 7}:
            return texts
        texts.append(json.dumps(message, ensure_ascii=False))


async def test_nothing_identifying_crosses_without_consent(sites: Sites) -> None:
    # The consulting site's clinicians are in their lobby before the request is made.
    lobby = {who: (await connect(sites.server, sites.tokens[who]))[0] for who in ("dk", "tk")}
    try:
        created = await sites.request(consent=False)
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        # The requesting site sees the patient whole.
        mine = created.json()["patient"]
        assert mine == {
            **PATIENT,
            "age": mine["age"],
            "age_band": mine["age_band"],
            "identified": True,
        }
        assert 60 <= mine["age"] <= 75

        accepted = await sites.call("dk", "POST", f"/api/consultations/{cid}/accept")
        assert_deidentified(accepted.text)
        ws = lobby["dk"]
        await ws.send(json.dumps({"type": "join", "consultation_id": cid}))
        await ws.send(json.dumps({"type": "chat", "text": "hello"}))
        # The record gets something of everything: vitals, an alarm, a snapshot.
        await sites.call(
            "bed-1",
            "POST",
            f"/api/consultations/{cid}/record",
            json={
                "numerics": [
                    {
                        "device": "m",
                        "code": "spo2",
                        "unit": "%",
                        "value": 97,
                        "time": 1_800_000_000.5,
                        "mdc": 150456,
                        "loinc": "59408-5",
                    }
                ],
                "alarms": [
                    {
                        "id": "a",
                        "device": "m",
                        "condition": "probe_off",
                        "priority": "low",
                        "kind": "technical",
                        "source": "device",
                        "state": "active",
                        "started": 1_800_000_000.0,
                    }
                ],
            },
        )
        snapshot = await sites.call(
            "dk",
            "POST",
            f"/api/consultations/{cid}/snapshots",
            content=png(32, 24),
            headers={"Content-Type": "image/png"},
        )
        assert snapshot.status_code == 201

        # Every GET route of the API, as each of those who must not see who it is.
        paths = await _get_paths(sites)
        assert any("/export" in p for p in paths) and any("/trends" in p for p in paths)
        for who in ("dk", "tk", "admin"):
            for path in paths:
                filled = path.replace("{consultation_id}", cid).replace(
                    "{snapshot_id}", str(snapshot.json()["id"])
                )
                for query in _queries(filled):
                    response = await sites.call(who, "GET", filled + query)
                    if response.headers.get("content-type", "").startswith("image/"):
                        continue
                    assert_deidentified(response.text)

        await sites.call("dk", "POST", f"/api/consultations/{cid}/close")
        for who, ws in lobby.items():
            texts = await _drain(ws)
            kinds = [json.loads(t)["type"] for t in texts]
            assert kinds.count("consultation") == 3, (who, kinds)  # created, accepted, closed
            if who == "dk":
                assert {"joined", "chat", "consultation-state"} <= set(kinds), kinds
            for text in texts:
                assert_deidentified(text)
    finally:
        for ws in lobby.values():
            await ws.close()


async def _get_paths(sites: Sites) -> list[str]:
    """Every GET route of the API, from the server's own OpenAPI schema."""
    async with httpx.AsyncClient(base_url=sites.server.base_url) as http:
        paths: dict[str, Any] = (await http.get("/openapi.json")).json()["paths"]
    return [p for p, ops in paths.items() if "get" in ops and p.startswith("/api")]


def _queries(path: str) -> list[str]:
    if path.endswith("/export"):
        window = "&since=2027-01-15T08:00:00Z&until=2027-01-15T08:01:00Z"
        return [f"?format=fhir{window}", f"?format=hl7{window}"]
    if path.endswith("/trends"):
        return ["?since=2027-01-15T08:00:00Z&until=2027-01-15T08:01:00Z"]
    return [""]


async def test_with_consent_the_consulting_site_sees_who_it_is(sites: Sites) -> None:
    created = await sites.request(consent=True)
    cid = created.json()["id"]
    seen = (await sites.call("dk", "GET", f"/api/consultations/{cid}")).json()["patient"]
    assert (seen["identified"], seen["name"], seen["name_romanised"], seen["bed"]) == (
        True,
        "김영희",
        "Kim Younghee",
        "bed-7",
    )
    # The consent is to the data crossing the border: it holds for every recipient.
    admin = (await sites.call("admin", "GET", f"/api/consultations/{cid}")).json()["patient"]
    assert admin["identified"] is True


async def test_a_request_without_a_patient_has_none(sites: Sites) -> None:
    created = await sites.request(consent=False, patient=None)
    assert created.status_code == 201
    assert created.json()["patient"] is None


@pytest.mark.parametrize(
    ("patient", "reason"),
    [
        ({**PATIENT, "age": 67}, "not both"),
        ({**PATIENT, "birth_year": 2099}, "in the future"),
        ({**PATIENT, "pseudonym": ""}, "pseudonym"),
        ({**PATIENT, "pseudonym": "has spaces"}, "pseudonym"),
        ({**PATIENT, "name": "a\x00b"}, "name"),
        ({**PATIENT, "name_romanised": "x" * 129}, "name_romanised"),
        ({**PATIENT, "sex": "f"}, "sex"),
        ({**PATIENT, "allergies": ["x"] * 33}, "allergies"),
        ({**PATIENT, "hospital_number": "123"}, "hospital_number"),
        ({**PATIENT, "age": -1, "birth_year": None}, "age"),
    ],
)
async def test_bad_patients_are_refused_with_reasons(
    sites: Sites, patient: dict[str, Any], reason: str
) -> None:
    response = await sites.request(consent=False, patient=patient)
    assert response.status_code == 422, response.text
    assert reason in json.dumps(response.json()["detail"]), response.text


def test_the_identifying_fields_are_those_withheld() -> None:
    assert set(IDENTIFYING_FIELDS) == {"name", "name_romanised", "birth_year", "age", "ward", "bed"}
