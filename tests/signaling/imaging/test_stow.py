"""STOW-RS on a real server: instances stored byte for byte with their consultation, indexed,
audited and announced to the room; each bad part refused with its reason and nothing of it
kept; a broken body refused whole; the duplicate and consent rules; who may send."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest
import pytest_asyncio

from signaling.config import DEFAULT_SITES
from signaling.imaging.dicom import (
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH_SOP_CLASS,
    DUPLICATE_SOP_INSTANCE,
    NOT_AUTHORISED,
)
from signaling.imaging.stow import content_digest
from signaling.schema import Role
from tests.fuzzing import budget
from tests.helpers import eventually, make_config, run_server
from tests.signaling.imaging.dicoms import ct, pydicom_file, renamed, uids, ultrasound
from tests.signaling.imaging.room import BOUNDARY, RELATED, SEOUL, ImagingRoom, part, related
from tests.signaling.sockets import (
    active_consultation,
    api,
    connect,
    join,
    recv,
    request_consultation,
)


@pytest_asyncio.fixture
async def room(tmp_path: Path) -> AsyncIterator[ImagingRoom]:
    config = make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL), imaging_max_bytes=1024 * 1024)
    async with run_server(config) as server, ImagingRoom(server) as r:
        await r.setup()
        yield r


def _failures(body: dict[str, object]) -> list[tuple[int, str]]:
    failed = body.get("00081198", {"Value": []})
    assert isinstance(failed, dict)
    return [
        (item["00081197"]["Value"][0], item["00000902"]["Value"][0]) for item in failed["Value"]
    ]


def _referenced(body: dict[str, object]) -> list[str]:
    referenced = body.get("00081199", {"Value": []})
    assert isinstance(referenced, dict)
    return [item["00081155"]["Value"][0] for item in referenced["Value"]]


async def test_an_instance_is_stored_byte_for_byte_indexed_audited_and_announced(
    room: ImagingRoom,
) -> None:
    doctor, _ = await connect(room.server, room.tokens["dk"])
    await join(doctor, room.cid)
    data = ultrasound(frames=3)
    study, series, sop = uids(data)

    response = await room.stow(related([part(data)]))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    assert _referenced(body) == [sop]
    item = body["00081199"]["Value"][0]
    assert item["00081190"]["Value"][0].endswith(
        f"/api/consultations/{room.cid}/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    )
    digest = hashlib.sha256(data).hexdigest()
    assert response.headers["x-telemed-stored-sha256"] == f"{sop}={digest}"
    # The file, byte for byte, where its UIDs say.
    assert room.files() == [f"{room.cid}/{study}/{series}/{sop}.dcm"]
    stored = room.server.config.data_dir / "imaging" / room.files()[0]  # type: ignore[operator]
    assert stored.read_bytes() == data
    [row] = await room.indexed()
    assert (row.consultation_id, row.study_instance_uid, row.series_instance_uid) == (
        room.cid,
        study,
        series,
    )
    assert (row.modality, row.frames, row.sha256, row.deidentified, row.size) == (
        "US",
        3,
        digest,
        True,
        len(data),
    )
    assert (row.sender_kind, row.sender_name, row.study_date) == ("gateway", "gw", "20261201")
    audited = await room.audit("imaging.stored")
    assert audited == [
        (
            "gw",
            "ok",
            {
                "sop": sop,
                "sop_class": "1.2.840.10008.5.1.4.1.1.3.1",
                "study": study,
                "series": series,
                "sha256": digest,
                "deidentified": True,
                "bytes": len(data),
                "again": False,
            },
        )
    ]
    event = await recv(doctor)
    assert event == {
        "type": "imaging.stored",
        "consultation_id": room.cid,
        "study": study,
        "series": series,
        "sop": sop,
        "modality": "US",
        "frames": 3,
    }
    await doctor.close()
    assert (await room.server.services.audit.verify()).ok


async def test_each_bad_part_fails_alone_with_its_reason(room: ImagingRoom) -> None:
    good = ct()
    bad_digest = ct()
    identified = ct(deidentified=False)
    no_flag = ct(deidentified=None)
    truncated = renamed(pydicom_file("MR_truncated.dcm"))
    parts = [
        part(good),
        part(bad_digest, digest=f"sha-256=:{'A' * 43}=:"),
        part(b"this is not DICOM at all" * 10),
        part(good[:200]),
        part(good, content_type="text/plain"),
        part(identified),
        part(no_flag),
        part(truncated),
        part(ct(), digest="sha-256=:not base64!:"),
    ]
    response = await room.stow(related(parts))

    assert response.status_code == 202, response.text
    body = response.json()
    assert _referenced(body) == [uids(good)[2]]
    failures = _failures(body)
    assert [code for code, _ in failures] == [
        CANNOT_UNDERSTAND,
        CANNOT_UNDERSTAND,
        DOES_NOT_MATCH_SOP_CLASS,  # the first 200 bytes read as a header without UIDs
        CANNOT_UNDERSTAND,
        NOT_AUTHORISED,
        NOT_AUTHORISED,
        CANNOT_UNDERSTAND,
        CANNOT_UNDERSTAND,
    ]
    reasons = [reason for _, reason in failures]
    assert "Content-Digest" in reasons[0]
    assert "pydicom" in reasons[1] and "UID" in reasons[2]
    assert "text/plain" in reasons[3]
    assert "consent" in reasons[4] and "consent" in reasons[5]
    assert "truncated" in reasons[6]
    assert "Content-Digest" in reasons[7]
    # Failed items name the instance when the file could be read.
    failed = body["00081198"]["Value"]
    assert failed[4]["00081155"]["Value"] == [uids(identified)[2]]
    # Nothing of the refused parts is kept: one file, one row.
    assert len(room.files()) == 1 and len(await room.indexed()) == 1
    refused = [d for _, outcome, d in await room.audit("imaging.stored") if outcome == "denied"]
    assert [d["failure"] for d in refused] == [f"0x{c:04X}" for c, _ in failures]


async def test_a_body_whose_framing_breaks_is_refused_whole(room: ImagingRoom) -> None:
    whole = related([part(ct()), part(ct())])
    cut = whole[: len(whole) - 40]  # inside the last part: no closing boundary
    cases = [
        (cut, RELATED, 400, "truncated"),
        (whole[:-4], RELATED, 400, "truncated"),  # the close delimiter cut short
        (b"garbage" + whole, RELATED.replace(BOUNDARY, "other-boundary"), 400, "boundary"),
        (whole, "multipart/related; boundary=" + BOUNDARY, 415, "type="),
        (whole, 'multipart/related; type="application/json"; boundary=x', 415, "type="),
        (whole, "application/dicom", 415, "multipart/related"),
        (whole, 'multipart/related; type="application/dicom"', 415, "boundary"),
        (b"--" + BOUNDARY.encode() + b"--\r\n", RELATED, 400, "no parts"),
    ]
    for body, content_type, status, words in cases:
        response = await room.stow(body, content_type=content_type)
        assert response.status_code == status, (content_type, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert words in response.json()["detail"], response.json()
    assert room.files() == [] and await room.indexed() == []


async def test_bounds_on_parts_headers_and_size(tmp_path: Path) -> None:
    config = make_config(tmp_path, imaging_max_bytes=64 * 1024, imaging_max_parts=2)
    async with run_server(config) as server, ImagingRoom(server) as room:
        await _minimal(room)
        small = ultrasound(frames=1, rows=8, columns=8)
        too_many = related([part(small), part(small), part(small)])
        response = await room.stow(too_many, who="tw")
        assert response.status_code == 400 and "more than 2 parts" in response.json()["detail"]
        huge_header = b"X-Padding: " + b"a" * 9000 + b"\r\n" + part(small)
        response = await room.stow(related([huge_header]), who="tw")
        assert response.status_code == 400 and "exceed" in response.json()["detail"]
        response = await room.stow(
            related([part(ultrasound(frames=40, rows=64, columns=64))]), who="tw"
        )
        assert response.status_code == 413
        assert room.files() == [] and await room.indexed() == []


async def _minimal(room: ImagingRoom) -> None:
    room.tokens, room.cid = await active_consultation(
        room.server, [("tw", Role.TECHNICIAN, "wonju"), ("dk", Role.DOCTOR, "koriyama")]
    )


async def test_the_same_instance_twice_is_stored_once_and_other_bytes_are_a_duplicate(
    room: ImagingRoom,
) -> None:
    data = ultrasound(frames=2)
    first = await room.stow(related([part(data)]))
    again = await room.stow(related([part(data)]))
    assert first.status_code == again.status_code == 200
    assert first.headers["x-telemed-stored-sha256"] == again.headers["x-telemed-stored-sha256"]
    # The same SOP Instance UID with other bytes: refused, the first kept.
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = bytes(len(ds.PixelData))
    other = io.BytesIO()
    ds.save_as(other, enforce_file_format=True)
    response = await room.stow(related([part(other.getvalue())]))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    [(code, reason)] = _failures(response.json())
    assert code == DUPLICATE_SOP_INSTANCE and "first is kept" in reason
    [row] = await room.indexed()
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    path = room.server.config.data_dir / "imaging" / room.files()[0]  # type: ignore[operator]
    assert path.read_bytes() == data
    # Indexed but its file never named (the server stopped between the two): the same
    # bytes again complete it.
    path.unlink()
    assert (await room.stow(related([part(data)]))).status_code == 200
    assert path.read_bytes() == data
    assert [d["again"] for _, o, d in await room.audit("imaging.stored") if o == "ok"] == [
        False,
        True,
        True,
    ]


async def test_consent_lets_identified_instances_in_and_only_the_bedside_sets_it(
    room: ImagingRoom,
) -> None:
    identified = ct(deidentified=False)
    assert (await room.stow(related([part(identified)]))).status_code == 409
    for who, status in [("gw", 403), ("dk", 403), ("admin", 403), ("ds", 404)]:
        response = await room.consent(True, who)
        assert response.status_code == status, (who, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    lobby, _ = await connect(room.server, room.tokens["dk"])
    response = await room.consent(True, "tw")
    assert response.status_code == 200, response.text
    assert response.json()["imaging_consent"] is True
    # Both sites' sockets hear of it, as of any change of the consultation.
    pushed = await recv(lobby)
    assert pushed["type"] == "consultation" and pushed["consultation"]["imaging_consent"] is True
    await lobby.close()
    listed = await room.get("", who="dk")  # the base itself is no route
    assert listed.status_code == 404
    view = await api(room.server, "GET", f"/api/consultations/{room.cid}", room.tokens["dk"])
    assert view.json()["imaging_consent"] is True
    assert (await room.stow(related([part(identified)]))).status_code == 200
    anonymous = ct()
    assert (await room.stow(related([part(anonymous)]))).status_code == 200
    study, series, sop = uids(identified)
    metadata = f"/studies/{study}/series/{series}/instances/{sop}/metadata"
    assert (await room.get(metadata, who="dk")).status_code == 200
    assert (await room.consent(False, "dw")).status_code == 200
    assert (await room.stow(related([part(ct(deidentified=False))]))).status_code == 409
    # Withdrawn: the identified instance stays at the bedside site; the other crosses.
    for who, seen in [("dk", {uids(anonymous)[2]}), ("tw", {sop, uids(anonymous)[2]})]:
        found = await room.get("/instances", who=who)
        assert {i["00080018"]["Value"][0] for i in found.json()} == seen, who
    assert (await room.get(metadata, who="dk")).status_code == 404
    assert (await room.get(metadata, who="tw")).status_code == 200
    audited = [(a, o, d) for a, o, d in await room.audit("imaging.consent")]
    assert [(a, o, d.get("consent")) for a, o, d in audited] == [
        ("gw", "denied", True),
        ("dk", "denied", True),
        ("admin", "denied", True),
        ("ds", "denied", True),
        ("tw", "ok", True),
        ("dw", "ok", False),
    ]
    assert audited[4][2]["before"] is False and audited[5][2]["before"] is True
    closed = await api(
        room.server, "POST", f"/api/consultations/{room.cid}/close", room.tokens["dk"]
    )
    assert closed.status_code == 200
    assert (await room.consent(True, "tw")).status_code == 409


async def test_who_may_send(room: ImagingRoom) -> None:
    stored = 0
    for who, status in [("gk", 403), ("admin", 403), ("ds", 404), ("tw", 200), ("dk", 200)]:
        response = await room.stow(related([part(ct())]), who=who)
        assert response.status_code == status, (who, response.text)
        stored += status == 200
        assert len(room.files()) == stored, who
    refused = [(a, d.get("why")) for a, o, d in await room.audit("imaging.store") if o == "denied"]
    # The Seoul doctor does not see the consultation: refused as unknown, with no detail.
    assert refused == [("gk", 403), ("admin", 403), ("ds", None)]


async def test_no_upload_before_acceptance(room: ImagingRoom) -> None:
    requested = await request_consultation(room.server, room.tokens["tw"], "koriyama")
    response = await room.stow(related([part(ct())]), cid=requested)
    assert response.status_code == 409
    assert "requested" in response.json()["detail"]
    assert json.loads(response.text)["status"] == 409


def _hostile_dicom(data: bytes, rng: random.Random) -> bytes:
    """A Part 10 file with a few bytes changed, cut or repeated where pydicom reads its
    elements (the first 2 KiB), or not at all."""
    out = bytearray(data)
    for _ in range(rng.randrange(0, 4)):
        at = rng.randrange(min(2048, len(out)))
        kind = rng.randrange(4)
        if kind == 0:
            out[at] = rng.randrange(256)
        elif kind == 1:
            del out[at : at + rng.randrange(1, 16)]
        elif kind == 2:
            out[at:at] = out[at : at + rng.randrange(1, 16)]
        else:
            del out[rng.randrange(len(out)) :]
    return bytes(out)


def _hostile_headers(data: bytes, rng: random.Random) -> bytes:
    headers = [
        rng.choice(
            [
                "Content-Type: application/dicom",
                "Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
                "Content-Type: application/DICOM",
                "Content-Type: application/octet-stream",
                'Content-Type: application/dicom; x="unterminated',
            ]
        )
    ]
    if rng.random() < 0.7:
        headers.append(
            rng.choice(
                [
                    f"Content-Digest: {content_digest(data)}",
                    f"Content-Digest: sha-512=:AAAA:, {content_digest(data)}",
                    "Content-Digest: sha-256=:" + "A" * rng.randrange(60) + ":",
                    "Content-Digest: " + "x" * rng.randrange(200),
                    f"Content-Digest: {content_digest(data + b'x')}",
                ]
            )
        )
    if rng.random() < 0.3:
        headers.append("X-" + "a" * rng.randrange(1, 40) + ": " + "v" * rng.randrange(100))
    rng.shuffle(headers)
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + data


async def test_hostile_parts_inside_valid_framing(
    room: ImagingRoom, caplog: pytest.LogCaptureFixture
) -> None:
    """No part, however broken, makes the server fail or log an error, and what it stores
    is exactly what was sent and can be read back."""
    caplog.set_level(logging.WARNING)
    assert (await room.consent(True)).status_code == 200
    rng = random.Random(2026)
    seeds = [ct(), ultrasound(frames=2), pydicom_file("chrH31.dcm"), pydicom_file("rtplan.dcm")]
    statuses: dict[int, int] = {}
    sent: dict[str, bytes] = {}
    for _ in range(budget(25)):
        parts = []
        for _ in range(rng.randrange(1, 4)):
            data = _hostile_dicom(rng.choice(seeds), rng)
            parts.append(_hostile_headers(data, rng))
        response = await room.stow(related(parts))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 202, 409), response.text
        assert response.headers["content-type"] == "application/dicom+json"
        for item in response.json().get("00081199", {"Value": []})["Value"]:
            sent.setdefault(item["00081155"]["Value"][0], b"")
    for row in await room.indexed():
        path = room.server.config.data_dir / "imaging" / room.cid  # type: ignore[operator]
        stored = (
            path / row.study_instance_uid / row.series_instance_uid / f"{row.sop_instance_uid}.dcm"
        )
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.sha256
        got = await room.get(
            f"/studies/{row.study_instance_uid}/series/{row.series_instance_uid}"
            f"/instances/{row.sop_instance_uid}/metadata"
        )
        assert got.status_code in (200, 422), got.text
    assert set(sent) == {r.sop_instance_uid for r in await room.indexed()}
    assert len(statuses) > 1, statuses
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_an_upload_cut_off_midway_is_refused_and_nothing_kept(
    room: ImagingRoom, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    body = related([part(ct())])
    host, port = room.server.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /api/consultations/{room.cid}/dicomweb/studies HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {room.tokens['gw']}\r\n"
        f"Content-Type: {RELATED}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def refused() -> bool:
        return any(
            o == "denied" and "went away" in d.get("reason", "")
            for _, o, d in await room.audit("imaging.store")
        )

    await eventually(refused, what="the cut-off upload audited as refused")
    assert room.files() == [] and await room.indexed() == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
