"""The gateway's imaging path end to end on real sockets: storescu or pynetdicom -> the SCP
-> check -> de-identification -> the spool -> STOW-RS to a small real HTTP server (stdlib,
in a thread) standing for the server's route: it checks each part's Content-Digest and
answers X-Telemed-Stored-SHA256 as the contract says."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
from pydantic import SecretStr

from devices.dicom.contexts import NOT_AUTHORISED, OUT_OF_RESOURCES, SUCCESS
from devices.dicom.pacs import PacsSettings, find_studies
from devices.dicom.scp import ScpSettings
from devices.dicom.spool import SpoolLimits
from devices.dicom.stow import (
    StowAnswer,
    StowRefused,
    StowSend,
    StowUnreachable,
    parse_stored_header,
)
from devices.errors import DicomListenError
from runtime.tasks import cancel_and_wait, spawn
from telemed.gateway.imaging import (
    NO_CONSULTATION,
    GatewayImaging,
    ImagingConfig,
    NoConsultation,
)
from telemed.gateway_cli import config_from
from telemed.settings import GatewayOptions, Settings, SettingsError
from tests.devices.dicom.dicom_helpers import (
    CALLING,
    STORESCU,
    same_instance,
    sample_bytes,
    sample_path,
    send_pynetdicom,
    storescu,
)
from tests.devices.dicom.orthanc import orthanc
from tests.helpers import eventually

_PATH = re.compile(r"^/api/consultations/([^/]+)/dicomweb/studies$")


@dataclass
class StowServer:
    """What the tiny server received: (consultation, Part-10 bytes), in order."""

    stored: list[tuple[str, bytes]] = field(default_factory=list)
    down: bool = False
    requests: int = 0
    port: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Http

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        state = self.server.state
        state.requests += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        match = _PATH.match(self.path)
        if state.down:
            return self._answer(503, {})
        if match is None or self.headers.get("Authorization") != "Bearer gw":
            return self._answer(404 if match is None else 401, {})
        boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"')
        parts = body.split(f"--{boundary}".encode())[1:-1]
        digests = []
        for part in parts:
            head, _, payload = part.partition(b"\r\n\r\n")
            payload = payload.removesuffix(b"\r\n")
            headers = dict(
                line.split(": ", 1) for line in head.decode().strip().split("\r\n") if line
            )
            want = headers["Content-Digest"].removeprefix("sha-256=:").removesuffix(":")
            if base64.b64decode(want) != hashlib.sha256(payload).digest():
                return self._answer(409, {})
            uid = pydicom.dcmread(BytesIO(payload), stop_before_pixels=True).SOPInstanceUID
            state.stored.append((match.group(1), payload))
            digests.append(f"{uid}={hashlib.sha256(payload).hexdigest()}")
        self._answer(200, {"X-Telemed-Stored-SHA256": ",".join(digests)})

    def _answer(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Http(ThreadingHTTPServer):
    state: StowServer


@contextmanager
def stow_server() -> Iterator[StowServer]:
    http = _Http(("127.0.0.1", 0), _Handler)
    http.state = StowServer(port=http.server_address[1])
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield http.state
    finally:
        http.shutdown()
        http.server_close()
        thread.join()


def httpx_send(client: httpx.AsyncClient) -> StowSend:
    async def send(consultation: str, content_type: str, body: bytes) -> StowAnswer:
        try:
            response = await client.post(
                f"/api/consultations/{consultation}/dicomweb/studies",
                content=body,
                headers={"Content-Type": content_type, "Authorization": "Bearer gw"},
            )
        except httpx.HTTPError as exc:
            raise StowUnreachable(repr(exc)) from exc
        if response.status_code >= 500:
            raise StowUnreachable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise StowRefused(response.status_code, response.text)
        stored = parse_stored_header(response.headers.get("X-Telemed-Stored-SHA256"))
        return StowAnswer(response.status_code, stored)

    return send


@dataclass
class Bedside:
    imaging: GatewayImaging
    server: StowServer
    consultation: list[str | None]
    consent: dict[str, bool]

    @property
    def port(self) -> int:
        assert self.imaging.scp is not None
        return self.imaging.scp.port


@asynccontextmanager
async def bedside(
    tmp_path: Path, consultation: str | None = "c-1", spool: SpoolLimits | None = None
) -> AsyncIterator[Bedside]:
    settings = ScpSettings(port=0, host="127.0.0.1", allowed_calling=(CALLING, STORESCU))
    with stow_server() as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            current: list[str | None] = [consultation]
            consent: dict[str, bool] = {}

            async def consented(cid: str) -> bool:
                return consent.get(cid, False)

            config = ImagingConfig(settings, spool=spool or SpoolLimits())
            imaging = GatewayImaging(
                config, tmp_path, lambda: current[0], consented, httpx_send(http)
            )
            imaging.forwarder.backoff_s = 0.05
            task = spawn(imaging.run(), name="imaging")
            try:
                await eventually(lambda: imaging.scp is not None)
                yield Bedside(imaging, server, current, consent)
            finally:
                await cancel_and_wait([task])


def _study_pair() -> list[bytes]:
    """Two CT instances of one study, with a patient's identity filled in."""
    out = []
    for k in (1, 2):
        ds = pydicom.dcmread(sample_path("ct"))
        ds.PatientName = "Yamada^Taro"
        ds.PatientID = "JP-0012345"
        ds.SOPInstanceUID = pydicom.uid.UID(f"1.2.826.0.1.3680043.8.498.{k}")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


