"""The spool (durable, bounded, oldest first, survives a restart) and the STOW-RS request
(read back by the server's own parser and checks)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from devices.dicom.spool import Spool, Spooled, SpoolFull, SpoolLimits
from devices.dicom.stow import (
    Forwarder,
    StowAnswer,
    content_digest,
    encode_stow,
    parse_stored_header,
)
from signaling.imaging.multipart import MultipartLimits, related_boundary
from signaling.imaging.stow import Checked, check_upload
from tests.devices.dicom.dicom_helpers import sample_bytes


def test_spool_keeps_oldest_first_and_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first = spool.put("c-1", b"one", deidentified=True, sop_instance_uid="1.2.3")
    spool.put("c:2.x_y", b"two!", deidentified=False, sop_instance_uid="1.2.4")
    (tmp_path / "spool" / "half-written.tmp").write_bytes(b"x")
    again = Spool(tmp_path / "spool")
    assert again.pending == 2
    assert not list((tmp_path / "spool").glob("*.tmp"))
    oldest = again.oldest()
    assert oldest == first
    assert again.read(oldest) == b"one"
    again.remove(oldest)
    second = again.oldest()
    assert second is not None
    assert (second.consultation_id, second.deidentified, second.sop_instance_uid) == (
        "c:2.x_y",
        False,
        "1.2.4",
    )
    aside = again.set_aside(second)
    assert aside.read_bytes() == b"two!"
    assert (again.oldest(), again.pending) == (None, 0)


def test_spool_is_bounded_and_refuses_names_it_cannot_hold(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolLimits(max_files=2, max_bytes=10))
    spool.put("c", b"12345", deidentified=True, sop_instance_uid="1.2")
    with pytest.raises(SpoolFull, match="bytes"):
        spool.put("c", b"123456", deidentified=True, sop_instance_uid="1.3")
    spool.put("c", b"1", deidentified=True, sop_instance_uid="1.4")
    with pytest.raises(SpoolFull, match="instances"):
        spool.put("c", b"1", deidentified=True, sop_instance_uid="1.5")
    with pytest.raises(ValueError, match="consultation id"):
        spool.put("../x", b"1", deidentified=True, sop_instance_uid="1.6")
    with pytest.raises(ValueError, match="not a UID"):
        spool.put("c", b"1", deidentified=True, sop_instance_uid="1.2~x")
    assert spool.pending == 2


def test_the_stow_request_reads_back_through_the_servers_parser() -> None:
    data = sample_bytes("ct")
    content_type, body = encode_stow(data)
    boundary = related_boundary(content_type, "application/dicom")
    [checked] = check_upload(body, boundary, MultipartLimits())
    assert isinstance(checked, Checked)
    assert checked.data == data
    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert content_digest(data).startswith("sha-256=:")


def test_the_stored_header() -> None:
    assert parse_stored_header("1.2=AB, 1.3=cd,broken,=x") == {"1.2": "ab", "1.3": "cd"}
    assert parse_stored_header(None) == {}


class _SpooledWhileLooking(Spool):
    """A spool that takes an instance (and wakes the forwarder for it) just after it was
    found empty: the window between the forwarder's look and its wait."""

    forwarder: Forwarder | None = None
    arrived = False

    def oldest(self) -> Spooled | None:
        found = super().oldest()
        if found is None and not self.arrived and self.forwarder is not None:
            self.arrived = True
            self.put("c-1", b"late", deidentified=True, sop_instance_uid="1.2.9")
            self.forwarder.wake()
        return found


async def test_an_instance_spooled_while_the_forwarder_looks_is_sent_without_the_idle_wait(
    tmp_path: Path,
) -> None:
    """Found in CI: a PACS pull's second instance waited the 5 s idle time because the wake
    for it came between the forwarder finding the spool empty and clearing its wake flag."""
    spool = _SpooledWhileLooking(tmp_path)
    sent: asyncio.Queue[str] = asyncio.Queue()

    async def send(consultation_id: str, content_type: str, body: bytes) -> StowAnswer:
        await sent.put(consultation_id)
        return StowAnswer(200, {"1.2.9": hashlib.sha256(b"late").hexdigest()})

    # An idle wait of an hour: only the wake can send the instance within the test.
    forwarder = Forwarder(spool, send, idle_s=3600)
    spool.forwarder = forwarder
    task = asyncio.create_task(forwarder.run())
    try:
        async with asyncio.timeout(10):
            assert await sent.get() == "c-1"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert spool.arrived
