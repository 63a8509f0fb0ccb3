"""Device alarms decoded into one model: IntelliVue's alarm lists (encoder and decoder, the
simulated monitor and the host talking), IHE PCD ACM ORU^R40 over the HL7 link, Datex alarm
status records, and the oximeters' states as technical alarms; the simulators' alarm
scenarios; and one over a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import codes
from devices.alarms import conditions
from devices.alarms.reporting import AlarmReporter
from devices.drivers import DRIVERS
from devices.model import (
    AlarmKind,
    AlarmPriority,
    DeviceAlarm,
    DeviceAlarms,
    DeviceEvent,
    FrameError,
)
from devices.protocols import cms50, datex, masimo, nonin
from devices.protocols.hl7_acm import build_r40
from devices.protocols.hl7_pcd import Hl7Decoder
from devices.protocols.intellivue import alarms as al
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue import types as t
from devices.protocols.intellivue.host import HostState, IntelliVueHost
from devices.protocols.mllp import MllpFramer, frame
from devices.reader import DeviceReader, ReaderOptions
from devices.simulation import alarms as scenarios
from devices.simulation.alarms import AlarmScenarios, Scenario
from devices.simulation.hl7_monitor import Hl7MonitorSimulator
from devices.simulation.intellivue_monitor import MonitorProtocol
from devices.simulation.patient import Patient, PatientParameters
from devices.simulation.pty_link import PtyLink
from devices.simulation.registry import SIMULATORS
from devices.simulation.simulators import DatexSimulator, Faults
from runtime.tasks import cancel_and_wait, spawn
from tests.helpers import eventually

SPO2_LOW = DeviceAlarm("spo2_low", AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL, codes.SPO2)


def _alarm_lists(events: list[DeviceEvent]) -> list[list[tuple[str, str, str]]]:
    return [
        [(a.condition, str(a.priority), str(a.kind)) for a in e.alarms]
        for e in events
        if isinstance(e, DeviceAlarms)
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- IntelliVue ---------------------------------------------------------------------------


ENTRIES = [
    al.AlarmEntry(
        source=0x4BB8,
        code=al.NOM_EVT_LO,
        alert_type=al.MED_PRI_P_AL,
        state=al.AL_NEW_ALERT,
        object_class=6,
        object_context=0,
        object_handle=0x0202,
        instance=3,
        text_id=0x00024BB8,
        priority=2,
        flags=al.BEDSIDE_AUDIBLE,
        text="**SpO2 Low",
    ),
    al.AlarmEntry(
        source=0x4182, code=al.NOM_EVT_HI, alert_type=al.HI_PRI_P_AL, text="!!!HR 160>150"
    ),
    al.AlarmEntry(
        source=0x0102,
        code=al.NOM_EVT_LEADS_OFF,
        alert_type=al.MED_PRI_T_AL,
        info_id=al.GEN_ALMON_INFO,
    ),
]


def test_intellivue_alarm_list_round_trip() -> None:
    value = al.encode_alarm_list(ENTRIES)
    assert al.parse_alarm_list(value) == ENTRIES
    # The layout: count, length, then the first entry's fixed 18 bytes.
    assert value[:4] == len(ENTRIES).to_bytes(2, "big") + (len(value) - 4).to_bytes(2, "big")
    assert value[4:8] == bytes.fromhex("4bb8003e")
    assert al.parse_alarm_list(al.encode_alarm_list([])) == []


@given(
    st.lists(
        st.builds(
            al.AlarmEntry,
            source=st.integers(0, 0xFFFF),
            code=st.integers(0, 0xFFFF),
            alert_type=st.sampled_from([0, 1, 2, 4, 256, 512, 1024]),
            state=st.integers(0, 0xFFFF),
            info_id=st.sampled_from([al.GEN_ALMON_INFO, al.STR_ALMON_INFO]),
            text=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40).map(
                str.strip
            ),
        ),
        max_size=6,
    )
)
def test_generated_alarm_lists_round_trip(entries: list[al.AlarmEntry]) -> None:
    parsed = al.parse_alarm_list(al.encode_alarm_list(entries))
    expected = [e if e.info_id == al.STR_ALMON_INFO else _without_text(e) for e in entries]
    assert [(p.source, p.code, p.alert_type, p.state) for p in parsed] == [
        (e.source, e.code, e.alert_type, e.state) for e in expected
    ]
    assert [p.text for p in parsed] == [e.text.replace("\ufeff", "").strip() for e in expected]


def _without_text(entry: al.AlarmEntry) -> al.AlarmEntry:
    return al.AlarmEntry(
        entry.source, entry.code, entry.alert_type, entry.state, info_id=entry.info_id
    )


def test_intellivue_entries_map_to_the_model() -> None:
    spo2, hr, leads = (al.device_alarm(e) for e in ENTRIES)
    assert spo2 == DeviceAlarm(
        "spo2_low", AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL, codes.SPO2, "**SpO2 Low"
    )
    assert hr is not None and (hr.condition, hr.priority, hr.code) == (
        "heart_rate_high",
        AlarmPriority.HIGH,
        codes.HEART_RATE,
    )
    assert leads is not None and (leads.condition, leads.kind, leads.priority) == (
        "leads_off",
        AlarmKind.TECHNICAL,
        AlarmPriority.MEDIUM,
    )
    # The alarm star private character is a star.
    starred = al.parse_alarm_list(
        al.encode_alarm_list(
            [
                al.AlarmEntry(
                    0x4BB8, al.NOM_EVT_DESAT, al.HI_PRI_P_AL, text="\ue40d\ue40d\ue40dDesat"
                )
            ]
        )
    )
    assert starred[0].text == "***Desat"
    assert al.device_alarm(starred[0]) == DeviceAlarm(
        "spo2_desat", AlarmPriority.HIGH, AlarmKind.PHYSIOLOGICAL, codes.SPO2, "***Desat"
    )
    # No alert, or inhibited: no alarm. An object as the source (al_code's bit 0): no
    # parameter. An event without a name here: the monitor's words, or which code it was.
    assert al.device_alarm(al.AlarmEntry(0x4BB8, al.NOM_EVT_LO, al.NO_ALERT)) is None
    inhibited = al.AlarmEntry(0x4BB8, al.NOM_EVT_LO, al.MED_PRI_P_AL, state=al.AL_INHIBITED)
    assert al.device_alarm(inhibited) is None
    mms = al.device_alarm(al.AlarmEntry(61902, al.NOM_EVT_STAT_DISCONN | 1, al.LOW_PRI_T_AL))
    assert mms is not None and (mms.condition, mms.code) == ("disconnected", None)
    unknown = al.device_alarm(al.AlarmEntry(0x4BB8, 3158, al.LOW_PRI_P_AL))
    assert unknown is not None and (unknown.condition, unknown.text) == (
        "device",
        "IntelliVue event 3158 from 19384",
    )


def _exchange(host: IntelliVueHost, monitor: MonitorProtocol, now: float) -> list[DeviceEvent]:
    """One round: the host's timers, its requests to the monitor, the replies back."""
    host.tick(now)
    events: list[DeviceEvent] = []
    for request in host.datagrams_to_send():
        for reply in monitor.receive_payload(request, now):
            events += host.receive_datagram(reply, now)
    for reply in monitor.periodic(now):
        events += host.receive_datagram(reply, now)
    return events


