"""The consultation's record exported on a real server: a FHIR Bundle that validates against
the FHIR models, with MDC and LOINC codes and UCUM units, and HL7 v2 ORU^R01 messages that
the gateway's own IHE PCD-01 reader takes back value for value; the patient in both as the
caller may see them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fhir.resources.R4B.bundle import Bundle

from devices.model import Observation
from devices.protocols.hl7_pcd import parse_oru
from signaling.schema import Role
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import act, api

T0 = 1_800_000_000
KEY = "gateway-key-0123456789abcdef-0123456789"
PATIENT = {
    "pseudonym": "WJ-0042",
    "birth_year": 1958,
    "sex": "female",
    "ward": "ICU-east",
    "bed": "bed-7",
    "reason": "chest pain since the morning",
    "allergies": ["penicillin", "latex"],
    "name": "김영희",
    "name_romanised": "Kim Younghee",
}
IDENTIFYING = ["김영희", "Kim Younghee", "ICU-east", "bed-7"]


def _hr(s: int, value: float | None) -> dict[str, Any]:
    return {
        "device": "monitor-1",
        "code": "heart_rate",
        "unit": "/min",
        "value": value,
        "time": T0 + s + 0.5,
        "mdc": 147842,
        "refid": "MDC_ECG_HEART_RATE",
        "loinc": "8867-4",
    }


def _spo2(s: int, value: float) -> dict[str, Any]:
    return {
        "device": "oximeter-1",
        "code": "spo2",
        "unit": "%",
        "value": value,
        "time": T0 + s + 0.25,
        "mdc": 150456,
        "refid": "MDC_PULS_OXIM_SAT_O2",
        "loinc": "59408-5",
    }


RECORD = {
    "numerics": [_hr(s, None if s == 3 else 70.0 + s) for s in range(6)]
    + [_spo2(s, 97.0) for s in range(0, 6, 2)],
    "alarms": [
        {
            "id": "limit-spo2-1",
            "device": "oximeter-1",
            "code": "spo2",
            "condition": "spo2_low",
            "text": "SpO2 low",
            "priority": "medium",
            "kind": "physiological",
            "source": "limit",
            "state": "ended",
            "started": T0 + 1.0,
            "ended": T0 + 4.0,
            "value": 86.0,
            "limit": 90.0,
            "unit": "%",
            "acknowledged_by": "dk",
            "acknowledged_at": T0 + 2.0,
        }
    ],
}
WINDOW = "since=2027-01-15T08:00:00Z&until=2027-01-15T08:00:10Z"


class Record:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tokens: dict[str, str] = {}
        self.cid = ""

    async def setup(self, consent: bool) -> None:
        for name, role, site in [
            ("tw", Role.TECHNICIAN, "wonju"),
            ("dk", Role.DOCTOR, "koriyama"),
        ]:
            await self.server.add_user(name, role, site)
            self.tokens[name] = await self.server.token(name)
        created = await api(
            self.server,
            "POST",
            "/api/consultations",
            self.tokens["tw"],
            json={
                "consulting_site": "koriyama",
                "consent_cross_border": consent,
                "patient": PATIENT,
            },
        )
        assert created.status_code == 201, created.text
        self.cid = created.json()["id"]
        await act(self.server, self.tokens["dk"], self.cid, "accept")
        await self.server.add_gateway("bed-1", "wonju", KEY)
        async with httpx.AsyncClient(base_url=self.server.base_url) as http:
            token = await http.post("/api/auth/gateway", json={"name": "bed-1", "key": KEY})
            uploaded = await http.post(
                f"/api/consultations/{self.cid}/record",
                json=RECORD,
                headers={"Authorization": f"Bearer {token.json()['token']}"},
            )
        assert uploaded.json() == {"numerics": 9, "alarms": 1, "limits": 0}

    async def export(self, who: str, query: str) -> httpx.Response:
        response = await api(
            self.server, "GET", f"/api/consultations/{self.cid}/export?{query}", self.tokens[who]
        )
        assert response.status_code < 500, response.text
        return response


@pytest_asyncio.fixture
async def record(tmp_path: Path) -> AsyncIterator[Record]:
    async with run_server(make_config(tmp_path)) as server:
        r = Record(server)
        await r.setup(consent=False)
        yield r


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


async def test_fhir_bundle_validates_with_codes_units_and_alarms(record: Record) -> None:
    response = await record.export("dk", f"format=fhir&{WINDOW}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    Bundle.model_validate_json(response.content)  # validates against the FHIR models
    bundle = response.json()
    assert bundle["type"] == "collection"
    urls = {e["fullUrl"] for e in bundle["entry"]}
    observations = _resources(bundle, "Observation")
    vitals = [o for o in observations if "vital-signs" in json.dumps(o.get("category"))]
    assert len(vitals) == 9  # one per stored value
    hr = [o for o in vitals if o["code"]["text"] == "heart_rate"]
    assert hr[0]["code"]["coding"] == [
        {"system": "urn:iso:std:iso:11073:10101", "code": "147842"},
        {"system": "http://loinc.org", "code": "8867-4"},
    ]
    assert hr[0]["valueQuantity"] == {
        "value": 70.0,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert hr[0]["effectiveDateTime"] == "2027-01-15T08:00:00Z"
    assert hr[3]["dataAbsentReason"]["coding"][0]["code"] == "error"
    assert "valueQuantity" not in hr[3]
    spo2 = [o for o in vitals if o["code"]["text"] == "spo2"]
    assert [o["valueQuantity"]["code"] for o in spo2] == ["%", "%", "%"]
    for o in observations:  # every reference resolves inside the bundle
        for ref in (o.get("subject"), o.get("device")):
            assert ref is None or ref["reference"] in urls
    [alarm] = [o for o in observations if o["code"].get("text") == "SpO2 low"]
    assert alarm["effectivePeriod"] == {
        "start": "2027-01-15T08:00:01Z",
        "end": "2027-01-15T08:00:04Z",
    }
    assert {c["code"]["text"]: c.get("valueString") for c in alarm["component"]}["priority"] == (
        "medium"
    )
    assert alarm["note"][0]["authorString"] == "dk"
    assert {a["code"]["text"] for a in _resources(bundle, "AllergyIntolerance")} == {
        "penicillin",
        "latex",
    }


async def test_the_patient_in_the_exports_is_as_the_caller_may_see_them(record: Record) -> None:
    consulting = (await record.export("dk", f"format=fhir&{WINDOW}")).json()
    [patient] = _resources(consulting, "Patient")
    assert patient["identifier"][0]["value"] == "WJ-0042"
    assert patient["gender"] == "female"
    assert "name" not in patient and "birthDate" not in patient
    [age] = [o for o in _resources(consulting, "Observation") if o["code"]["text"] == "age"]
    assert age["valueRange"]["low"]["value"] == 60 and age["valueRange"]["high"]["value"] == 69
    hl7_text = (await record.export("dk", f"format=hl7&{WINDOW}")).text
    for text in (json.dumps(consulting, ensure_ascii=False), hl7_text):
        for value in [*IDENTIFYING, "1958"]:
            assert value not in text

    requesting = (await record.export("tw", f"format=fhir&{WINDOW}")).json()
    [patient] = _resources(requesting, "Patient")
    assert [n["text"] for n in patient["name"]] == ["김영희", "Kim Younghee"]
    assert patient["birthDate"] == "1958"
    hl7_text = (await record.export("tw", f"format=hl7&{WINDOW}")).text
    pid = next(line for line in hl7_text.split("\r") if line.startswith("PID"))
    assert pid == "PID|1||WJ-0042^^^wonju^PT||Kim Younghee^^^^^^L^A~김영희^^^^^^L^I||1958|F"
    pv1 = next(line for line in hl7_text.split("\r") if line.startswith("PV1"))
    assert pv1 == "PV1|1|I|ICU-east^^bed-7"


def _messages(batch: str) -> list[str]:
    lines = [line for line in batch.split("\r") if line]
    assert lines[0].startswith("BHS|") and lines[-1].startswith("BTS|")
    messages: list[list[str]] = []
    for line in lines[1:-1]:
        if line.startswith("MSH|"):
            messages.append([])
        messages[-1].append(line)
    assert lines[-1] == f"BTS|{len(messages)}"
    return ["\r".join(m) + "\r" for m in messages]


async def test_hl7_is_read_back_by_the_pcd_01_reader(record: Record) -> None:
    response = await record.export("dk", f"format=hl7&{WINDOW}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("x-application/hl7-v2+er7")
    messages = _messages(response.text)
    got = []
    for text in messages:
        parsed = parse_oru(text, "default", float(T0))
        got += [
            (e.code.key, e.value, e.device_id, e.device_time)
            for e in parsed.events
            if isinstance(e, Observation)
        ]
    expected = [
        (n["code"], n["value"], n["device"], float(int(n["time"])))
        for n in sorted(RECORD["numerics"], key=lambda n: (int(n["time"]), n["device"]))
    ]
    assert sorted(got, key=lambda g: (g[3] or 0, g[2])) == expected
    alarm = [m for m in messages if "spo2_low" in m]
    [text] = alarm
    obx = [line for line in text.split("\r") if line.startswith("OBX")]
    assert obx[0].split("|")[8] == "L~PM~SP"  # below the limit, medium, physiological
    assert obx[0].split("|")[11] == "F"
    assert [line.split("|")[5] for line in obx[2:]] == ["end", "inactive"]


async def test_a_longer_step_exports_means_and_a_too_large_export_is_refused(
    record: Record,
) -> None:
    response = await record.export("dk", f"format=fhir&step=5&{WINDOW}")
    bundle = response.json()
    hr = [o for o in _resources(bundle, "Observation") if o["code"]["text"] == "heart_rate"]
    assert [o["valueQuantity"]["value"] for o in hr] == [71.75, 75.0]  # mean(70, 71, 72, 74) | 75
    assert hr[0]["effectivePeriod"]["end"] == "2027-01-15T08:00:05Z"
    refused = await record.export(
        "dk", "format=hl7&since=2027-01-01T00:00:00Z&until=2027-03-01T00:00:00Z"
    )
    assert refused.status_code == 422
    assert "longer step" in refused.json()["detail"]
    bad = await record.export("dk", "format=pdf")
    assert bad.status_code == 422