async def test_without_consent_instances_arrive_deidentified_with_consistent_uids(
    tmp_path: Path,
) -> None:
    async with bedside(tmp_path) as b:
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, _study_pair())
        assert statuses == [(SUCCESS, ""), (SUCCESS, "")]
        await eventually(lambda: len(b.server.stored) == 2)
        first, second = (pydicom.dcmread(BytesIO(p)) for _, p in b.server.stored)
        assert [c for c, _ in b.server.stored] == ["c-1", "c-1"]
        for ds in (first, second):
            assert ds.PatientIdentityRemoved == "YES"
            assert "Yamada" not in str(ds)
            assert ds.SOPInstanceUID.startswith("2.25.")
        assert first.StudyInstanceUID == second.StudyInstanceUID
        assert first.SOPInstanceUID != second.SOPInstanceUID
        assert first.PixelData == pydicom.dcmread(sample_path("ct")).PixelData
        # Counted once removed from the spool (the answer is checked first).
        await eventually(lambda: b.imaging.forwarder.sent == 2)
        assert b.imaging.spool.pending == 0


async def test_with_consent_storescu_instances_arrive_as_sent(tmp_path: Path) -> None:
    names = ["ct", "us-multiframe-jpeg", "jpeg-ls", "jpeg2000-lossless", "rle"]
    async with bedside(tmp_path) as b:
        b.consent["c-1"] = True
        runs = await asyncio.to_thread(storescu, b.port, [sample_path(n) for n in names])
        assert [r.returncode for r in runs] == [0] * len(runs), [r.stderr for r in runs]
        await eventually(lambda: len(b.server.stored) == len(names))
        for name, (_, stored) in zip(names, b.server.stored, strict=True):
            assert same_instance(stored, sample_bytes(name)), name
            assert "PatientIdentityRemoved" not in pydicom.dcmread(BytesIO(stored))


async def test_no_active_consultation_is_refused_at_c_store(tmp_path: Path) -> None:
    async with bedside(tmp_path, consultation=None) as b:
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, [sample_bytes("ct")])
        assert statuses == [(OUT_OF_RESOURCES, NO_CONSULTATION)]
        assert b.imaging.spool.pending == 0


async def test_burned_in_annotation_without_consent_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(sample_path("us-rgb"))
    ds.BurnedInAnnotation = "YES"
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    async with bedside(tmp_path) as b:
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, [buffer.getvalue()])
        assert statuses == [
            (NOT_AUTHORISED, "Burned-in annotation: needs the patient's imaging consent")
        ]
        assert b.server.stored == []


async def test_server_down_instances_wait_in_the_spool_then_go(tmp_path: Path) -> None:
    async with bedside(tmp_path) as b:
        b.server.down = True
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, _study_pair())
        assert statuses == [(SUCCESS, ""), (SUCCESS, "")]  # accepted: on disk now
        await eventually(lambda: b.server.requests >= 2)
        assert b.imaging.spool.pending == 2
        assert len(list((tmp_path / "imaging" / "spool").glob("*.dcm"))) == 2
        b.server.down = False
        await eventually(lambda: len(b.server.stored) == 2)
        await eventually(lambda: b.imaging.spool.pending == 0)
    # A gateway restarted with instances waiting sends them.
    async with bedside(tmp_path) as b:
        b.server.down = True
        await asyncio.to_thread(send_pynetdicom, b.port, [sample_bytes("mr")])
    async with bedside(tmp_path) as b:
        await eventually(lambda: len(b.server.stored) == 1)


async def test_a_full_spool_refuses_and_drops_nothing(tmp_path: Path) -> None:
    async with bedside(tmp_path, spool=SpoolLimits(max_files=1)) as b:
        b.server.down = True
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, _study_pair())
        assert statuses == [
            (SUCCESS, ""),
            (OUT_OF_RESOURCES, "gateway spool full: send again later"),
        ]
        b.server.down = False
        await eventually(lambda: len(b.server.stored) == 1)
        await eventually(lambda: b.imaging.spool.pending == 0)
        # Room again: the modality's second attempt goes through.
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, _study_pair()[1:])
        assert statuses == [(SUCCESS, "")]
        await eventually(lambda: len(b.server.stored) == 2)