def test_the_simulated_monitor_raises_its_alarms_and_the_host_decodes_them() -> None:
    clock = Clock()
    patient = Patient(PatientParameters(spo2=97, rsa_bpm=0), scenarios=AlarmScenarios(clock))
    monitor = MonitorProtocol(patient, Faults())
    host = IntelliVueHost("monitor-1")
    events: list[DeviceEvent] = []
    for step in range(5):
        clock.now = step * 0.5
        events += _exchange(host, monitor, clock.now)
    assert host.state is HostState.POLLING
    assert _alarm_lists(events) == []  # nothing to report yet
    patient.scenarios.start(Scenario.SPO2_LOW)  # 86 % for 15 s
    lists = []
    for step in range(5, 60):  # 27.5 s, a round every 0.5 s
        clock.now = step * 0.5
        for event in _exchange(host, monitor, clock.now):
            if isinstance(event, DeviceAlarms):
                lists.append((clock.now, [a.condition for a in event.alarms], event.alarms))
    changes: list[tuple[float, list[str]]] = []
    before: list[str] = []
    for at, names, _ in lists:  # the list as it changes (it is also repeated unchanged)
        if names != before:
            changes.append((at, names))
        before = names
    # The monitor's own 10 s delay, then its medium "SpO2 Low", until SpO2 is back.
    assert [names for _, names in changes] == [["spo2_low"], []]
    assert 12.0 <= changes[0][0] <= 13.5
    assert 17.0 <= changes[1][0] <= 19.0
    first = next(alarms for _, names, alarms in lists if names)
    assert first == (
        DeviceAlarm(
            "spo2_low", AlarmPriority.MEDIUM, AlarmKind.PHYSIOLOGICAL, codes.SPO2, "**SpO2 Low"
        ),
    )
    # The probe off: a technical alarm at once.
    patient.scenarios.start(Scenario.PROBE_OFF)
    clock.now = 30.0
    probe = _alarm_lists(_exchange(host, monitor, clock.now))
    assert probe == [[("probe_off", "low", "technical")]]


