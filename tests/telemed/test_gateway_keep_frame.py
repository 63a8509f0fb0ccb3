"""A doctor keeps a frame of the bedside ultrasound: the gateway builds a Secondary Capture
and sends it on the path a modality's instance takes, to the real server, with the gateway's
own login; an independent DICOMweb client (dicomweb-client) finds it and reads it back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import pytest_asyncio
from dicomweb_client.api import DICOMwebClient

from devices.dicom.deidentify import BURNED_IN_REASON
from devices.dicom.scp import ScpSettings
from devices.dicom.stow import StowAnswer
from telemed.gateway.imaging import (
    NO_CONSULTATION,
    GatewayImaging,
    ImagingConfig,
    KeptFrame,
    NoConsultation,
)
from tests.devices.dicom.dicom_helpers import STORESCU
from tests.helpers import eventually
from tests.signaling.imaging.room import ImagingRoom
from tests.telemed.imaging_gateway import imaging_gateway

KORIYAMA = timezone(timedelta(hours=9))
AT = datetime(2026, 12, 2, 19, 5, 0, tzinfo=KORIYAMA)
FRAME = np.random.default_rng(13).integers(0, 256, (120, 161, 3), dtype=np.uint8)
RGB = np.ascontiguousarray(FRAME[:, :, ::-1]).tobytes()


@dataclass
class Bedside:
    room: ImagingRoom
    imaging: GatewayImaging

    async def keep(self, **kwargs: Any) -> KeptFrame:
        options: dict[str, Any] = {"source": "ultrasound", "device": "HDMI capture", "at": AT}
        return await self.imaging.keep_frame(FRAME, **(options | kwargs))

    async def read_back(self, sop_instance_uid: str) -> tuple[list[str], pydicom.Dataset]:
        """As the consulting doctor: the SOP Instance UIDs QIDO-RS lists, and the instance
        WADO-RS returns (looked up by its study and series from QIDO)."""
        room = self.room

        def read() -> tuple[list[str], pydicom.Dataset]:
            web = DICOMwebClient(
                url=room.server.base_url + room.base,
                headers={"Authorization": f"Bearer {room.tokens['dk']}"},
            )
            found = web.search_for_instances()
            uids = [pydicom.Dataset.from_json(f).SOPInstanceUID for f in found]
            [match] = [
                pydicom.Dataset.from_json(f)
                for f in found
                if pydicom.Dataset.from_json(f).SOPInstanceUID == sop_instance_uid
            ]
            instance = web.retrieve_instance(
                match.StudyInstanceUID, match.SeriesInstanceUID, sop_instance_uid
            )
            return uids, instance

        return await asyncio.to_thread(read)


@pytest_asyncio.fixture
async def bedside(tmp_path: Path) -> AsyncIterator[Bedside]:
    async with imaging_gateway(tmp_path, seoul=False) as (room, imaging):
        yield Bedside(room, imaging)


@pytest.mark.slow  # a real server with its accounts: several seconds on two loaded cores
@pytest.mark.cpu  # nothing timed: what is kept and how, waited for with eventually
async def test_a_kept_frame_with_consent_lands_in_the_consultation_as_captured(
    bedside: Bedside,
) -> None:
    room = bedside.room
    assert (await room.consent(True)).status_code == 200
    kept = await bedside.keep()
    assert (kept.kept, kept.deidentified, kept.reason) == (True, False, "")
    await eventually(lambda: bedside.imaging.forwarder.sent == 1)
    [row] = await room.indexed()
    assert (row.consultation_id, row.sop_instance_uid, row.deidentified) == (
        room.cid,
        kept.sop_instance_uid,
        False,
    )
    uids, ds = await bedside.read_back(kept.sop_instance_uid)
    assert uids == [kept.sop_instance_uid]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert (ds.Modality, ds.ConversionType, ds.BurnedInAnnotation) == ("US", "DV", "YES")
    assert ds.PixelData == RGB
    assert ds.pixel_array.tobytes() == RGB
    assert "PatientIdentityRemoved" not in ds
    # A second frame of the same source joins the same study and series.
    second = await bedside.keep()
    await eventually(lambda: bedside.imaging.forwarder.sent == 2)
    _, again = await bedside.read_back(second.sop_instance_uid)
    assert (again.StudyInstanceUID, again.SeriesInstanceUID) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
    )
    assert again.InstanceNumber == ds.InstanceNumber + 1


@pytest.mark.slow  # a real server with its accounts: several seconds on two loaded cores
@pytest.mark.cpu  # nothing timed: what is kept and how, waited for with eventually
async def test_without_consent_a_frame_is_deidentified_and_burned_in_text_refused(
    bedside: Bedside,
) -> None:
    room = bedside.room
    refused = await bedside.keep()  # burned_in=True: a captured screen shows text
    assert refused == KeptFrame(False, "", reason=BURNED_IN_REASON)
    assert bedside.imaging.spool.pending == 0

    kept = await bedside.keep(burned_in=False)
    assert (kept.kept, kept.deidentified) == (True, True)
    assert kept.sop_instance_uid.startswith("2.25.")
    await eventually(lambda: bedside.imaging.forwarder.sent == 1)
    [row] = await room.indexed()  # the refused frame was never sent
    assert (row.sop_instance_uid, row.deidentified) == (kept.sop_instance_uid, True)
    uids, ds = await bedside.read_back(kept.sop_instance_uid)
    assert uids == [kept.sop_instance_uid]
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.BurnedInAnnotation == "NO"
    assert ds.PixelData == RGB
    # The study and series the gateway gave it are remapped too (2.25, not its own).
    assert ds.StudyInstanceUID.startswith("2.25.")
    assert ds.SeriesInstanceUID.startswith("2.25.")
    audited = await room.audit("imaging.stored")
    assert [(a, d["deidentified"]) for a, _, d in audited] == [("gw", True)]


async def test_no_active_consultation_keeps_nothing(tmp_path: Path) -> None:
    async def consent(_: str) -> bool:
        raise AssertionError("no consultation to ask about")

    async def never(_: str, __: str, ___: bytes) -> StowAnswer:
        raise AssertionError("nothing to send")

    settings = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
    imaging = GatewayImaging(ImagingConfig(settings), tmp_path, lambda: None, consent, never)
    with pytest.raises(NoConsultation, match=NO_CONSULTATION):
        await imaging.keep_frame(FRAME, source="ultrasound", device="capture", at=AT)
    assert imaging.spool.pending == 0


async def test_a_bad_frame_is_refused_before_anything_is_kept(tmp_path: Path) -> None:
    async def consent(_: str) -> bool:
        return True

    async def never(_: str, __: str, ___: bytes) -> StowAnswer:
        raise AssertionError("nothing to send")

    settings = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(STORESCU,))
    imaging = GatewayImaging(ImagingConfig(settings), tmp_path, lambda: "c-1", consent, never)
    with pytest.raises(ValueError, match="must be uint8"):
        await imaging.keep_frame(
            FRAME.astype(np.float32), source="ultrasound", device="capture", at=AT
        )
    assert imaging.spool.pending == 0
