"""The gateway's journal and its uploader: one numeric per parameter, device and second;
bounded by age and count (the oldest dropped, counted and logged); kept across a restart,
readable after a kill -9 mid-write; sent oldest first, kept while the server is away and
backfilled when it returns; a bad entry found and dropped without blocking the rest."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from signaling.errors import SignalingError
from signaling.journal import Journal, JournalLimits, JournalStore
from signaling.uploader import Uploader
from tests.helpers import eventually

T0 = 1_800_000_000.0


def numeric(second: float, value: float | None = 97.0, **fields: Any) -> dict[str, Any]:
    return {
        "device": "oximeter-1",
        "code": "spo2",
        "unit": "%",
        "value": value,
        "time": T0 + second,
        "mdc": 150456,
        "refid": "MDC_PULS_OXIM_SAT_O2",
        "loinc": "59408-5",
        "quality": [],
        "derived": False,
        **fields,
    }


ALARM = {
    "type": "alarm",
    "id": "a-1",
    "device": "oximeter-1",
    "code": "spo2",
    "condition": "spo2_low",
    "priority": "medium",
    "kind": "physiological",
    "source": "limit",
    "state": "active",
    "started": T0 + 3.0,
}


class Where:
    """The consultation the gateway is in, as the journal asks for it."""

    def __init__(self, cid: str | None = "c-1") -> None:
        self.cid = cid

    def __call__(self) -> str | None:
        return self.cid


def journal(path: Path | None = None, limits: JournalLimits | None = None) -> Journal:
    return Journal(JournalStore.open(path, limits), Where())


async def test_one_numeric_per_parameter_device_and_second_every_alarm_change() -> None:
    j = journal()
    j.add_numeric(numeric(0.1, 96.0))
    j.add_numeric(numeric(0.9, 97.0))  # same second: replaces
    j.add_numeric(numeric(1.2, 98.0))
    j.add_numeric(numeric(1.3, 70.0, code="pulse_rate", unit="/min"))
    j.add_numeric(numeric(1.4, 71.0, code="pulse_rate", unit="/min", derived=True))
    j.add_alarm(ALARM)
    j.add_alarm({**ALARM, "acknowledged_by": "Dr K", "acknowledged_at": T0 + 5.0})
    j.add_limits({"limits": [{"code": "spo2", "low": 90, "delay_s": 10}], "time": T0 + 2.0})
    await j.flush()
    j.add_numeric(numeric(1.8, 99.0))  # same second after a flush: replaces in the store
    await j.flush()
    batch = j.store.pending(100)
    assert batch is not None
    assert batch.consultation_id == "c-1"
    assert [(n["code"], n["value"], n["derived"]) for n in batch.body["numerics"]] == [
        ("spo2", 97.0, False),
        ("pulse_rate", 70.0, False),
        ("pulse_rate", 71.0, True),
        ("spo2", 99.0, False),
    ]
    assert [a.get("acknowledged_by") for a in batch.body["alarms"]] == [None, "Dr K"]
    assert "type" not in batch.body["alarms"][0]  # the server's fields only
    assert batch.body["limits"][0]["limits"][0]["low"] == 90.0
    j.store.remove(batch.seqs)
    assert j.store.pending(100) is None


async def test_nothing_is_kept_outside_a_consultation_and_bad_entries_are_refused() -> None:
    where = Where(None)
    j = Journal(JournalStore.open(None), where)
    j.add_numeric(numeric(0))
    assert (j.buffered, j.unattached) == (0, 1)
    where.cid = "c-1"
    with pytest.raises(ValueError, match="time"):
        j.add_numeric(numeric(0) | {"time": "soon"})
    with pytest.raises(ValueError, match="priority"):
        j.add_alarm({**ALARM, "priority": "urgent"})
    assert j.buffered == 0


async def test_batches_are_per_consultation_oldest_first() -> None:
    where = Where("c-1")
    j = Journal(JournalStore.open(None), where)
    j.add_numeric(numeric(0))
    where.cid = "c-2"
    j.add_numeric(numeric(1))
    where.cid = "c-1"
    j.add_numeric(numeric(2))
    await j.flush()
    first = j.store.pending(10)
    assert first is not None
    assert (first.consultation_id, len(first)) == ("c-1", 2)
    j.store.remove(first.seqs)
    second = j.store.pending(10)
    assert second is not None
    assert (second.consultation_id, len(second)) == ("c-2", 1)


async def test_bounded_by_count_and_age_oldest_dropped(caplog: pytest.LogCaptureFixture) -> None:
    j = journal(limits=JournalLimits(max_age_s=100.0, max_entries=50))
    for s in range(80):
        j.add_numeric(numeric(s))
    with caplog.at_level(logging.WARNING, "signaling.journal"):
        await j.flush()
    assert j.store.count() == 50
    assert j.store.dropped == 30
    batch = j.store.pending(100)
    assert batch is not None
    assert [n["time"] for n in batch.body["numerics"]] == [T0 + s for s in range(30, 80)]
    assert "dropped 0 entries older than" in caplog.text and "30 beyond 50" in caplog.text

    # Two minutes on, what was measured more than 100 s before is gone too.
    j.store.append([], now=T0 + 150.0)
    assert j.store.count() == 30
    assert j.store.dropped == 50


async def test_kept_across_a_restart_and_an_unreadable_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "gateway" / "journal.sqlite3"
    j = journal(path)
    j.add_numeric(numeric(0))
    j.add_alarm(ALARM)
    await j.close()
    again = journal(path)
    assert again.store.count() == 2
    await again.close()

    path.write_bytes(b"this is not a database" * 100)
    fresh = journal(path)
    assert fresh.store.count() == 0
    fresh.add_numeric(numeric(5))
    await fresh.close()
    assert [p.name.split("-")[0] for p in path.parent.glob("*.unreadable-*")] == [
        "journal.sqlite3.unreadable"
    ]


_WRITER = """
import sys, time
from pathlib import Path
from signaling.journal import JournalStore, numeric_entry
store = JournalStore.open(Path(sys.argv[1]))
t0 = float(sys.argv[2])
n = 0
print("ready", flush=True)
while True:
    batch = [numeric_entry("c-1", {"device": "d", "code": f"p{k}", "unit": "%", "value": k,
                                  "time": t0 + n}) for k in range(200)]
    store.append(batch, now=t0 + n)
    n += 1
