"""HL7/MLLP under hostile input (issue 11): every message answered (AA, or AE/AR with the
reason in MSA-3 and ERR), one bad OBX refused without the rest, units converted, SN values,
the sample-rate layouts of IHE PCD, stable device ids, and unmapped codes reported."""

from __future__ import annotations

import asyncio

import pytest

from devices.model import (
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    FrameError,
    Observation,
    Quality,
    WaveformChunk,
)
from devices.protocols.common import DECODER_FAULT, UNMAPPED
from devices.protocols.hl7_pcd import Hl7Decoder
from devices.protocols.mllp import MllpFramer, frame
from devices.transports.mllp_tcp import Hl7Listener, MllpSender
from runtime.tasks import cancel_and_wait, spawn

SPO2 = "OBX|{n}|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|%^%^UCUM|||||R"


def _raw(*obx: str, msh7: str = "20260101120000+0900", kind: str = "ORU^R01") -> bytes:
    head = f"MSH|^~\\&|MON|ICU|GW|H|{msh7}||{kind}|C1|P|2.6\rOBR|1\r"
    return frame(head + "\r".join(obx) + "\r")


def _answers(decoder: Hl7Decoder) -> list[list[str]]:
    """Each answer's segments."""
    out = []
    for body in MllpFramer().receive_data(decoder.data_to_send()):
        assert isinstance(body, bytes)
        out.append([s for s in body.decode().split("\r") if s])
    return out


def _msa(answer: list[str]) -> list[str]:
    return next(s for s in answer if s.startswith("MSA")).split("|")


def _obs(events: list[DeviceEvent]) -> list[tuple[str, float | None]]:
    return [(e.code.key, e.value) for e in events if isinstance(e, Observation)]


@pytest.mark.parametrize(
    "message",
    [
        _raw(SPO2.format(n=1) + "|||2026010112000099999999999999999999999"),  # OverflowError
        _raw(SPO2.format(n=1) + "|||20260101120000+9900"),  # offset beyond a day, OBX-14
        _raw(SPO2.format(n=1), msh7="20260101120000-7000"),  # ...and in MSH-7
    ],
    ids=["overlong-seconds", "obx14-offset", "msh7-offset"],
)
def test_impossible_times_keep_the_value_with_its_time_unknown(message: bytes) -> None:
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(message, 0.0)  # raised OverflowError before
    assert _obs(events) == [("spo2", 97.0)]
    assert _msa(_answers(decoder)[0])[1] == "AA"


def test_an_unforeseen_fault_is_answered_ae_with_the_reason_and_the_link_goes_on() -> None:
    class Faulty(Hl7Decoder):
        def _heard(self, device: str, events: list[DeviceEvent], now: float) -> None:
            raise RuntimeError("a decoder bug")

    decoder = Faulty("gw")
    events = decoder.receive_data(_raw(SPO2.format(n=1)), 0.0)
    assert [e.reason for e in events if isinstance(e, FrameError)] == [DECODER_FAULT]
    (answer,) = _answers(decoder)
    msa = _msa(answer)
    assert msa[1] == "AE" and "a decoder bug" in msa[3]
    err = next(s for s in answer if s.startswith("ERR")).split("|")
    assert err[3].startswith("207^") and err[4] == "E" and "a decoder bug" in err[8]


def test_a_refused_message_names_its_reason_in_msa_3_and_err() -> None:
    decoder = Hl7Decoder("gw")
    decoder.receive_data(_raw(SPO2.format(n=1), kind="ADT"), 0.0)  # MSH-9 of one component
    (answer,) = _answers(decoder)
    assert _msa(answer)[1] == "AR" and "not ORU^R01".replace("^", " ") in _msa(answer)[3]
    err = next(s for s in answer if s.startswith("ERR")).split("|")
    assert err[3].startswith("200^") and err[4] == "E"


def test_one_bad_obx_is_refused_and_the_rest_of_the_message_used() -> None:
    message = _raw(
        SPO2.format(n=1),
        "OBX|2|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.2.1|1^2^3|mV^mV^UCUM|||||R",  # no rate
        "OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.2|72|/min^/min^UCUM|||||R",
    )
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(message, 0.0)
    assert _obs(events) == [("spo2", 97.0), ("heart_rate", 72.0)]
    (refused,) = [e for e in events if isinstance(e, FrameError)]
    assert refused.reason == "refused HL7 observation" and "OBX 2" in refused.detail
    (answer,) = _answers(decoder)
    assert _msa(answer)[1] == "AA"  # what was used is stored: a resend would only repeat it
    err = next(s for s in answer if s.startswith("ERR")).split("|")
    assert err[2] == "OBX^2" and err[4] == "W" and "sample rate" in err[8]


