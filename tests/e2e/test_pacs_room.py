"""The site's PACS from the room, through the real gateway: Orthanc as Wonju's PACS (loaded by
storescu), the real server, the gateway with its imaging path and --pacs, and two real aiortc
viewers. Wonju's doctor finds the study (pacs-find) and pulls it (pacs-pull); the server
then holds its instances for the consultation, de-identified. Koriyama's doctor, of the
other site, is refused both: a search names patients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import httpx
import pydicom
import pytest

from devices.dicom.pacs import PacsSettings
from devices.dicom.scp import ScpSettings
from media.rtc.events import PacsFind, PacsPull
from runtime.tasks import cancel_and_wait, spawn
from signaling.client import SignalingClient, UserCredentials
from signaling.schema import ConsultationAction, Role
from telemed.gateway.imaging import ImagingConfig
from telemed.gateway.pacs_room import OTHER_SITE, OTHER_SITE_PULL
from telemed.gateway.runner import Gateway, GatewayConfig
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.devices.dicom.orthanc import orthanc
from tests.e2e.bedside import GATEWAY, KEY
from tests.e2e.doctor import Doctor, gateway_in, tasks, until
from tests.e2e.pacs_study import PATIENT_ID, PATIENT_NAME, load, study_files
from tests.helpers import PASSWORD, LiveServer

# Orthanc, the server, a gateway and two WebRTC links: several seconds.
pytestmark = pytest.mark.slow


def messages(doctor: Doctor, request: str) -> list[dict[str, object]]:
    return [m for m in doctor.messages if m.get("request") == request]


async def test_the_bedside_site_finds_and_pulls_a_study_the_other_site_is_refused(
    server: LiveServer, tmp_path: Path
) -> None:
    paths, study_uid = study_files(tmp_path)
    async with orthanc(tmp_path / "pacs") as pacs_server:
        await load(pacs_server, paths)
        await server.add_gateway(GATEWAY, "wonju", KEY)
        await server.add_user("doctor.wonju", Role.DOCTOR, "wonju")
        await server.add_user("doctor.koriyama", Role.DOCTOR, "koriyama")
        wonju = Doctor(SignalingClient(server.base_url, UserCredentials("doctor.wonju", PASSWORD)))
        koriyama = Doctor(
            SignalingClient(server.base_url, UserCredentials("doctor.koriyama", PASSWORD))
        )
        pacs = PacsSettings("127.0.0.1", pacs_server.dicom_port, pacs_server.ae_title)
        scp = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
        gateway = Gateway(
            GatewayConfig(
                server_url=server.base_url,
                name=GATEWAY,
                key=KEY,
                mains_hz=60.0,
                data_dir=tmp_path / "gateway",
                imaging=ImagingConfig(scp, pacs=pacs),
            )
        )
        running = spawn(gateway.run(), name="gateway")
        try:
            await wonju.client.start()
            await koriyama.client.start()
            row = await wonju.client.request_consultation("koriyama", False)
            await koriyama.client.consultation_action(row.id, ConsultationAction.ACCEPT)
            async with tasks(wonju.answer_offers(), koriyama.answer_offers()):
                await gateway_in(gateway, row.id)
                await wonju.client.join(row.id)
                await koriyama.client.join(row.id)
                for doctor in (wonju, koriyama):
                    await until(
                        lambda d=doctor: any(m["type"] == "hello" for m in d.messages), doctor
                    )

                # The other site: refused, its search not run.
                assert koriyama.media is not None
                koriyama.media.send_event(PacsFind(request="k-find", patient_id=PATIENT_ID))
                koriyama.media.send_event(PacsPull(request="k-pull", study_instance_uid=study_uid))
                await until(lambda: messages(koriyama, "k-pull"), koriyama)
                [refused_find] = messages(koriyama, "k-find")
                assert (refused_find["studies"], refused_find["error"]) == ([], OTHER_SITE)
                [refused_pull] = messages(koriyama, "k-pull")
                assert (refused_pull["outcome"], refused_pull["reason"]) == (
                    "refused",
                    OTHER_SITE_PULL,
                )

                # The bedside's site: found ...
                assert wonju.media is not None
                wonju.media.send_event(
                    PacsFind(request="w-find", patient_id=PATIENT_ID, study_date="20261201-")
                )
                await until(lambda: messages(wonju, "w-find"), wonju)
                [found] = messages(wonju, "w-find")
                assert found["error"] is None, found["error"]
                [study] = cast(list[dict[str, object]], found["studies"])
                assert study["study_instance_uid"] == study_uid
                assert (study["patient_id"], study["study_date"]) == (PATIENT_ID, "20261201")
                assert study["patient_name"] == PATIENT_NAME
                assert (study["modalities"], study["instances"]) == (["CT"], 2)
                # ... and pulled into the consultation.
                wonju.media.send_event(PacsPull(request="w-pull", study_instance_uid=study_uid))
                await until(lambda: messages(wonju, "w-pull"), wonju, seconds=60)
                [pulled] = messages(wonju, "w-pull")
                assert (pulled["outcome"], pulled["completed"], pulled["failed"]) == (
                    "pulled",
                    2,
                    0,
                )
                # Only the asker heard the answers.
                assert not messages(koriyama, "w-find") and not messages(koriyama, "w-pull")
                # A study the PACS does not have: it answers the C-GET with a failure
                # (Orthanc: 0xC000), which is a failed pull, not "pulled" with nothing.
                absent = "1.2.826.0.1.3680043.8.498.99"
                wonju.media.send_event(PacsPull(request="w-absent", study_instance_uid=absent))
                await until(lambda: messages(wonju, "w-absent"), wonju, seconds=60)
                [failed] = messages(wonju, "w-absent")
                assert (failed["outcome"], failed["completed"]) == ("failed", 0)
                assert "0xC000" in str(failed["reason"])

                # The server holds both, de-identified (no consent), for the consultation.
                imaging = gateway.imaging
                assert imaging is not None
                async with asyncio.timeout(30):
                    while imaging.forwarder.sent < 2:
                        await asyncio.sleep(0.05)
                token = await server.token("doctor.koriyama")
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    base = f"/api/consultations/{row.id}/dicomweb"
                    headers = {"Authorization": f"Bearer {token}"}
                    listed = await http.get(f"{base}/instances", headers=headers)
                    assert listed.status_code == 200, listed.text
                    instances = [pydicom.Dataset.from_json(i) for i in listed.json()]
                    assert len(instances) == 2
                one = instances[0]
                stored = (server.config.data_dir / "imaging").rglob("*.dcm")  # type: ignore[operator]
                files = [pydicom.dcmread(path) for path in stored]
                assert len(files) == 2
                for ds in files:
                    assert ds.PatientIdentityRemoved == "YES"
                    assert "Minji" not in str(ds.PatientName) and "민지" not in str(ds.PatientName)
                assert one.StudyInstanceUID != study_uid  # remapped, consistently
                assert {i.StudyInstanceUID for i in instances} == {one.StudyInstanceUID}
        finally:
            await cancel_and_wait([running])
            await wonju.client.close()
            await koriyama.client.close()
