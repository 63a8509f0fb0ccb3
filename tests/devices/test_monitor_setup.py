"""The simulated monitors set up as real ones are (issue 11): pressures in kPa, temperature in
degF, invasive lines in. What each sends carries its unit (IntelliVue's unit code, HL7's
OBX-6), and the host decodes it back to the patient's values in the canonical units."""

from __future__ import annotations

import pytest

from devices.model import FrameError, Observation
from devices.protocols.hl7_pcd import Hl7Decoder
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue.host import HostState, IntelliVueHost
from devices.protocols.mllp import frame
from devices.simulation.hl7_monitor import Hl7MonitorSimulator
from devices.simulation.intellivue_monitor import DIM_FAHR, DIM_KPA, MonitorProtocol
from devices.simulation.monitor_setup import INVASIVE_USUAL, MonitorSetup
from devices.simulation.patient import Patient
from devices.simulation.simulators import Faults

#: What the simulated patient has (mm[Hg], Cel).
TRUE = {
    "nibp_sys": 118.0,
    "nibp_dia": 76.0,
    "nibp_mean": 90.0,
    "temperature": 36.8,
    **dict(INVASIVE_USUAL),
}
#: A monitor shows kPa and degF with one decimal: 0.05 kPa is 0.38 mm[Hg], 0.05 degF 0.03 Cel.
TOLERANCE = {"temperature": 0.03}
MMHG_TOLERANCE = 0.38


def _intellivue(setup: MonitorSetup) -> tuple[dict[str, Observation], list[bytes]]:
    host, monitor = IntelliVueHost("iv"), MonitorProtocol(Patient(), Faults(), setup=setup)
    seen: dict[str, Observation] = {}
    replies: list[bytes] = []
    for step in range(40):
        now = step * 0.1
        host.tick(now)
        for request in host.datagrams_to_send():
            for reply in monitor.receive_payload(request, now):
                replies.append(reply)
                for event in host.receive_datagram(reply, now):
                    assert not isinstance(event, FrameError), event
                    if isinstance(event, Observation):
                        seen[event.code.key] = event
    assert host.state is HostState.POLLING
    return seen, replies


def _hl7(setup: MonitorSetup) -> tuple[dict[str, Observation], str]:
    text = Hl7MonitorSimulator("127.0.0.1", 9, setup=setup).message(1_767_225_600.0)
    decoder = Hl7Decoder("hl7")
    events = decoder.receive_data(frame(text), 1.0)
    assert not [e for e in events if isinstance(e, FrameError)]
    return {e.code.key: e for e in events if isinstance(e, Observation)}, text


def test_the_setup_reads_its_words_and_refuses_others() -> None:
    assert MonitorSetup.parse("") == MonitorSetup()
    assert MonitorSetup.parse("kPa, degF,invasive") == MonitorSetup("kPa", "[degF]", True)
    with pytest.raises(ValueError, match=r"unknown monitor setting.*psi"):
        MonitorSetup.parse("kpa,psi")


@pytest.mark.parametrize("monitor", ["intellivue", "hl7"])
def test_a_monitor_in_kpa_and_degf_with_lines_in_is_decoded_to_the_patients_values(
    monitor: str,
) -> None:
    setup = MonitorSetup.parse("kpa,degf,invasive")
    if monitor == "intellivue":
        seen, replies = _intellivue(setup)
        # The monitor said kPa and degF (its unit codes), not mm[Hg] and Cel.
        sent = b"".join(replies)
        assert m.numeric_value(0x4A05, round(118 / 7.50062, 1), DIM_KPA) in sent
        assert m.numeric_value(0x4B48, round(36.8 * 1.8 + 32, 1), DIM_FAHR) in sent
    else:
        seen, text = _hl7(setup)
        assert "|15.7|kPa^kPa^UCUM|" in text and "|98.2|[degF]^[degF]^UCUM|" in text
        assert "150037^MDC_PRESS_BLD_ART_ABP_SYS^MDC" in text
    for key, value in TRUE.items():
        observation = seen[key]
        assert observation.code.ucum == ("Cel" if key == "temperature" else "mm[Hg]")
        assert observation.value == pytest.approx(value, abs=TOLERANCE.get(key, MMHG_TOLERANCE))


@pytest.mark.parametrize("monitor", ["intellivue", "hl7"])
def test_the_usual_setup_sends_what_it_always_did(monitor: str) -> None:
    seen = _intellivue(MonitorSetup())[0] if monitor == "intellivue" else _hl7(MonitorSetup())[0]
    assert {k: seen[k].value for k in ("nibp_sys", "nibp_dia", "temperature")} == {
        "nibp_sys": 118.0,
        "nibp_dia": 76.0,
        "temperature": 36.8,
    }
    assert not {k for k, _ in INVASIVE_USUAL} & set(seen)
