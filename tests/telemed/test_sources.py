"""The primary source of a parameter two devices measure: the monitor by default, a
technician's choice after that, and nothing for a device that never measured it."""

from __future__ import annotations

from telemed.gateway.sources import PrimarySources


def test_the_monitor_is_primary_by_default_whatever_the_order() -> None:
    primary = PrimarySources([("oximeter-1", "cms50"), ("monitor-1", "intellivue")])
    assert primary.observe("spo2", "oximeter-1") is None  # one source: nothing to choose
    message = primary.observe("spo2", "monitor-1")
    assert message is not None and message.primary == {"spo2": "monitor-1"}
    assert primary.observe("spo2", "oximeter-1") is None  # nothing new
    assert primary.observe("heart_rate", "monitor-1") is None


def test_a_monitor_gateway_over_hl7_counts_as_a_monitor() -> None:
    primary = PrimarySources([("oximeter-1", "cms50"), ("hl7", "hl7")])
    primary.observe("spo2", "oximeter-1")
    message = primary.observe("spo2", "hl7@10.0.0.7:51234")
    assert message is not None and message.primary == {"spo2": "hl7@10.0.0.7:51234"}


def test_a_technician_chooses_and_a_device_that_never_measured_it_is_refused() -> None:
    primary = PrimarySources([("monitor-1", "intellivue"), ("oximeter-1", "cms50")])
    primary.observe("spo2", "monitor-1")
    primary.observe("spo2", "oximeter-1")
    chosen = primary.choose("spo2", "oximeter-1", "tech.wonju")
    assert chosen is not None
    assert (chosen.primary, chosen.chosen_by) == ({"spo2": "oximeter-1"}, "tech.wonju")
    assert primary.choose("spo2", "datex-1", "tech.wonju") is None
    assert primary.message().primary == {"spo2": "oximeter-1"}