def test_the_dicom_flags_and_settings(tmp_path: Path) -> None:
    options = GatewayOptions(name="bed-1", key=SecretStr("k"), site="wonju")
    settings = Settings(data_dir=tmp_path, gateway=options)
    base: dict[str, object] = {"server": None, "name": None, "key_file": None, "site": None}
    base |= {"device": []}
    base |= {"camera": None, "size": None, "consultation": None}
    assert config_from(argparse.Namespace(**base), settings).imaging is None
    flagged = config_from(
        argparse.Namespace(**base, dicom_port=11112, dicom_ae="BEDSIDE", dicom_allow="US1, CT2"),
        settings,
    )
    assert flagged.imaging is not None
    scp = flagged.imaging.scp
    assert (scp.port, scp.ae_title, scp.allowed_calling) == (11112, "BEDSIDE", ("US1", "CT2"))
    from_settings = Settings(
        data_dir=tmp_path,
        gateway=options.model_copy(update={"dicom_port": 104, "dicom_allow": ("US1",)}),
    )
    imaging = config_from(argparse.Namespace(**base), from_settings).imaging
    assert imaging is not None
    assert (imaging.scp.port, imaging.scp.ae_title) == (104, "TELEMED")
    with pytest.raises(SettingsError, match="allowed calling AE title"):
        config_from(argparse.Namespace(**base, dicom_port=11112), settings)


@pytest.mark.slow  # Orthanc's start and two associations: about 5 s here
async def test_a_study_pulled_from_the_pacs_arrives_deidentified(tmp_path: Path) -> None:
    """Orthanc as the site's PACS, loaded by storescu; the gateway finds the study (C-FIND)
    and retrieves it (C-GET) into the consultation through the same checks."""
    study = _study_pair()
    async with orthanc(tmp_path / "pacs") as pacs_server:
        paths = []
        for k, data in enumerate(study):
            path = tmp_path / f"{k}.dcm"
            path.write_bytes(data)
            paths.append(path)
        exe = shutil.which("storescu")
        assert exe is not None
        loaded = await asyncio.to_thread(
            subprocess.run,
            [exe, "-aec", pacs_server.ae_title, "127.0.0.1", str(pacs_server.dicom_port)]
            + [str(p) for p in paths],
            capture_output=True,
            text=True,
            check=False,
        )
        assert loaded.returncode == 0, loaded.stderr
        pacs = PacsSettings("127.0.0.1", pacs_server.dicom_port, pacs_server.ae_title)
        async with bedside(tmp_path / "gateway") as b:
            [match] = await asyncio.to_thread(find_studies, pacs, patient_id="JP-0012345")
            source = pydicom.dcmread(BytesIO(study[0]))
            assert match.study_instance_uid == source.StudyInstanceUID
            assert match.instances == 2
            retrieved = await b.imaging.pull_study(pacs, match.study_instance_uid)
            assert (retrieved.completed, retrieved.failed) == (2, 0)
            await eventually(lambda: len(b.server.stored) == 2)
            pulled = [pydicom.dcmread(BytesIO(p)) for _, p in b.server.stored]
            assert {ds.PatientIdentityRemoved for ds in pulled} == {"YES"}
            assert len({ds.StudyInstanceUID for ds in pulled}) == 1
            assert pulled[0].StudyInstanceUID != source.StudyInstanceUID
            assert all("Yamada" not in str(ds) for ds in pulled)
            # No consultation: nothing is pulled.
            b.consultation[0] = None
            with pytest.raises(NoConsultation):
                await b.imaging.pull_study(pacs, match.study_instance_uid)


async def test_an_instance_answered_late_is_not_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The association gives up waiting (0xA700): the instance is not spooled behind the
    modality's back (it will send it again)."""
    async with bedside(tmp_path) as b:
        assert b.imaging.scp is not None
        b.imaging.scp.settings = replace(b.imaging.scp.settings, answer_timeout_s=0.2)
        slow = asyncio.Event()

        async def consent(_: str) -> bool:
            await slow.wait()
            return False

        b.imaging._consent = consent
        statuses = await asyncio.to_thread(send_pynetdicom, b.port, [sample_bytes("ct")])
        assert statuses == [(OUT_OF_RESOURCES, "gateway busy: send again")]
        slow.set()
        await eventually(lambda: "answered before it was kept" in caplog.text)
        assert b.imaging.spool.pending == 0
        assert b.server.stored == []


async def test_a_taken_dicom_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ScpSettings(port=port, host="127.0.0.1", allowed_calling=(CALLING,))

        async def never(_: str, __: str, ___: bytes) -> StowAnswer:
            raise AssertionError("nothing to send")

        async def consent(_: str) -> bool:
            return False

        imaging = GatewayImaging(ImagingConfig(settings), tmp_path, lambda: None, consent, never)
        with pytest.raises(DicomListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            imaging.start()
        assert imaging.scp is None
