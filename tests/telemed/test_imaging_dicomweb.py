"""The consultation's DICOMweb service as ``telemed serve`` builds it (media's renderer
wired in), checked with an independent client, ``dicomweb-client``: instances stored with
STOW-RS come back byte-identical in their pixel data through WADO-RS, found by QIDO-RS with
Japanese and Korean names as they were written, rendered to JPEG and PNG; who is not a
member gets nothing; bad rendering parameters get a problem saying why."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pydicom
import pytest
import pytest_asyncio
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

from signaling.config import DEFAULT_SITES
from signaling.imaging.multipart import MultipartLimits, parse_media_type, parse_related
from signaling.server.services import Services
from telemed.serve import build_app, start_server
from tests.helpers import LiveServer, make_config
from tests.signaling.imaging.dicoms import (
    ct,
    pixel_data,
    pydicom_file,
    renamed,
    uids,
    ultrasound,
)
from tests.signaling.imaging.room import SEOUL, ImagingRoom

JAPANESE = {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}


@pytest_asyncio.fixture
async def room(tmp_path: Path) -> AsyncIterator[ImagingRoom]:
    config = make_config(tmp_path, sites=(*DEFAULT_SITES, SEOUL))
    app = build_app(config)
    server, task, port = await start_server(app, config, log_level="warning")
    try:
        live = LiveServer(config, f"http://127.0.0.1:{port}", cast(Services, app.state.services))
        async with ImagingRoom(live) as r:
            await r.setup()
            yield r
    finally:
        server.should_exit = True
        await task


def _client(room: ImagingRoom, who: str) -> DICOMwebClient:
    return DICOMwebClient(
        url=room.server.base_url + room.base,
        headers={"Authorization": f"Bearer {room.tokens[who]}"},
    )


def _dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


async def test_dicomweb_client_round_trip(room: ImagingRoom) -> None:
    assert (await room.consent(True)).status_code == 200  # the charset files are identified
    korean = ultrasound(frames=3, name="김희중", charset="ISO 2022 IR 149")
    files = {
        "ct": ct(),
        "us": korean,
        "ja": pydicom_file("chrH31.dcm"),
        "utf8": pydicom_file("chrX1.dcm"),
    }
    gateway, doctor = _client(room, "gw"), _client(room, "dk")

    def store() -> pydicom.Dataset:
        return gateway.store_instances([_dataset(d) for d in files.values()])

    stored = await asyncio.to_thread(store)
    assert len(stored.ReferencedSOPSequence) == 4
    assert "FailedSOPSequence" not in stored

    studies = await asyncio.to_thread(doctor.search_for_studies)
    assert len(studies) == 4
    names = {s["0020000D"]["Value"][0]: s["00100010"].get("Value", [{}])[0] for s in studies}
    assert names[uids(files["ja"])[0]] == JAPANESE
    assert names[uids(files["us"])[0]] == {"Alphabetic": "김희중"}
    assert names[uids(files["utf8"])[0]] == {
        "Alphabetic": "Wang^XiaoDong",
        "Ideographic": "王^小東",
    }
    found = await asyncio.to_thread(
        doctor.search_for_studies, search_filters={"PatientName": "yamada*"}
    )
    assert [s["0020000D"]["Value"][0] for s in found] == [uids(files["ja"])[0]]
    found = await asyncio.to_thread(
        doctor.search_for_studies, search_filters={"ModalitiesInStudy": "US"}
    )
    assert [s["0020000D"]["Value"][0] for s in found] == [uids(korean)[0]]

    study, series, sop = uids(korean)
    [found_series] = await asyncio.to_thread(doctor.search_for_series, study)
    assert found_series["0020000E"]["Value"] == [series]
    assert found_series["00201209"]["Value"] == [1]
    [instance] = await asyncio.to_thread(doctor.search_for_instances, study, series)
    assert instance["00080018"]["Value"] == [sop]
    assert instance["00280008"]["Value"] == [3]

    # WADO-RS: the pixel data byte for byte, the metadata, the native frames.
    for data in files.values():
        s, se, i = uids(data)
        got = await asyncio.to_thread(doctor.retrieve_instance, s, se, i)
        original = _dataset(data)
        if "PixelData" in original:
            assert got.PixelData == original.PixelData
        assert got.SOPInstanceUID == i
    metadata = await asyncio.to_thread(doctor.retrieve_instance_metadata, study, series, sop)
    assert metadata["00100010"]["Value"] == [{"Alphabetic": "김희중"}]
    assert metadata["00080005"]["Value"] == ["ISO_IR 192"]
    assert metadata["7FE00010"]["BulkDataURI"].endswith(f"/instances/{sop}/bulkdata/7FE00010")
    ja = await asyncio.to_thread(doctor.retrieve_instance_metadata, *uids(files["ja"]))
    assert ja["00100010"]["Value"] == [JAPANESE]
    frames = await asyncio.to_thread(doctor.retrieve_instance_frames, study, series, sop, [1, 3])
    pixels = pixel_data(korean)
    size = len(pixels) // 3
    assert frames == [pixels[:size], pixels[2 * size :]]
    bulk = await room.get(f"/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010")
    assert bulk.status_code == 200 and pixels in bulk.content

    # Rendered, by media's renderer.
    ct_uids = uids(files["ct"])
    png = await asyncio.to_thread(
        doctor.retrieve_instance_rendered,
        *ct_uids,
        media_types=("image/png",),
        params={"window": "40,400"},
    )
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    bone = await room.get(
        f"/studies/{ct_uids[0]}/series/{ct_uids[1]}/instances/{ct_uids[2]}/rendered",
        params={"preset": "bone", "viewport": "64,64"},
    )
    assert bone.status_code == 200 and bone.content.startswith(b"\xff\xd8")
    assert bone.headers["content-type"] == "image/jpeg"
    soft = await room.get(
        f"/studies/{ct_uids[0]}/series/{ct_uids[1]}/instances/{ct_uids[2]}/rendered",
        params={"preset": "soft-tissue", "viewport": "64,64"},
    )
    assert soft.content != bone.content  # the window changes the picture
    frame = await room.get(
        f"/studies/{study}/series/{series}/instances/{sop}/frames/3/rendered",
        headers={"Accept": "image/png"},
    )
    assert frame.status_code == 200 and frame.content.startswith(b"\x89PNG")
    thumb = await room.get(f"/studies/{study}/series/{series}/instances/{sop}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"

    assert len(await room.audit("imaging.search")) == 5
    # Five rendered reads of two instances: a row for each instance's first read, the
    # rest counted in a summary (written at the window's end; here, flushed).
    await room.server.services.reads.flush(everything=True)
    renders = [d for _, _, d in await room.audit("imaging.render")]
    assert sorted(d["sop"] for d in renders if not d.get("summary")) == sorted([ct_uids[2], sop])
    assert sum(d.get("reads", 1) for d in renders) == 5


@pytest.mark.slow  # some 50 requests: 20 s on this loaded machine
@pytest.mark.cpu  # requests and answers: no time measured
async def test_non_members_get_nothing_and_bad_parameters_a_reason(room: ImagingRoom) -> None:
    data = ultrasound(frames=2)
    study, series, sop = uids(data)
    await asyncio.to_thread(_client(room, "gw").store_instances, [_dataset(data)])
    instance = f"/studies/{study}/series/{series}/instances/{sop}"
    for who, status in [("ds", 404), ("admin", 403), ("gk", 403)]:
        with pytest.raises(requests.HTTPError) as raised:
            await asyncio.to_thread(_client(room, who).search_for_studies)
        assert raised.value.response is not None
        assert raised.value.response.status_code == status, who
        for path in (
            instance,
            instance + "/metadata",
            instance + "/frames/1",
            instance + "/rendered",
        ):
            response = await room.get(path, who=who)
            assert response.status_code == status, (who, path)
    # The bedside's gateway and both sites' clinicians read.
    for who in ("gw", "tw", "dw", "dk"):
        assert (await room.get(instance + "/metadata", who=who)).status_code == 200, who

    cases: list[tuple[str, dict[str, Any], dict[str, str], int, str]] = [
        ("/rendered", {"preset": "liver"}, {}, 400, "unknown preset"),
        ("/rendered", {"window": "40"}, {}, 400, "centre,width"),
        ("/rendered", {"window": "40,0"}, {}, 400, "at least 1"),
        ("/rendered", {"window": "40,0.5"}, {}, 400, "at least 1"),
        ("/rendered", {"window": "40,400,sigmoid"}, {}, 400, "linear"),
        ("/rendered", {"window": "nan,400"}, {}, 400, "finite"),
        ("/rendered", {"window": "40,400", "preset": "bone"}, {}, 400, "not both"),
        ("/rendered", {"viewport": "0,10"}, {}, 400, "viewport"),
        ("/rendered", {"viewport": "10,10,0,0,5,5"}, {}, 400, "viewport"),
        ("/rendered", {"quality": "101"}, {}, 400, "quality"),
        ("/rendered", {"zoom": "2"}, {}, 400, "unknown parameter"),
        ("/rendered", {}, {"Accept": "image/gif"}, 406, "image/jpeg or image/png"),
        ("/frames/3/rendered", {}, {}, 404, "no frame 3"),
        ("/frames/0/rendered", {}, {}, 422, ""),
        ("/frames/1,5", {}, {}, 404, "no frame 5"),
        ("/frames/x", {}, {}, 400, "1-based"),
        ("/frames/1", {}, {"Accept": "image/jpeg"}, 406, "octet-stream"),
        ("", {}, {"Accept": "application/json"}, 406, "application/dicom"),
        ("/bulkdata/00100010", {}, {}, 404, "no binary attribute"),
        ("/bulkdata/zz", {}, {}, 422, ""),
    ]
    for path, params, headers, status, words in cases:
        response = await room.get(instance + path, params=params, headers=headers)
        assert response.status_code == status, (path, params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert words in response.json()["detail"], (path, response.json())
    bad_query = await room.get("/studies", params={"PatientBirthDate": "19700101"})
    assert bad_query.status_code == 400 and "cannot search" in bad_query.json()["detail"]
    bad_date = await room.get("/studies", params={"StudyDate": "yesterday"})
    assert bad_date.status_code == 400
    missing = await room.get(f"/studies/{study}/series/{series}/instances/1.2.3")
    assert missing.status_code == 404
    wrong_study = await room.get(f"/studies/1.2.3/series/{series}/instances/{sop}")
    assert wrong_study.status_code == 404


async def test_a_study_and_a_series_are_retrieved_whole(room: ImagingRoom) -> None:
    study = "1.2.826.0.1.3680043.8.498.1"
    first, second = "1.2.826.0.1.3680043.8.498.1.1", "1.2.826.0.1.3680043.8.498.1.2"
    files = [
        ultrasound(frames=2, study=study, series=first, seed=1),
        ultrasound(frames=2, study=study, series=first, seed=2),
        ultrasound(frames=3, study=study, series=second, seed=3),
    ]
    other = ultrasound(frames=1, seed=4)  # another study of the consultation: not in the answer
    await asyncio.to_thread(
        _client(room, "gw").store_instances, [_dataset(d) for d in [*files, other]]
    )
    doctor = _client(room, "dk")
    whole = await asyncio.to_thread(doctor.retrieve_study, study)
    by_sop = {uids(d)[2]: d for d in files}
    assert sorted(str(ds.SOPInstanceUID) for ds in whole) == sorted(by_sop)
    for ds in whole:
        assert ds.PixelData == pixel_data(by_sop[str(ds.SOPInstanceUID)])
    one = await asyncio.to_thread(doctor.retrieve_series, study, second)
    assert [str(ds.SOPInstanceUID) for ds in one] == [uids(files[2])[2]]
    [audited] = [d for _, _, d in await room.audit("imaging.retrieve") if d.get("count") == 3]
    assert audited["study"] == study
    for path, who, status in [
        (f"/studies/{study}", "ds", 404),  # not a member
        (f"/studies/{study}", "admin", 403),
        ("/studies/1.2.3", "dk", 404),
        (f"/studies/{study}/series/1.2.3", "dk", 404),
    ]:
        assert (await room.get(path, who=who)).status_code == status, (path, who)
    refused = await room.get(f"/studies/{study}", headers={"Accept": "application/json"})
    assert refused.status_code == 406


async def test_compressed_frames_are_served_as_the_modality_encoded_them(
    room: ImagingRoom,
) -> None:
    """A 30-frame JPEG baseline ultrasound and a two-frame RLE: frames come back in their own
    media type, byte for byte the file's fragments; a client asking for native bytes is
    told which type to ask for (there is no transcoding)."""
    cine = renamed(pydicom_file("examples_ybr_color.dcm"))
    rle = renamed(pydicom_file("SC_rgb_rle_2frame.dcm"))
    await asyncio.to_thread(_client(room, "gw").store_instances, [_dataset(cine), _dataset(rle)])
    doctor = _client(room, "dk")
    study, series, sop = uids(cine)
    got = await asyncio.to_thread(
        doctor.retrieve_instance_frames, study, series, sop, [1, 30], media_types=("image/jpeg",)
    )
    original = _dataset(cine)
    stored = list(generate_frames(original.PixelData, number_of_frames=30))
    assert got == [stored[0], stored[29]]
    assert got[0].startswith(b"\xff\xd8")  # a JPEG stream, as encoded at the modality

    path = "/studies/{}/series/{}/instances/{}/frames/2".format(*uids(rle))
    answer = await room.get(path, headers={"Accept": 'multipart/related; type="image/dicom-rle"'})
    assert answer.status_code == 200
    boundary = parse_media_type(answer.headers["content-type"]).params["boundary"]
    parts = parse_related(answer.content, boundary, MultipartLimits())
    rle_frames = list(generate_frames(_dataset(rle).PixelData, number_of_frames=2))
    assert [p.body for p in parts] == [rle_frames[1]]
    assert parts[0].header("content-type") == (
        "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"
    )
    octets = "multipart/related; type=application/octet-stream"
    native = await room.get(path, headers={"Accept": octets})
    assert native.status_code == 406
    assert "image/dicom-rle" in native.json()["detail"]
    assert (await room.get(path.replace("/frames/2", "/frames/3"))).status_code == 404
