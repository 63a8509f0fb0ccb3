"""QIDO-RS matching over index rows, the rendered images' parameters, and a server built
without a renderer (503, the rest of DICOMweb unaffected)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from signaling.errors import InvalidRequest
from signaling.imaging import qido
from signaling.imaging.renderer import NotAcceptable, render_request
from signaling.storage.models import ImagingInstanceRow
from tests.helpers import make_config, run_server
from tests.signaling.imaging.dicoms import ct, uids
from tests.signaling.imaging.room import ImagingRoom, part, related


def _row(study: str, series: str, sop: str, **values: object) -> ImagingInstanceRow:
    fields: dict[str, object] = {
        "consultation_id": "c-1",
        "study_instance_uid": study,
        "series_instance_uid": series,
        "sop_instance_uid": sop,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "modality": "CT",
        "frames": 1,
        "rows": 512,
        "columns": 512,
        "patient_name": "",
        "patient_id": "",
        "study_date": "20261201",
        "study_time": "",
        "study_description": "",
        "accession_number": "",
        "series_number": 1,
        "series_description": "",
        "instance_number": 1,
        "sha256": "0" * 64,
        "deidentified": True,
        "size": 1,
        "stored_at": datetime(2026, 12, 1, tzinfo=UTC),
        "sender_kind": "gateway",
        "sender_id": 1,
        "sender_name": "gw",
    }
    fields.update(values)
    return ImagingInstanceRow(**fields)


ROWS = [
    _row("1.1", "1.1.1", "1.1.1.1", patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう"),
    _row("1.1", "1.1.1", "1.1.1.2", patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう"),
    _row(
        "1.1",
        "1.1.2",
        "1.1.2.1",
        modality="SR",
        patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう",
    ),
    _row(
        "1.2",
        "1.2.1",
        "1.2.1.1",
        modality="US",
        frames=40,
        patient_name="김희중",
        study_date="20261115",
    ),
]


def _search(level: qido.Level, **params: str) -> list[dict[str, object]]:
    query = qido.parse_query(params.items())
    return qido.search(ROWS, level, query, lambda r, at: f"u/{at}/{r.sop_instance_uid}")


def _uids(found: list[dict[str, object]], tag: str) -> list[str]:
    return [f[tag]["Value"][0] for f in found]  # type: ignore[index]


def test_studies_series_and_instances_match_and_count() -> None:
    studies = _search(qido.Level.STUDY)
    assert _uids(studies, "0020000D") == ["1.1", "1.2"]
    assert studies[0]["00201206"] == {"vr": "IS", "Value": [2]}
    assert studies[0]["00201208"] == {"vr": "IS", "Value": [3]}
    assert studies[0]["00080061"] == {"vr": "CS", "Value": ["CT", "SR"]}
    assert studies[0]["00100010"] == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
        ],
    }
    assert _uids(_search(qido.Level.STUDY, PatientName="山田*"), "0020000D") == ["1.1"]
    assert _uids(_search(qido.Level.STUDY, PatientName="김희중"), "0020000D") == ["1.2"]
    assert _uids(_search(qido.Level.STUDY, StudyDate="20261120-"), "0020000D") == ["1.1"]
    assert _uids(_search(qido.Level.STUDY, StudyDate="-20261120"), "0020000D") == ["1.2"]
    assert _uids(_search(qido.Level.STUDY, **{"00080061": "us"}), "0020000D") == ["1.2"]
    assert _uids(_search(qido.Level.SERIES, StudyInstanceUID="1.1"), "0020000E") == [
        "1.1.1",
        "1.1.2",
    ]
    instances = _search(qido.Level.INSTANCE, SOPInstanceUID="1.1.1.2,1.2.1.1")
    assert _uids(instances, "00080018") == ["1.1.1.2", "1.2.1.1"]
    assert instances[1]["00280008"] == {"vr": "IS", "Value": [40]}
    assert _uids(_search(qido.Level.INSTANCE, limit="2", offset="1"), "00080018") == [
        "1.1.1.2",
        "1.1.2.1",
    ]
    assert _search(qido.Level.STUDY, PatientName="") != []  # universal matching
    assert _search(qido.Level.INSTANCE, includefield="all", fuzzymatching="false") != []


@pytest.mark.parametrize(
    "params",
    [
        {"PatientBirthDate": "1970"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "1e3"},
        {"offset": "x"},
        {"fuzzymatching": "maybe"},
        {"StudyDate": "2026"},
        {"StudyDate": "-"},
        {"PatientName": "x" * 300},
        {"00100030": "1970"},
    ],
)
def test_queries_it_cannot_answer_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        qido.parse_query(params.items())


def test_render_parameters() -> None:
    asked = render_request(
        [("window", "-600,1500,LINEAR"), ("viewport", "256,128"), ("quality", "70")],
        "image/png;q=0.9, image/jpeg;q=0.5",
    )
    assert (asked.window, asked.viewport, asked.quality, asked.media_type) == (
        (-600.0, 1500.0),
        (256, 128),
        70,
        "image/png",
    )
    assert render_request([], None, thumbnail=True).viewport == (128, 128)
    assert render_request([("preset", "lung")], "*/*").media_type == "image/jpeg"
    assert render_request([], "image/*").media_type == "image/jpeg"
    with pytest.raises(NotAcceptable):
        render_request([], "image/png;q=0, image/gif")
    with pytest.raises(InvalidRequest, match="twice"):
        render_request([("preset", "lung"), ("preset", "bone")], None)


async def test_without_a_renderer_rendered_images_are_unavailable(tmp_path: Path) -> None:
    async with run_server(make_config(tmp_path)) as server, ImagingRoom(server) as room:
        await room.setup(seoul=False)
        data = ct()
        assert (await room.stow(related([part(data)]))).status_code == 200
        study, series, sop = uids(data)
        instance = f"/studies/{study}/series/{series}/instances/{sop}"
        for path in ("/rendered", "/thumbnail", "/frames/1/rendered"):
            response = await room.get(instance + path)
            assert response.status_code == 503, path
            assert "renderer" in response.json()["detail"]
        # Only to those who may see the image.
        assert (await room.get(instance + "/rendered", who="gk")).status_code == 403
        assert (await room.get(instance + "/metadata")).status_code == 200
