"""``telemed export`` as a user runs it, against a live server: FHIR to standard output, HL7
to a file, the patient as the signed-in user may see them, refusals as one line and exit 1."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from signaling.schema import Role
from tests.helpers import PASSWORD, LiveServer
from tests.signaling.sockets import act, api

KEY = "gateway-key-0123456789abcdef-0123456789"


async def _telemed(*args: str, stdin: str = PASSWORD) -> tuple[int, str, str]:
    """The command in a subprocess, awaited: the server runs in this test's event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemed",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TELEMED_LOG_LEVEL": "error"},
    )
    out, err = await proc.communicate(f"{stdin}\n".encode())
    return int(proc.returncode or 0), out.decode(), err.decode()


async def _consultation(server: LiveServer) -> str:
    for name, role, site in [("tw", Role.TECHNICIAN, "wonju"), ("dk", Role.DOCTOR, "koriyama")]:
        await server.add_user(name, role, site)
    tw, dk = await server.token("tw"), await server.token("dk")
    created = await api(
        server,
        "POST",
        "/api/consultations",
        tw,
        json={
            "consulting_site": "koriyama",
            "consent_cross_border": False,
            "patient": {"pseudonym": "P-9", "age": 71, "sex": "male", "name": "山田太郎"},
        },
    )
    cid = str(created.json()["id"])
    await act(server, dk, cid, "accept")
    await server.add_gateway("bed-1", "wonju", KEY)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        token = (await http.post("/api/auth/gateway", json={"name": "bed-1", "key": KEY})).json()
        numerics = [
            {
                "device": "m",
                "code": "spo2",
                "unit": "%",
                "value": 95 + k,
                "time": 1.8e9 + k,
                "mdc": 150456,
                "refid": "MDC_PULS_OXIM_SAT_O2",
                "loinc": "59408-5",
            }
            for k in range(3)
        ]
        await http.post(
            f"/api/consultations/{cid}/record",
            json={"numerics": numerics},
            headers={"Authorization": f"Bearer {token['token']}"},
        )
    return cid


WINDOW = ("--since", "2027-01-15T08:00:00Z", "--until", "2027-01-15T08:00:10Z")


async def test_export_to_stdout_and_to_a_file(server: LiveServer, tmp_path: Path) -> None:
    cid = await _consultation(server)
    base = ("export", cid, "--server", server.base_url, "--password-stdin", *WINDOW)
    code, out, err = await _telemed(*base, "--user", "dk")
    assert code == 0, err
    bundle = json.loads(out)
    values = [
        e["resource"]["valueQuantity"]["value"]
        for e in bundle["entry"]
        if "valueQuantity" in e["resource"] and e["resource"]["code"]["text"] == "spo2"
    ]
    assert values == [95, 96, 97]
    assert "山田太郎" not in out  # the consulting site's doctor, no consent

    target = tmp_path / "record.hl7"
    code, _, err = await _telemed(*base, "--user", "tw", "--format", "hl7", "-o", str(target))
    assert code == 0, err
    text = target.read_bytes().decode()
    assert text.startswith("BHS|") and "\rBTS|3\r" in text
    assert "山田太郎^^^^^^L^I" in text  # the requesting site sees who it is


async def test_refusals_are_one_line_and_exit_1(server: LiveServer) -> None:
    cid = await _consultation(server)
    base = ("export", "--server", server.base_url, "--password-stdin", "--user", "dk")
    code, out, err = await _telemed(*base, "c-unknown")
    assert (code, out) == (1, "")
    assert err.strip() == "telemed: the server refused: no such consultation (404)"
    code, _, err = await _telemed(*base, cid, stdin="wrong password")
    assert code == 1 and "refused" in err and "401" in err
    code, _, err = await _telemed(
        "export", cid, "--server", "http://127.0.0.1:9", "--user", "dk", "--password-stdin"
    )
    assert code == 1 and err.startswith("telemed: cannot reach http://127.0.0.1:9")