@pytest.mark.parametrize("rate_at", ["1.1.2.1.1", "1.1.2.1"], ids=["child", "own-obx4"])
def test_the_sample_rate_layouts_of_ihe_pcd_are_accepted(rate_at: str) -> None:
    message = _raw(
        "OBX|1|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.2.1|1^2^3|mV^mV^UCUM|||||R",
        f"OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|{rate_at}|500|/s^/s^UCUM|||||R",
        SPO2.format(n=3),
    )
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(message, 0.0)
    (wave,) = [e for e in events if isinstance(e, WaveformChunk)]
    assert wave.sample_rate == 500.0 and wave.samples.tolist() == [1.0, 2.0, 3.0]
    assert _obs(events) == [("spo2", 97.0)]
    assert _msa(_answers(decoder)[0])[1] == "AA"


def test_units_are_converted_and_an_unknown_unit_is_withheld_and_reported() -> None:
    message = _raw(
        "OBX|1|NM|150344^MDC_TEMP^MDC|1.1.1.1|98.6|[degF]^[degF]^UCUM|||||R",
        "OBX|2|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.1.1.2|16|kPa^kPa^UCUM|||||R",
        "OBX|3|NM|150037^MDC_PRESS_BLD_ART_ABP_SYS^MDC|1.1.1.3|120|266016^MDC_DIM_MMHG^MDC|||||R",
        "OBX|4|NM|150087^MDC_PRESS_BLD_VEN_CENT_MEAN^MDC|1.1.1.4|10|cm[H2O]|||||R",
        "OBX|5|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.5|97|furlong^furlong^UCUM|||||R",
        "OBX|6|NM|151708^MDC_CONC_AWAY_CO2_ET^MDC|1.1.1.6|5|kPa|||||R",
        "OBX|7|NM|150045^MDC_PRESS_BLD_ART_PULM_SYS^MDC|1.1.1.7|25|mmHg|||||R",
    )
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(message, 0.0)
    assert _obs(events) == [
        ("temperature", 37.0),
        ("nibp_sys", 120.01),
        ("abp_sys", 120.0),
        ("cvp_mean", 7.36),
        ("spo2", None),
        ("etco2", 37.5),
        ("pap_sys", 25.0),
    ]
    spo2 = next(e for e in events if isinstance(e, Observation) and e.code.key == "spo2")
    assert spo2.quality & Quality.UNIT_UNKNOWN and spo2.quality & Quality.INVALID
    reports = [e for e in events if isinstance(e, FrameError)]
    assert [e.reason for e in reports] == [UNMAPPED]
    assert "furlong" in reports[0].detail


def test_sn_values_and_non_finite_numbers() -> None:
    message = _raw(
        "OBX|1|SN|150301^MDC_PRESS_CUFF_SYS^MDC|1.1.1.1|^120|mm[Hg]^mm[Hg]^UCUM|||||R",
        "OBX|2|SN|150302^MDC_PRESS_CUFF_DIA^MDC|1.1.1.2|=^80|mm[Hg]^mm[Hg]^UCUM|||||R",
        "OBX|3|SN|150303^MDC_PRESS_CUFF_MEAN^MDC|1.1.1.3|<^90|mm[Hg]^mm[Hg]^UCUM|||||R",
        "OBX|4|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.4|1e999|%^%^UCUM|||||R",
        "OBX|5|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.5|NaN|/min^/min^UCUM|||||R",
    )
    events = Hl7Decoder("gw").receive_data(message, 0.0)
    assert _obs(events) == [
        ("nibp_sys", 120.0),
        ("nibp_dia", 80.0),
        ("nibp_mean", None),  # a bound, not a value
        ("spo2", None),
        ("heart_rate", None),
    ]
    for e in events:
        if isinstance(e, Observation) and e.value is None:
            assert e.quality & Quality.INVALID