def test_an_unreadable_alarm_list_is_a_frame_error_and_the_last_report_stands() -> None:
    host = IntelliVueHost("iv")
    host.tick(0.0)
    host.receive_datagram(m.association_result(), 0.0)
    host.receive_datagram(m.mds_create_event(1, 0, datetime.now(UTC), "MX450"), 0.0)
    parts = m.PollReplyParts(1, 1, al.NOM_MOC_VMO_AL_MON, 0, datetime.now(UTC))
    parts.observations.append(
        m.Observation(1, (t.Ava(al.NOM_ATTR_AL_MON_P_AL_LIST, b"\x00\x01\x00\x40"),))
    )
    events = host.receive_datagram(m.poll_reply(parts), 1.0)
    assert [e.reason for e in events if isinstance(e, FrameError)] == ["malformed alarm list"]
    assert _alarm_lists(events) == []


# -- IHE PCD ACM (ORU^R40) -------------------------------------------------------------------


def _acks(decoder: Hl7Decoder) -> list[str]:
    out = []
    for body in MllpFramer().receive_data(decoder.data_to_send()):
        assert isinstance(body, bytes)
        msa = next(s for s in body.decode().split("\r") if s.startswith("MSA"))
        out.append(msa.split("|")[1])
    return out


def test_r40_round_trip_start_and_end() -> None:
    decoder = Hl7Decoder("hl7")
    start = build_r40(
        SPO2_LOW, "A17", "start", 1_800_000_000.0, value=86, device_eui="00A0B0C0D0E0F001"
    )
    events = decoder.receive_data(frame(start), 5.0)
    (report,) = [e for e in events if isinstance(e, DeviceAlarms)]
    # The sender (MSH-3/4) and the equipment (OBX-18): never the link's source port.
    assert report.device_id == "hl7@MONITOR:ICU/00A0B0C0D0E0F001"
    assert report.alarms == (SPO2_LOW,)
    desat = DeviceAlarm("spo2_desat", AlarmPriority.HIGH, AlarmKind.PHYSIOLOGICAL, codes.SPO2)
    probe = DeviceAlarm(
        "probe_off", AlarmPriority.LOW, AlarmKind.TECHNICAL, codes.SPO2, "SpO2 PROBE OFF"
    )
    events = decoder.receive_data(
        frame(build_r40(desat, "A18", "start", 1.0, device_eui="00A0B0C0D0E0F001"))
        + frame(build_r40(probe, "A19", "start", 1.0, device_eui="00A0B0C0D0E0F001"))
        + frame(build_r40(SPO2_LOW, "A17", "end", 2.0, value=95, device_eui="00A0B0C0D0E0F001")),
        6.0,
    )
    reports = [e.alarms for e in events if isinstance(e, DeviceAlarms)]
    assert reports[-1] == (desat, probe)
    assert _acks(decoder) == ["AA"] * 4


