"""The events channel's messages: read by type, refused with a reason, and the heartbeat on
a monotonic clock."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.rtc import events
from media.rtc.events import EventError, encode_event, parse_event
from media.rtc.heartbeat import Heartbeat
from runtime.clock import ManualClock
from tests.media.event_examples import EXAMPLES


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.type)
def test_every_message_round_trips_by_type(message: events.EventMessage) -> None:
    text = encode_event(message)
    # Compact (no spaces between tokens): a reader must never rely on the spacing.
    assert json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) == text
    assert parse_event(text) == message
    assert json.loads(text)["type"] == message.type


def test_a_heartbeat_is_recognised_whatever_the_spacing() -> None:
    # The old reader matched the prefix '{"t": "hb' and so only Python's default spacing.
    for text in ('{"type":"hb","seq":1,"at":2.5}', '{ "at" : 2.5 , "seq": 1, "type" : "hb" }'):
        assert parse_event(text) == events.Ping(seq=1, at=2.5)


def test_unknown_fields_are_ignored_within_a_version() -> None:
    text = '{"type":"quality","channel":1,"score":0.5,"time":3.0,"added_later":[1,2]}'
    assert parse_event(text) == events.Quality(channel=1, score=0.5, time=3.0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "Invalid JSON"),
        ('{"type":"alarm-storm"}', "does not match any of the expected tags"),
        ('{"seq":1}', "Unable to extract tag"),
        ('{"type":"numeric","code":"spo2"}', "mdc: Field required"),
        ('{"type":"quality","channel":1,"score":7,"time":0}', "score: Input should be less"),
        ('{"type":"hb","seq":-1,"at":0}', "seq: Input should be greater"),
        ("[1,2,3]", "Input should be"),
        ('{"type":"beats","channel":1,"times":[1,"x"]}', "times.1"),
    ],
)
def test_what_is_not_ours_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(EventError, match=reason.replace(".", r"\.")):
        parse_event(text)


def test_an_oversize_message_is_refused_unread() -> None:
    with pytest.raises(EventError, match="exceeds"):
        parse_event('{"type":"hello","source":"' + "x" * events.MAX_EVENT_BYTES + '"}')


def test_nan_is_never_written() -> None:
    with pytest.raises(ValueError, match="finite number"):
        events.Quality(channel=1, score=0.5, time=float("nan"))
    with pytest.raises(EventError, match="finite number"):
        parse_event('{"type":"hb","seq":1,"at":Infinity}')


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(EXAMPLES),
    key=st.text(max_size=10),
    value=_json_values,
)
def test_fuzzed_fields_inside_valid_messages_parse_or_are_refused(
    base: events.EventMessage, key: str, value: object
) -> None:
    data = json.loads(encode_event(base))
    target = key if key and key != "type" else next(iter(k for k in data if k != "type"), "x")
    data[target] = value
    try:
        parsed = parse_event(json.dumps(data))
    except EventError as exc:
        assert str(exc)  # a reason, never an empty refusal
    else:
        assert parsed.type == base.type


def test_heartbeat_answers_pings_and_measures_the_round_trip() -> None:
    clock = ManualClock()
    beat = Heartbeat()
    beat.start(clock.monotonic())
    (ping,) = beat.tick(clock.monotonic())
    assert beat.tick(clock.monotonic()) == []  # one ping per interval
    clock.advance(0.04)
    assert beat.received(events.Ack(seq=ping.seq, at=ping.at), clock.monotonic()) is None
    assert beat.rtt_s == pytest.approx(0.04)
    assert beat.received(events.Ping(seq=3, at=99.0), clock.monotonic()) == events.Ack(
        seq=3, at=99.0
    )


def test_a_wall_clock_step_does_not_declare_a_live_peer_dead() -> None:
    clock = ManualClock()
    beat = Heartbeat(interval_s=0.5, timeout_s=2.5)
    beat.start(clock.monotonic())
    for _ in range(10):
        clock.advance(0.5)
        clock.step_wall(30.0)  # NTP steps the wall clock; the monotonic one runs on
        beat.received(events.Ack(seq=1, at=clock.monotonic() - 0.01), clock.monotonic())
        assert not beat.dead(clock.monotonic())
    clock.advance(2.5)  # then silence, on the monotonic clock: 2.5 s is not yet dead...
    assert not beat.dead(clock.monotonic())
    clock.advance(0.05)  # ...and the next pump (every 0.05 s) declares it: within 3 s
    assert beat.dead(clock.monotonic())