def test_unmapped_codes_are_reported_once_per_code_and_counted() -> None:
    unknown = "OBX|{n}|NM|999999^MDC_SOMETHING_ELSE^MDC|1.1.1.9|3|1^1^UCUM|||||R"
    decoder = Hl7Decoder("gw")
    first = decoder.receive_data(_raw(unknown.format(n=1), SPO2.format(n=2)), 0.0)
    second = decoder.receive_data(_raw(unknown.format(n=1)), 1.0)
    reports = [e for e in first + second if isinstance(e, FrameError)]
    assert [(e.reason, e.skipped) for e in reports] == [(UNMAPPED, 0)]
    assert "999999" in reports[0].detail
    assert decoder.stats.unmapped == {reports[0].detail: 2}
    assert decoder.stats.error_count == 0


def test_rows_with_and_without_obx18_are_one_device_named_by_its_sender() -> None:
    head = "MSH|^~\\&|MONITOR^ACDE48234567ABCD^EUI-64|ICU|GW|H|20260101120000||ORU^R01|C{c}|P|2.6"
    with_eui = "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|%|||||R|||||||00A0B0C0D0E0F001"
    without = "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.2|72|/min|||||R"
    decoder = Hl7Decoder("hl7")
    events = decoder.receive_data(frame(f"{head.format(c=1)}\r{with_eui}\r{without}\r"), 0.0)
    later = decoder.receive_data(frame(f"{head.format(c=2)}\r{without}\r"), 1.0)
    ids = {e.device_id for e in events + later if isinstance(e, Observation)}
    assert ids == {"hl7@MONITOR:ICU/00A0B0C0D0E0F001"}
    statuses = [e for e in events + later if isinstance(e, DeviceStatus)]
    assert [(s.device_id, s.state) for s in statuses] == [
        ("hl7@MONITOR:ICU/00A0B0C0D0E0F001", DeviceState.CONNECTED)
    ]


async def test_a_reconnecting_sender_keeps_its_device_id() -> None:
    """The source port changes on every reconnection; the device id does not."""
    listener = Hl7Listener("127.0.0.1", 0)
    task = spawn(listener.run(), "hl7-listener")
    try:
        async with asyncio.timeout(10):
            await listener.ready.wait()
        message = f"MSH|^~\\&|MON|ICU|GW|H|20260101120000||ORU^R01|C1|P|2.6\r{SPO2.format(n=1)}\r"
        ids = []
        for _ in range(2):
            sender = MllpSender("127.0.0.1", listener.port)
            assert "MSA|AA" in await sender.send(message)
            await sender.close()
            async with asyncio.timeout(10):
                while True:
                    event = await listener.events.get()
                    if isinstance(event, Observation):
                        ids.append(event.device_id)
                    if isinstance(event, DeviceStatus) and event.state is DeviceState.DISCONNECTED:
                        assert event.device_id == "hl7@MON:ICU"
                        break
        assert ids == ["hl7@MON:ICU", "hl7@MON:ICU"]
    finally:
        await cancel_and_wait([task])


def test_invasive_pressures_of_every_family_are_decoded_not_dropped() -> None:
    """The arterial pressure in both MDC families real messages use (MDC_PRESS_BLD_ART
    150033.. and _ART_ABP 150037..), the pulmonary artery, central venous and intracranial
    pressures: each decoded under its own code (the ART family was dropped without a word)."""
    rows = [
        ("150033^MDC_PRESS_BLD_ART_SYS", 121),
        ("150034^MDC_PRESS_BLD_ART_DIA", 79),
        ("150035^MDC_PRESS_BLD_ART_MEAN", 93),
        ("150047^MDC_PRESS_BLD_ART_PULM_MEAN", 15),
        ("150087^MDC_PRESS_BLD_VEN_CENT_MEAN", 8),
        ("153611^MDC_PRESS_INTRA_CRAN_MEAN", 11),
    ]
    message = _raw(
        *(
            f"OBX|{n}|NM|{code}^MDC|1.1.1.{n}|{value}|mm[Hg]^mm[Hg]^UCUM|||||R"
            for n, (code, value) in enumerate(rows, start=1)
        )
    )
    decoder = Hl7Decoder("gw")
    events = decoder.receive_data(message, 0.0)
    assert _obs(events) == [
        ("abp_sys", 121.0),
        ("abp_dia", 79.0),
        ("abp_mean", 93.0),
        ("pap_mean", 15.0),
        ("cvp_mean", 8.0),
        ("icp_mean", 11.0),
    ]
    assert not [e for e in events if isinstance(e, FrameError)]
    assert decoder.stats.unmapped == {}