def test_r40_as_other_gateways_word_it() -> None:
    # The generic event with the specific one coded in OBX-5, flags in OBX-8, attributes
    # named the other way round, the measured value in its own OBX, an alarm instance in OBR-3.
    message = "\r".join(
        [
            "MSH|^~\\&|GW^ACDE48234567ABCD^EUI-64||||20260101120000||ORU^R40^ORU_R40|M1|P|2.6",
            "PID|||HO2009001^^^Hospital^PI",
            "OBR|1||X-991^GW|196616^MDC_EVT_ALARM^MDC|||20260101120000",
            "OBX|1|CWE|196616^MDC_EVT_ALARM^MDC|1.1.1.1.1|196648^MDC_EVT_HI^MDC|||PH~SP|||F",
            "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1.2|168|/min||H|||F",
            "OBX|3|ST|MDC_ATTR_EVT_PHASE^68481^MDC|1.1.1.1.3|start",
            "OBX|4|ST|MDC_ATTR_ALARM_STATE^68482^MDC|1.1.1.1.4|active",
        ]
    )
    decoder = Hl7Decoder("hl7")
    (report,) = [
        e for e in decoder.receive_data(frame(message), 1.0) if isinstance(e, DeviceAlarms)
    ]
    assert report.device_id == "hl7@GW"  # no OBX-18: the sender's MSH-3 alone
    assert report.alarms == (
        DeviceAlarm(
            "heart_rate_high", AlarmPriority.HIGH, AlarmKind.PHYSIOLOGICAL, codes.HEART_RATE
        ),
    )
    ended = message.replace("|start", "|end").replace("|active", "|inactive")
    (gone,) = [e for e in decoder.receive_data(frame(ended), 2.0) if isinstance(e, DeviceAlarms)]
    assert gone.alarms == ()
    # An R40 without an event is refused with the reason; the link goes on.
    bad = (
        "MSH|^~\\&|GW||||20260101120000||ORU^R40^ORU_R40|M2|P|2.6\r"
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|85"
    )
    events = decoder.receive_data(frame(bad), 3.0)
    assert [e.detail for e in events if isinstance(e, FrameError)] == [
        "ORU^R40 without an alarm event (no OBX with an MDC_EVT code)"
    ]
    assert _acks(decoder)[-1] == "AE"


# -- Datex ----------------------------------------------------------------------------------


def test_datex_alarm_status_round_trip_and_decoding() -> None:
    status = datex.AlarmStatus(
        (
            datex.AlarmDisplay("ASYSTOLE", datex.AlarmColor.RED, is_asystole=True),
            datex.AlarmDisplay("SpO2 LOW", datex.AlarmColor.YELLOW, datex.AlarmType.LOW_LIMIT),
            datex.AlarmDisplay("Check ECG leads", datex.AlarmColor.WHITE),
        ),
        sound_on=True,
        silence_info=0,
    )
    record = datex.encode_alarm_status(status, 1_800_000_000)
    assert len(record) == datex.HEADER_SIZE + datex.AL_MSG_SIZE == 550
    decoded = datex.parse_alarm_status(record[datex.HEADER_SIZE :])
    assert decoded.displays[:3] == status.displays
    assert all(d.color is datex.AlarmColor.NONE for d in decoded.displays[3:])
    decoder = datex.DatexDecoder("datex")
    events = decoder.receive_data(datex.frame(record), 1.0)
    assert _alarm_lists(events) == [
        [
            ("asystole", "high", "physiological"),
            ("device", "low", "technical"),
            ("device", "medium", "physiological"),
        ]
    ]
    texts = [a.text for e in events if isinstance(e, DeviceAlarms) for a in e.alarms]
    assert texts == ["ASYSTOLE", "Check ECG leads", "SpO2 LOW"]
    # A record too short for its alarm status: a frame error, the stream goes on.
    short = datex.header(datex.MainType.ALARM, [(0, datex.AL_STATUS)], 20, 0) + bytes(20)
    events = decoder.receive_data(datex.frame(short) + datex.frame(record), 2.0)
    assert [e.reason for e in events if isinstance(e, FrameError)] == ["malformed record"]
    assert len(_alarm_lists(events)) == 1


def test_datex_simulator_answers_the_alarm_request() -> None:
    link = PtyLink()  # never plugged: only its write is used, and it drops unplugged writes
    patient = Patient(PatientParameters(spo2=97, rsa_bpm=0))
    simulator = DatexSimulator(link, patient)
    assert datex.parse_request(datex.alarm_request()) == datex.AlarmRequest(
        datex.AlarmCommand.ENTER_DIFFMODE
    )
    decoder = datex.DatexDecoder("datex")
    assert _alarm_lists(decoder.receive_data(simulator.frames(5), 0.0)) == []
    simulator.on_host_bytes(datex.frame(datex.alarm_request()))
    first = _alarm_lists(decoder.receive_data(simulator.frames(1), 0.0))
    assert first == []  # the status is sent at once, empty: nothing to report yet
    patient.scenarios.start(Scenario.PROBE_OFF)
    probe = _alarm_lists(decoder.receive_data(simulator.frames(1), 1.0))
    assert probe == [[("device", "low", "technical")]]
    patient.scenarios.stop()
    assert _alarm_lists(decoder.receive_data(simulator.frames(1), 2.0)) == [[]]


