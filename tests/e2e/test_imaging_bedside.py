"""The bedside's imaging against the real server: storescu -> the gateway's SCP -> check ->
de-identification (or not, with consent) -> spool -> STOW-RS with the gateway's own login
-> stored, indexed and audited by the server, hash checked on both ends, read back by an
independent DICOMweb client."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
import pytest_asyncio
from dicomweb_client.api import DICOMwebClient

from devices.dicom.scp import ScpSettings
from runtime.tasks import cancel_and_wait, spawn
from signaling.config import DEFAULT_SITES
from signaling.schema import Role
from telemed.gateway.imaging import GatewayImaging, ImagingConfig
from telemed.gateway.runner import Gateway, GatewayConfig
from tests.devices.dicom.dicom_helpers import STORESCU, same_instance, sample_path, storescu
from tests.helpers import eventually, make_config, run_server
from tests.signaling.imaging.room import GATEWAY_KEY, SEOUL, ImagingRoom
from tests.signaling.sockets import active_consultation
from tests.telemed.imaging_gateway import imaging_gateway

# A real server with five signed-in accounts: over 5 s on two loaded cores.
pytestmark = [pytest.mark.slow, pytest.mark.cpu]  # no media: files and their statuses


class Bedside:
    def __init__(self, room: ImagingRoom, imaging: GatewayImaging) -> None:
        self.room = room
        self.imaging = imaging

    @property
    def port(self) -> int:
        assert self.imaging.scp is not None
        return self.imaging.scp.port


@pytest_asyncio.fixture
async def bedside(tmp_path: Path) -> AsyncIterator[Bedside]:
    async with imaging_gateway(tmp_path) as (room, imaging):
        yield Bedside(room, imaging)


async def test_deidentified_without_consent_and_as_sent_with_it(
    bedside: Bedside, tmp_path: Path
) -> None:
    room = bedside.room
    runs = await asyncio.to_thread(storescu, bedside.port, [sample_path("ct")])
    assert runs[0].returncode == 0, runs[0].stderr
    await eventually(lambda: bedside.imaging.forwarder.sent == 1)
    [row] = await room.indexed()
    assert row.deidentified is True
    assert row.sop_instance_uid.startswith("2.25.")
    stored = (room.server.config.data_dir / "imaging").rglob("*.dcm")  # type: ignore[operator]
    [path] = list(stored)
    data = path.read_bytes()
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    ds = pydicom.dcmread(BytesIO(data))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.PixelData == pydicom.dcmread(sample_path("ct")).PixelData

    assert (await room.consent(True)).status_code == 200
    runs = await asyncio.to_thread(storescu, bedside.port, [sample_path("us-multiframe-jpeg")])
    assert runs[0].returncode == 0, runs[0].stderr
    await eventually(lambda: bedside.imaging.forwarder.sent == 2)
    rows = await room.indexed()
    assert [r.deidentified for r in rows] == [True, False]
    source = pydicom.dcmread(sample_path("us-multiframe-jpeg"))
    assert rows[1].sop_instance_uid == source.SOPInstanceUID
    audited = await room.audit("imaging.stored")
    assert [(a, d["deidentified"]) for a, _, d in audited] == [("gw", True), ("gw", False)]

    # An independent DICOMweb client, as the consulting doctor, finds both and reads the
    # consented one back as sent.
    def read_back() -> tuple[int, bytes]:
        web = DICOMwebClient(
            url=room.server.base_url + room.base,
            headers={"Authorization": f"Bearer {room.tokens['dk']}"},
        )
        studies = web.search_for_studies()
        instance = web.retrieve_instance(
            source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
        )
        out = BytesIO()
        instance.save_as(out, enforce_file_format=True)
        return len(studies), out.getvalue()

    count, retrieved = await asyncio.to_thread(read_back)
    assert count == 2
    assert same_instance(retrieved, sample_path("us-multiframe-jpeg").read_bytes())


async def test_the_gateway_follows_its_consultation_and_forwards_images(tmp_path: Path) -> None:
    """The whole gateway (telemed.gateway.runner) with --dicom-port: it joins its site's
    active consultation and what a modality sends lands in it."""
    (tmp_path / "server").mkdir()
    server_config = make_config(tmp_path / "server", sites=(*DEFAULT_SITES, SEOUL))
    async with run_server(server_config) as server, ImagingRoom(server) as room:
        # Only the accounts this test needs.
        users = [("tw", Role.TECHNICIAN, "wonju"), ("dk", Role.DOCTOR, "koriyama")]
        room.tokens, room.cid = await active_consultation(server, users)
        await server.add_gateway("bed-1", "wonju", GATEWAY_KEY)
        scp = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
        gateway = Gateway(
            GatewayConfig(
                server_url=server.base_url,
                name="bed-1",
                key=GATEWAY_KEY,
                mains_hz=60.0,
                data_dir=tmp_path / "gateway",
                imaging=ImagingConfig(scp),
            )
        )
        task = spawn(gateway.run(), name="gateway")
        try:
            await eventually(lambda: gateway.consultation_id == room.cid, timeout=30)
            imaging = gateway.imaging
            assert imaging is not None
            assert imaging.scp is not None
            runs = await asyncio.to_thread(storescu, imaging.scp.port, [sample_path("mr")])
            assert runs[0].returncode == 0, runs[0].stderr
            await eventually(lambda: imaging.forwarder.sent == 1, timeout=20)
            [row] = await room.indexed()
            assert (row.consultation_id, row.deidentified, row.sender_name) == (
                room.cid,
                True,
                "bed-1",
            )
        finally:
            await cancel_and_wait([task])
