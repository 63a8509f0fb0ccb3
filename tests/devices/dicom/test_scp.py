"""The Storage SCP over real associations: dcmtk's storescu and pynetdicom as modalities,
a raw socket for what they never do (a wrong transfer syntax, an abort mid P-DATA)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import struct
from io import BytesIO
from typing import Any

import pydicom
import pytest
from pydicom.filereader import _read_file_meta_info, read_preamble
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from devices.dicom.contexts import CANNOT_UNDERSTAND, DOES_NOT_MATCH, OUT_OF_RESOURCES, SUCCESS
from devices.dicom.scp import ScpSettings
from tests.devices.dicom.dicom_helpers import (
    CALLING,
    SAMPLES,
    running_scp,
    same_instance,
    sample_bytes,
    sample_path,
    send_pynetdicom,
    storescu,
)
from tests.devices.dicom.raw_scu import RawScu
from tests.fuzzing import budget
from tests.helpers import eventually


def _body(part10: bytes) -> bytes:
    stream = BytesIO(part10)
    read_preamble(stream, False)
    _read_file_meta_info(stream)
    return stream.read()


async def test_storescu_sends_every_kind_and_each_arrives_identical() -> None:
    async with running_scp() as c:
        runs = await asyncio.to_thread(storescu, c.scp.port, [sample_path(n) for n in SAMPLES])
        assert [r.returncode for r in runs] == [0] * len(runs), [r.stderr for r in runs]
        assert len(c.arrivals) == len(SAMPLES)
        for name, arrival in zip(SAMPLES, c.arrivals, strict=True):
            assert same_instance(arrival.part10, sample_bytes(name)), name
            assert arrival.verdict.sha256 == hashlib.sha256(arrival.part10).hexdigest()
            assert arrival.calling_ae == "STORESCU"
        assert c.scp.accepted == len(SAMPLES)


async def test_pynetdicom_sends_every_kind_and_each_arrives_identical() -> None:
    files = [sample_bytes(n) for n in SAMPLES]
    async with running_scp() as c:
        statuses = await asyncio.to_thread(send_pynetdicom, c.scp.port, files)
        assert statuses == [(SUCCESS, "")] * len(files)
        for name, arrival in zip(SAMPLES, c.arrivals, strict=True):
            assert same_instance(arrival.part10, sample_bytes(name)), name
        multiframe = c.arrivals[list(SAMPLES).index("us-multiframe-jpeg")]
        assert multiframe.verdict.frames == 30


async def test_verification() -> None:
    async with running_scp() as c:

        def echo() -> int:
            ae = AE(ae_title=CALLING)
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", c.scp.port, ae_title="TELEMED")
            assert assoc.is_established
            status = assoc.send_c_echo()
            assoc.release()
            return int(status.Status)

        assert await asyncio.to_thread(echo) == SUCCESS


async def test_unknown_calling_ae_is_rejected_at_association() -> None:
    async with running_scp() as c:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(send_pynetdicom, c.scp.port, [sample_bytes("ct")], "INTRUDER")
        runs = await asyncio.to_thread(storescu, c.scp.port, [sample_path("ct")], "INTRUDER")
        assert runs[0].returncode != 0
        assert "Association Rejected" in runs[0].stderr
        assert c.arrivals == []


async def test_refusals_carry_a_status_and_reason_and_the_association_goes_on() -> None:
    truncated = sample_bytes("MR_truncated.dcm")
    ds = pydicom.dcmread(BytesIO(sample_bytes("ct")))
    del ds.PixelData
    no_pixels = BytesIO()
    ds.save_as(no_pixels, enforce_file_format=True)
    files = [truncated, no_pixels.getvalue(), sample_bytes("mr")]
    async with running_scp() as c:
        statuses = await asyncio.to_thread(send_pynetdicom, c.scp.port, files)
        assert statuses[0][0] == DOES_NOT_MATCH
        assert "Pixel Data is 8130 bytes" in statuses[0][1]
        assert statuses[1] == (DOES_NOT_MATCH, "no Pixel Data: CT Image Storage requires it")
        assert statuses[2] == (SUCCESS, "")
        assert len(c.arrivals) == 1


async def test_wrong_transfer_syntax_is_refused() -> None:
    """Explicit VR bytes on an implicit VR context: pydicom would guess and read on."""
    source = sample_bytes("mr")
    ds = pydicom.dcmread(BytesIO(source))
    async with running_scp() as c:

        def send() -> tuple[int, str]:
            scu = RawScu(c.scp.port, CALLING)
            assert scu.associate(ds.SOPClassUID, "1.2.840.10008.1.2") == 2
            result = scu.store(ds.SOPClassUID, ds.SOPInstanceUID, _body(source))
            scu.release()
            return result

        status, comment = await asyncio.to_thread(send)
        assert (status, comment) == (
            CANNOT_UNDERSTAND,
            "data set not encoded as Implicit VR Little Endian",
        )
        assert c.arrivals == []


@pytest.mark.parametrize("cut", ["abort", "reset"])
async def test_an_association_cut_mid_p_data_forwards_nothing(cut: str) -> None:
    source = sample_bytes("ct")
    ds = pydicom.dcmread(BytesIO(source))
    body = _body(source)
    async with running_scp() as c:

        def send_half() -> None:
            scu = RawScu(c.scp.port, CALLING)
            assert scu.associate(ds.SOPClassUID, "1.2.840.10008.1.2.1") == 2
            # A complete instance first: it is kept.
            assert scu.store(ds.SOPClassUID, ds.SOPInstanceUID, body) == (SUCCESS, "")
            scu.send_pdv(scu.command(ds.SOPClassUID, "1.2.3.4", 2), command=True, last=True)
            scu.send_pdv(body[: len(body) // 2], command=False, last=False)
            scu.abort() if cut == "abort" else scu.reset()

        await asyncio.to_thread(send_half)
        # The SCP is still there and takes the next modality's instance.
        statuses = await asyncio.to_thread(send_pynetdicom, c.scp.port, [sample_bytes("mr")])
        assert statuses == [(SUCCESS, "")]
        await eventually(lambda: len(c.arrivals) == 2)
        uids = [a.verdict.sop_instance_uid for a in c.arrivals]
        assert uids == [ds.SOPInstanceUID, pydicom.dcmread(sample_path("mr")).SOPInstanceUID]


async def test_the_consumers_answer_is_the_modalitys_status() -> None:
    async with running_scp(lambda a: (OUT_OF_RESOURCES, "no active consultation")) as c:
        statuses = await asyncio.to_thread(send_pynetdicom, c.scp.port, [sample_bytes("ct")])
        assert statuses == [(OUT_OF_RESOURCES, "no active consultation")]


async def test_no_answer_in_time_is_out_of_resources() -> None:
    async with running_scp(None, queue_size=1, answer_timeout_s=0.5) as c:
        files = [sample_bytes("ct"), sample_bytes("mr")]
        statuses = await asyncio.to_thread(send_pynetdicom, c.scp.port, files)
        assert statuses == [
            (OUT_OF_RESOURCES, "gateway busy: send again"),  # queued, never answered
            (OUT_OF_RESOURCES, "gateway busy: send again"),  # queue full
        ]


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="allowed calling"):
        ScpSettings(allowed_calling=())
    with pytest.raises(ValueError, match="1 to 16"):
        ScpSettings(ae_title="A" * 17, allowed_calling=("X",))


async def test_accepted_sockets_have_nodelay_and_quick_ack() -> None:
    async with running_scp() as c:

        def open_and_look() -> tuple[int, str]:
            scu = RawScu(c.scp.port, CALLING)
            assert scu.associate("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1") == 2
            server = c.scp._server
            assert server is not None
            [assoc] = server.active_associations
            transport: Any = assoc.dul.socket
            sock = transport.socket
            option = int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            scu.release()
            return option, type(sock).__name__

        assert await asyncio.to_thread(open_and_look) == (1, "_ReceivingSocket")


async def test_an_instance_over_the_size_bound_closes_its_association_and_nothing_else() -> None:
    """Three 39 kB CTs on one association pass a 64 KiB bound (it is per instance); a PDU
    announcing 256 MiB is cut at the bound: the connection closed, nothing forwarded, and
    the next association is served."""
    source = sample_bytes("ct")
    ds = pydicom.dcmread(BytesIO(source))
    body = _body(source)
    assert 32_000 < len(body) < 64 * 1024
    async with running_scp(max_instance_bytes=64 * 1024) as c:

        def send() -> str:
            scu = RawScu(c.scp.port, CALLING)
            assert scu.associate(ds.SOPClassUID, "1.2.840.10008.1.2.1") == 2
            for k in range(3):
                assert scu.store(ds.SOPClassUID, ds.SOPInstanceUID, body, k + 1) == (SUCCESS, "")
            scu.send_pdv(scu.command(ds.SOPClassUID, "1.2.3.4", 4), command=True, last=True)
            header = struct.pack(">BBI", 0x04, 0, 256 * 1024 * 1024)
            try:
                scu.sock.sendall(header + bytes(1024 * 1024))
                scu.read_pdu()
            except (ConnectionError, OSError) as exc:
                return type(exc).__name__
            finally:
                scu.sock.close()
            return "the SCP kept reading"

        outcome = await asyncio.to_thread(send)
        assert outcome != "the SCP kept reading"
        statuses = await asyncio.to_thread(send_pynetdicom, c.scp.port, [sample_bytes("mr")])
        assert statuses == [(SUCCESS, "")]
        await eventually(lambda: len(c.arrivals) == 4)
        assert [a.verdict.sop_instance_uid for a in c.arrivals][:3] == [ds.SOPInstanceUID] * 3
    with pytest.raises(ValueError, match="at least 64 KiB"):
        ScpSettings(allowed_calling=("X",), max_instance_bytes=1000)


async def test_fuzz_mutated_instances_inside_valid_frames_each_get_a_status() -> None:
    """Hostile data sets inside well-formed P-DATA on one association: every one answered
    with a status, only accepted ones handed over, the association and SCP go on."""
    rng = random.Random(13)
    source = sample_bytes("ct")
    ds = pydicom.dcmread(BytesIO(source))
    body = _body(source)
    mutated = []
    for _ in range(budget(40)):
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at : at + rng.randint(0, 8)] = rng.randbytes(rng.randint(0, 8))
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        mutated.append(bytes(data))
    async with running_scp() as c:

        def send_all() -> list[tuple[int, str]]:
            scu = RawScu(c.scp.port, CALLING)
            assert scu.associate(ds.SOPClassUID, "1.2.840.10008.1.2.1") == 2
            results = [
                scu.store(ds.SOPClassUID, ds.SOPInstanceUID, m, k + 1)
                for k, m in enumerate(mutated)
            ]
            results.append(scu.store(ds.SOPClassUID, ds.SOPInstanceUID, body, 999))
            scu.release()
            return results

        results = await asyncio.to_thread(send_all)
        assert len(results) == len(mutated) + 1
        assert results[-1] == (SUCCESS, "")
        accepted = sum(1 for status, _ in results if status == SUCCESS)
        assert len(c.arrivals) == accepted
        assert all(status in (SUCCESS, CANNOT_UNDERSTAND, DOES_NOT_MATCH) for status, _ in results)
        assert 1 < accepted < len(results), "the mutations should both pass and fail"