# -- oximeters -----------------------------------------------------------------------------


def test_cms50_flags_are_alarms_reported_on_change_and_every_10_s() -> None:
    decoder = cms50.Cms50Decoder("cms50")
    good = cms50.encode_live(cms50.LiveSample(60, 72, 97, 3.2))
    low = cms50.encode_live(cms50.LiveSample(60, 72, 86, 3.2, low_spo2=True))
    off = cms50.encode_live(cms50.LiveSample(0, None, None, None, probe_error=True))
    searching = cms50.encode_live(cms50.LiveSample(10, None, None, None, searching=True))
    assert _alarm_lists(decoder.receive_data(good * 120, 0.0)) == []
    assert _alarm_lists(decoder.receive_data(low * 3 + searching + off, 1.0)) == [
        [("spo2_low", "medium", "physiological")],
        [("searching", "low", "technical")],
        [("probe_off", "low", "technical")],
    ]
    # Unchanged, it is told again every 600 packets (10 s at 60 a second).
    assert _alarm_lists(decoder.receive_data(off * 600, 2.0)) == [
        [("probe_off", "low", "technical")]
    ]
    assert _alarm_lists(decoder.receive_data(good, 3.0)) == [[]]
    legacy = cms50.Cms50LegacyDecoder("legacy")
    events = legacy.receive_data(
        cms50.encode_legacy(cms50.LiveSample(0, None, None, None, probe_error=True)), 0.0
    )
    assert _alarm_lists(events) == [[("probe_off", "low", "technical")]]


def test_nonin_status_bits_are_technical_alarms() -> None:
    decoder = nonin.NoninDecoder("nonin", nonin.Format.NUMERICS)
    statuses = [
        nonin.Status.GREEN_PERFUSION,
        nonin.Status.RED_PERFUSION,
        nonin.Status.OUT_OF_TRACK | nonin.Status.SENSOR_ALARM,
        nonin.Status.SENSOR_DISCONNECTED,
    ]
    data = b"".join(nonin.encode_numerics(s, 72, 97) for s in statuses)
    assert _alarm_lists(decoder.receive_data(data, 0.0)) == [
        [("low_perfusion", "low", "technical")],
        [("searching", "low", "technical"), ("sensor_fault", "low", "technical")],
        [("probe_off", "low", "technical")],
    ]


def test_masimo_exceptions_and_alarm_bits() -> None:
    decoder = masimo.MasimoDecoder("masimo")
    when = datetime(2026, 1, 1, 12, 0, 0)
    lines = (
        masimo.encode_line(when, 97, 80, 1.5, exc=0x800)
        + masimo.encode_line(when, 86, 80, 1.5, exc=0x800, alarm=0x02)
        + masimo.encode_line(when, 97, 130, 0.2, exc=0x004, alarm=0x04 | 0x10)
        + masimo.encode_line(when, None, None, None, exc=0x020)
    )
    assert _alarm_lists(decoder.receive_data(lines, 0.0)) == [
        [("spo2_low", "medium", "physiological")],
        [("low_perfusion", "low", "technical"), ("pulse_rate_high", "medium", "physiological")],
        [("probe_off", "low", "technical")],
    ]
    # A real Rad-8 line (4-digit ALARM, SET mode bit in EXC): nothing to report.
    real = (
        b"02/24/18 04:48:53 SN=0000145838 SPO2=097% BPM=080 PI=04.96% SPCO=--.-% "
        b"SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
    )
    assert _alarm_lists(masimo.MasimoDecoder("rad8").receive_data(real, 0.0)) == []


def test_the_reporter_repeats_and_starts_again() -> None:
    events: list[DeviceEvent] = []
    reporter = AlarmReporter("d", every=3)
    for frame_no in range(1, 8):
        reporter.offer(events, [SPO2_LOW] if frame_no >= 2 else [], frame_no, float(frame_no))
    assert [e.receive_time for e in events if isinstance(e, DeviceAlarms)] == [2.0, 5.0]
    reporter.offer(events, [SPO2_LOW], 1, 9.0)  # a new count (a new session): told at once
    assert events[-1].receive_time == 9.0


# -- scenarios ----------------------------------------------------------------------------------


