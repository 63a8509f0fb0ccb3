"""In-message fuzzing of the IntelliVue host (issue 11): the monitor's own replies (from the
simulator's monitor side), mutated inside and framed with a valid CRC."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from devices.protocols.common import DECODER_FAULT
from devices.protocols.intellivue.framing import Deframer, encode_frame
from devices.protocols.intellivue.host import HostState, IntelliVueHost
from devices.simulation.intellivue_monitor import MonitorProtocol
from devices.simulation.patient import Patient
from devices.simulation.simulators import Faults
from tests.devices import fuzz_harness as fh
from tests.fuzzing import budget, scale

#: The CI pass; ``make fuzz`` runs ten times as many.
MESSAGES = budget(20_000)
MEMORY_CEILING = 20_000_000


def _monitor_payloads() -> list[bytes]:
    """Ten seconds of a session between the host and the simulated monitor, sans-I/O: every
    payload the monitor sent (association, MDS create, numerics, alarms, waves)."""
    host, monitor = IntelliVueHost("iv"), MonitorProtocol(Patient(), Faults())
    sent: list[bytes] = []
    for step in range(100):
        now = step * 0.1
        host.tick(now)
        for request in host.datagrams_to_send():
            sent += monitor.receive_payload(request, now)
        sent += monitor.periodic(now)
        for payload in sent[-8:]:
            host.receive_datagram(payload, now)
    assert host.state is HostState.POLLING
    return sent


SEEDS = _monitor_payloads()


def _polling_host() -> IntelliVueHost:
    host = IntelliVueHost("fuzz")
    host.tick(0.0)
    for payload in SEEDS[:2]:  # association result, MDS create event
        host.receive_datagram(payload, 0.0)
    assert host.state is HostState.POLLING
    return host


def _mutant(rng: random.Random) -> bytes:
    seed = rng.choice(SEEDS)
    # The data header's fields (session, context, ro type, lengths, invoke id, command,
    # length) and the poll reply's (counts and lengths): the offsets where lies hurt most.
    return encode_frame(fh.mutate_binary(rng, seed, fields=(0, 2, 4, 6, 8, 10, 12, 14, 18)))


def test_seeds_cover_every_reply_kind() -> None:
    kinds = {p[0] for p in SEEDS}
    assert {0x0E, 0xE1} <= kinds and len(SEEDS) > 20


@pytest.mark.slow  # the CI pass of the fuzzer: seconds of CPU, not for make test-fast
@pytest.mark.cpu
@pytest.mark.timeout(600 * scale())  # a hang guard: loaded, the pass can take minutes
def test_mutated_monitor_messages_never_escape_nor_stall() -> None:
    figures, failures = fh.run("intellivue", _polling_host, _mutant, MESSAGES)
    print(f"\nintellivue: {figures}")
    assert failures == []
    assert figures.messages == MESSAGES
    assert figures.peak_bytes < MEMORY_CEILING


@pytest.mark.parametrize("path", fh.corpus("intellivue"), ids=lambda p: p.name)
def test_every_input_that_once_crashed_is_decoded_now(path: Path) -> None:
    data = path.read_bytes()
    assert [p for p in Deframer().receive_data(data) if isinstance(p, bytes)]  # a frame
    host = _polling_host()
    start = time.process_time()
    host.receive_data(data, 0.0)
    assert time.process_time() - start < fh.BUDGET_S
    assert DECODER_FAULT not in host.stats.errors