"""


@pytest.mark.slow
@pytest.mark.cpu  # processes started and killed: nothing timed
def test_a_kill_mid_write_leaves_a_readable_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    for round_ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WRITER), str(path), str(T0 + round_ * 1000)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == b"ready"
        # Let it write a while: wait until the file has grown, then kill it mid-stream.
        while not path.exists() or path.stat().st_size + _wal(path) < 200_000 * (round_ + 1):
            time.sleep(0.01)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
        store = JournalStore.open(path)
        try:
            count = store.count()
            assert count > 0 and count % 200 == 0  # whole transactions only
            batch = store.pending(count)
            assert batch is not None
            assert all(isinstance(n["value"], float) for n in batch.body["numerics"])
        finally:
            store.close()
        check = sqlite3.connect(path)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            check.close()


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


class FakeServer:
    """Takes batches while up; refuses an entry whose value is 666 with a 422."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def post(self, cid: str, body: dict[str, list[Any]]) -> object:
        if not self.up:
            raise httpx.ConnectError("connection refused")
        if cid == "c-gone":
            raise SignalingError(404, "no such consultation")
        if any(n["value"] == 666 for n in body["numerics"]):
            raise SignalingError(422, "numerics: unit differs")
        self.received.append((cid, json.loads(json.dumps(body))))
        return {"numerics": len(body["numerics"]), "alarms": len(body["alarms"])}

    def seconds(self) -> list[float]:
        return [n["time"] - T0 for _, body in self.received for n in body["numerics"]]


async def _no_sleep(_: float) -> None:
    return None


async def _short_sleep(_: float) -> None:
    await asyncio.sleep(0.01)


async def test_kept_while_the_server_is_away_and_backfilled_oldest_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    j = journal()
    server = FakeServer()
    uploader = Uploader(j, server.post, batch_size=25, sleep=_no_sleep)
    for s in range(10):
        j.add_numeric(numeric(s))
    assert await uploader.step() is False  # a short batch: all sent
    server.up = False
    with caplog.at_level(logging.WARNING, "signaling.uploader"):
        for s in range(10, 70):
            j.add_numeric(numeric(s))
            if s % 10 == 0:
                assert await uploader.step() is None  # kept
        assert j.store.count() + j.buffered == 60
        server.up = True
        results = [await uploader.step() for _ in range(3)]
    assert results == [True, True, False]  # 25 + 25 + 10
    assert server.seconds() == list(range(70))
    assert (uploader.sent, uploader.failures, j.store.count()) == (70, 6, 0)
    assert caplog.text.count("cannot send the journal") == 1  # once per outage
    assert "takes the journal again" in caplog.text


async def test_a_bad_entry_is_found_and_dropped_the_rest_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    j = journal()
    server = FakeServer()
    uploader = Uploader(j, server.post, batch_size=16, sleep=_no_sleep)
    for s in range(40):
        j.add_numeric(numeric(s, 666.0 if s == 11 else 97.0))
    with caplog.at_level(logging.ERROR, "signaling.uploader"):
        for _ in range(20):
            if await uploader.step() is False:
                break
    assert server.seconds() == [s for s in range(40) if s != 11]
    assert (uploader.refused, j.store.count()) == (1, 0)
    assert "refused 1 journal entries of c-1 for good: numerics: unit differs" in caplog.text


async def test_refused_for_good_is_forgotten_and_run_survives_faults() -> None:
    where = Where("c-gone")
    j = Journal(JournalStore.open(None), where)
    server = FakeServer()
    j.add_numeric(numeric(0))
    uploader = Uploader(j, server.post, sleep=_no_sleep)
    assert await uploader.step() is True
    assert (uploader.refused, j.store.count()) == (1, 0)

    # run(): a post that raises something unforeseen is logged and tried again.
    where.cid = "c-1"
    calls = 0

    async def flaky(cid: str, body: dict[str, list[Any]]) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unforeseen")
        return await server.post(cid, body)

    j.add_numeric(numeric(1))
    task_uploader = Uploader(j, flaky, sleep=_short_sleep)
    task = asyncio.create_task(task_uploader.run())
    try:
        await eventually(lambda: server.seconds() == [1.0])
    finally:
        task.cancel()
        await asyncio.wait([task])


def test_a_numeric_without_a_value_is_journaled_as_the_server_takes_it() -> None:
    """A device's "no value" (a sentinel, probe off) is journaled with ``value: null``: the
    server requires the field, so leaving it out had every such numeric refused on upload."""
    from signaling.api_models import NumericIn
    from signaling.journal import numeric_entry

    entry = numeric_entry("c-1", numeric(1000.0, value=None))
    body = json.loads(entry.body)
    assert "value" in body and body["value"] is None
    assert NumericIn.model_validate(body).value is None