def test_scenarios_hold_values_for_their_time() -> None:
    clock = Clock()
    held = AlarmScenarios(clock)
    patient = Patient(PatientParameters(spo2=97, heart_rate=72, rsa_bpm=0), scenarios=held)
    held.start("spo2-low")
    held.start(Scenario.HR_HIGH, 5.0)
    assert (patient.spo2, patient.heart_rate_at(1.0)) == (86.0, 140.0)
    assert patient.held("temperature", 36.8) == 36.8
    clock.now = 5.0
    assert patient.heart_rate_at(6.0) != 140.0
    assert held.running() == [Scenario.SPO2_LOW]
    clock.now = 15.0
    assert held.running() == [] and patient.spo2 != 86.0
    held.start("nibp-high", float("inf"))
    clock.now = 1e6
    assert patient.held("nibp_sys", 118) == 182.0
    held.stop("nibp-high")
    assert patient.held("nibp_sys", 118) == 118
    assert scenarios.parse("spo2-low") == (Scenario.SPO2_LOW, None)
    assert scenarios.parse("probe-off:30") == (Scenario.PROBE_OFF, 30.0)
    with pytest.raises(ValueError, match="known: spo2-low"):
        scenarios.parse("asystole")
    with pytest.raises(ValueError, match="positive"):
        scenarios.parse("spo2-low:0")


# -- over a real pty ----------------------------------------------------------------------------


async def _until(reader: DeviceReader, wanted: Callable[[DeviceEvent], bool]) -> DeviceEvent:
    async with asyncio.timeout(15.0):
        while True:
            event = await reader.events.get()
            if wanted(event):
                return event


@pytest.mark.parametrize("protocol", ["intellivue", "cms50", "nonin", "masimo"])
async def test_probe_off_on_demand_reaches_the_reader_as_an_alarm(
    protocol: str, tmp_path: Path
) -> None:
    link = PtyLink(tmp_path / f"tty-{protocol}")
    patient = Patient(PatientParameters(spo2=96, rsa_bpm=0))
    simulator = SIMULATORS[protocol](link, patient)
    sim_task = spawn(simulator.run(), "simulator")
    reader: DeviceReader | None = None
    tasks = [sim_task]
    try:
        await eventually(lambda: link.plugged)
        reader = DeviceReader(DRIVERS[protocol], link.path, options=ReaderOptions(0.05, 0.3))
        tasks.append(spawn(reader.run(), "reader"))
        patient.scenarios.start(Scenario.PROBE_OFF, 60.0)
        event = await _until(reader, lambda e: isinstance(e, DeviceAlarms) and bool(e.alarms))
        assert isinstance(event, DeviceAlarms)
        assert [(a.condition, a.kind) for a in event.alarms] == [
            (conditions.PROBE_OFF, AlarmKind.TECHNICAL)
        ]
        patient.scenarios.stop()
        await _until(reader, lambda e: isinstance(e, DeviceAlarms) and not e.alarms)
    finally:
        await cancel_and_wait(tasks)


def test_the_hl7_monitor_simulator_reports_its_alarms_as_r40() -> None:
    clock = Clock()
    patient = Patient(PatientParameters(spo2=97, rsa_bpm=0), scenarios=AlarmScenarios(clock))
    monitor = Hl7MonitorSimulator("127.0.0.1", 1, patient)  # never run: messages built only
    decoder = Hl7Decoder("hl7")
    reports: list[tuple[str, ...]] = []

    def second(at: float) -> None:
        clock.now = at
        decoder.receive_data(frame(monitor.message(1_800_000_000.0 + at)), at)
        for message in monitor.alarm_messages:
            for event in decoder.receive_data(frame(message), at):
                if isinstance(event, DeviceAlarms):
                    reports.append(tuple(a.condition for a in event.alarms))
        monitor.alarm_messages.clear()

    second(0.0)
    patient.scenarios.start(Scenario.PROBE_OFF, 3.0)
    for at in range(1, 6):
        second(float(at))
    # The probe off at once (technical), back on after 3 s: an R40 each way.
    assert reports == [("probe_off",), ()]
    patient.scenarios.start(Scenario.SPO2_LOW)
    for at in range(6, 30):
        second(float(at))
    # The monitor's own SpO2 limit, after its 10 s delay, until SpO2 is back.
    assert reports[2:] == [("spo2_low",), ()]
