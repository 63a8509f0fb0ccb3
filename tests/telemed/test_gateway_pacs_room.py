"""The PACS in the room (telemed.gateway.pacs_room): who may search and pull, how often, and
what a PACS that is absent, silent or hostile gives; answers travel on a real aiortc events
channel on loopback to the asking viewer."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from devices.dicom.pacs import PacsSettings, StudyMatch
from media.rtc.events import (
    MAX_EVENT_BYTES,
    MAX_PACS_STUDIES,
    PacsFind,
    PacsPull,
    PacsStudies,
    parse_event,
)
from runtime.clock import ManualClock
from signaling.schema import Role
from telemed.gateway.imaging import NO_CONSULTATION, GatewayImaging
from telemed.gateway.pacs_room import (
    BURST,
    BUSY,
    NO_PACS,
    NOT_CLINICIAN,
    OTHER_SITE,
    OTHER_SITE_PULL,
    QUEUE_SIZE,
    REQUESTS_PER_S,
    TOO_OFTEN,
    PacsRoom,
    studies_text,
)
from telemed.gateway_cli import config_from
from telemed.settings import GatewayOptions, Settings, SettingsError
from tests.telemed.pacs_link import (
    Link,
    answering,
    clinician,
    linked,
    pacs_imaging,
    silent_pacs,
)

UID = "1.2.392.200036.9116.2.6.1.48.1"


def _room(link: Link, imaging: GatewayImaging | None, **kwargs: object) -> PacsRoom:
    return PacsRoom(imaging, lambda: "wonju", lambda _: link.gateway, **kwargs)  # type: ignore[arg-type]


async def test_only_clinicians_of_the_bedside_site_may_search_or_pull(tmp_path: Path) -> None:
    with silent_pacs() as port:
        pacs = PacsSettings("127.0.0.1", port, "PACS", timeout_s=0.5)
        async with linked() as link:
            room = _room(link, pacs_imaging(tmp_path, pacs))
            # Not answered here (run() is not started): each is refused before any queue.
            room.request(clinician("koriyama"), PacsFind(request="f-1", patient_id="KR-1"))
            room.request(clinician("koriyama"), PacsPull(request="p-1", study_instance_uid=UID))
            room.request(clinician("wonju", Role.GATEWAY), PacsFind(request="f-2"))
            room.request(clinician("wonju", Role.ADMIN), PacsFind(request="f-3"))
            assert (await link.answer("f-1"))["error"] == OTHER_SITE
            assert (await link.answer("f-1"))["studies"] == []
            pulled = await link.answer("p-1")
            assert (pulled["outcome"], pulled["reason"]) == ("refused", OTHER_SITE_PULL)
            assert (await link.answer("f-2"))["error"] == NOT_CLINICIAN
            assert (await link.answer("f-3"))["error"] == NOT_CLINICIAN
            assert room.refused == 4

            # The gateway not logged in yet: it does not know its site, and refuses all.
            unsure = PacsRoom(pacs_imaging(tmp_path, pacs), lambda: None, lambda _: link.gateway)
            unsure.request(clinician("wonju"), PacsFind(request="f-4"))
            assert (await link.answer("f-4"))["error"] == OTHER_SITE


async def test_no_pacs_is_said(tmp_path: Path) -> None:
    async with linked() as link:
        for imaging in (None, pacs_imaging(tmp_path, None)):
            room = _room(link, imaging)
            room.request(clinician("wonju"), PacsFind(request=f"f-{id(imaging)}"))
            room.request(
                clinician("wonju", Role.TECHNICIAN),
                PacsPull(request=f"p-{id(imaging)}", study_instance_uid=UID),
            )
            assert (await link.answer(f"f-{id(imaging)}"))["error"] == NO_PACS
            pulled = await link.answer(f"p-{id(imaging)}")
            assert (pulled["outcome"], pulled["reason"]) == ("refused", NO_PACS)


async def test_a_clinician_asking_too_often_is_refused_and_the_queue_is_bounded(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    with silent_pacs() as port:
        pacs = PacsSettings("127.0.0.1", port, "PACS", timeout_s=0.5)
        async with linked() as link:
            room = _room(link, pacs_imaging(tmp_path, pacs), clock=clock)
            first = clinician("wonju", principal=1)
            for k in range(BURST + 1):
                room.request(first, PacsFind(request=f"a-{k}"))
            assert (await link.answer(f"a-{BURST}"))["error"] == TOO_OFTEN
            assert room.refused == 1
            clock.advance(1 / REQUESTS_PER_S)  # one more token
            room.request(first, PacsFind(request="a-later"))
            room.request(first, PacsFind(request="a-again"))
            assert (await link.answer("a-again"))["error"] == TOO_OFTEN
            assert room.refused == 2
            # Others fill what waits; beyond QUEUE_SIZE the bedside says it is busy.
            waiting = BURST + 1
            others = 2
            while waiting < QUEUE_SIZE:
                for k in range(min(BURST, QUEUE_SIZE - waiting)):
                    room.request(
                        clinician("wonju", principal=others), PacsFind(request=f"o-{others}-{k}")
                    )
                    waiting += 1
                others += 1
            room.request(clinician("wonju", principal=99), PacsFind(request="one-too-many"))
            assert (await link.answer("one-too-many"))["error"] == BUSY
            # Nothing of the queued ones was answered: nothing runs them here.
            assert not [m for m in link.drain() if m["request"].startswith("o-")]


@pytest.mark.slow  # the PACS's timeout runs out, twice
async def test_a_pacs_that_does_not_answer_gives_an_error_not_a_hang(tmp_path: Path) -> None:
    with silent_pacs() as port:
        pacs = PacsSettings("127.0.0.1", port, "PACS", timeout_s=1.0)
        async with linked() as link:
            imaging = pacs_imaging(tmp_path, pacs)
            room = _room(link, imaging)
            async with answering(room, imaging):
                room.request(clinician("wonju"), PacsFind(request="f-1", patient_id="KR-0042"))
                room.request(clinician("wonju"), PacsPull(request="p-1", study_instance_uid=UID))
                found = await link.answer("f-1")
                assert found["studies"] == []
                assert (
                    found["error"] == f"the PACS PACS at 127.0.0.1:{port} did not answer within 1 s"
                )
                pulled = await link.answer("p-1")
                assert pulled["outcome"] == "failed"
                assert pulled["completed"] == 0
                assert "did not answer within 1 s" in pulled["reason"]
                assert room.answered == 2


async def test_a_pull_without_an_active_consultation_is_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with silent_pacs() as port:
        pacs = PacsSettings("127.0.0.1", port, "PACS", timeout_s=1.0)
        async with linked() as link:
            imaging = pacs_imaging(tmp_path, pacs, consultation=None)
            room = _room(link, imaging)
            async with answering(room, imaging):
                room.request(clinician("wonju"), PacsPull(request="p-1", study_instance_uid=UID))
                pulled = await link.answer("p-1")
                assert (pulled["outcome"], pulled["reason"]) == ("refused", NO_CONSULTATION)
    # The bedside's record of the pull: who, which study, the outcome.
    [line] = [r for r in caplog.records if r.name == "telemed.gateway.pacs_room"]
    assert line.levelname == "WARNING"
    text = line.getMessage()
    assert UID in text and "doctor.wonju.7 (doctor, wonju)" in text and "refused" in text


def _match(k: int, name: str = "Yamada^Taro=山田^太郎=やまだ^たろう") -> StudyMatch:
    return StudyMatch(
        study_instance_uid=f"1.2.3.{k}",
        patient_id=f"JP-{k}",
        patient_name=name,
        study_date="20261201",
        description="CT chest",
        modalities=("CT", "SR"),
        instances=k,
    )


def test_the_answer_is_capped_and_fits_one_message() -> None:
    answer = parse_event(studies_text("f-1", [_match(k) for k in range(MAX_PACS_STUDIES + 5)]))
    assert isinstance(answer, PacsStudies)
    assert len(answer.studies) == MAX_PACS_STUDIES and answer.truncated
    assert answer.studies[0].patient_name == "Yamada^Taro=山田^太郎=やまだ^たろう"
    # Names at their longest in a multi-byte character set: fewer studies, said so.
    long = [_match(k, "김\x07" * 200) for k in range(MAX_PACS_STUDIES)]
    text = studies_text("f-2", long)
    assert len(text.encode()) <= MAX_EVENT_BYTES
    answer = parse_event(text)
    assert isinstance(answer, PacsStudies)
    assert answer.truncated and 0 < len(answer.studies) < MAX_PACS_STUDIES
    assert answer.studies[0].patient_name == ("김\x07" * 162)
    # What the contract cannot carry is fitted or left out, never an exception.
    odd = StudyMatch("", "x" * 99, "", "2026-12-01", "d" * 99, ("M" * 40,) * 30, -1)
    long_uid = StudyMatch("1." * 40, "", "", "", "", (), None)
    answer = parse_event(studies_text("f-3", [odd, long_uid, _match(1)]))
    assert isinstance(answer, PacsStudies)
    assert [s.study_instance_uid for s in answer.studies] == ["1.2.3.1"]
    fitted = parse_event(studies_text("f-4", [replace(odd, study_instance_uid="1.2")]))
    assert isinstance(fitted, PacsStudies)
    [study] = fitted.studies
    assert (len(study.patient_id), study.study_date, len(study.description)) == (64, "", 64)
    assert len(study.modalities) == 16 and study.modalities[0] == "M" * 16
    assert study.instances is None


def test_the_pacs_flags_and_settings(tmp_path: Path) -> None:
    options = GatewayOptions(name="bed-1", key=SecretStr("k"), site="wonju")
    settings = Settings(data_dir=tmp_path, gateway=options)
    base: dict[str, object] = {"server": None, "name": None, "key_file": None, "site": None}
    base |= {"device": [], "camera": None, "size": None, "consultation": None}
    scp = {"dicom_port": 11112, "dicom_ae": "BEDSIDE", "dicom_allow": "US1"}
    flagged = config_from(
        argparse.Namespace(**base, **scp, pacs="pacs.local:4242", pacs_ae="ORTHANC"), settings
    )
    assert flagged.imaging is not None
    assert flagged.imaging.pacs == PacsSettings("pacs.local", 4242, "ORTHANC", "BEDSIDE")
    ipv6 = config_from(
        argparse.Namespace(**base, **scp, pacs="[::1]:104", pacs_ae="P", pacs_calling_ae="GW"),
        settings,
    )
    assert ipv6.imaging is not None and ipv6.imaging.pacs is not None
    assert (ipv6.imaging.pacs.host, ipv6.imaging.pacs.calling_ae) == ("::1", "GW")
    from_settings = Settings(
        data_dir=tmp_path,
        gateway=options.model_copy(
            update={
                "dicom_port": 104,
                "dicom_allow": ("US1",),
                "pacs": "10.0.0.5:104",
                "pacs_ae": "PACS",
                "pacs_timeout_s": 12.0,
            }
        ),
    )
    imaging = config_from(argparse.Namespace(**base), from_settings).imaging
    assert imaging is not None
    assert imaging.pacs == PacsSettings("10.0.0.5", 104, "PACS", "TELEMED", timeout_s=12.0)
    with pytest.raises(SettingsError, match="--dicom-port"):
        config_from(argparse.Namespace(**base, pacs="h:104", pacs_ae="P"), settings)
    with pytest.raises(SettingsError, match="--pacs-ae"):
        config_from(argparse.Namespace(**base, **scp, pacs="h:104"), settings)
    for bad in ("h", "h:", ":104", "h:0", "h:70000", "h:x"):
        with pytest.raises(SettingsError, match="HOST:PORT"):
            config_from(argparse.Namespace(**base, **scp, pacs=bad, pacs_ae="P"), settings)
    with pytest.raises(SettingsError, match="1 to 16"):
        config_from(argparse.Namespace(**base, **scp, pacs="h:1", pacs_ae="X" * 17), settings)
