"""The message schema: round trips, reason codes, and generated garbage (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.api_models import ConsultationOut
from signaling.errors import ProtocolError
from signaling.schema import (
    CLIENT_TYPES,
    Answer,
    Candidate,
    Chat,
    ClientMessage,
    ConsultationInfo,
    ConsultationState,
    ConsultationSummary,
    ConsultationUpdated,
    ErrorCode,
    Hello,
    Join,
    Joined,
    Leave,
    Offer,
    Ping,
    encode,
    parse_client_message,
    parse_server_message,
    relay_text,
)

CLIENT_SAMPLES: list[ClientMessage] = [
    Hello(v=1, token="t", client="gw"),
    Join(consultation_id="c-0123"),
    Leave(consultation_id="c-0123"),
    Offer(sdp="v=0\r\n"),
    Offer(to="p-1", sdp="v=0\r\n"),
    Answer(to="p-1", sdp="v=0\r\n"),
    Candidate(to="p-1", candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host", sdp_mid="0"),
    Candidate(to="p-1", candidate=""),
    Chat(text="こんにちは 안녕하세요"),
    Ping(nonce=3),
]


@pytest.mark.parametrize("message", CLIENT_SAMPLES, ids=lambda m: m.type)
def test_client_messages_round_trip(message: ClientMessage) -> None:
    assert parse_client_message(encode(message)) == message


def test_server_sets_from_and_it_survives_encoding() -> None:
    relayed = Offer(to="p-2", sdp="v=0").model_copy(update={"sender": "p-1"})
    text = encode(relayed)
    assert json.loads(text)["from"] == "p-1"
    assert parse_server_message(text) == relayed


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b"\xff\xfe", ErrorCode.BAD_JSON),
        ("", ErrorCode.BAD_JSON),
        ("null", ErrorCode.INVALID_MESSAGE),
        ('{"type": 5}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "x"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "pong", "nonce": 1}', ErrorCode.UNEXPECTED_TYPE),
        ('{"type": "join", "consultation_id": "../etc"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "join", "consultation_id": "c-1", "extra": 1}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "ping", "nonce": -1}', ErrorCode.INVALID_MESSAGE),
    ],
)
def test_faults_have_codes(text: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.code is code
    assert caught.value.reason


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(sorted(CLIENT_TYPES)) | st.text(max_size=12),
    fields=st.dictionaries(
        st.sampled_from(["v", "token", "to", "from", "sdp", "candidate", "text", "nonce"])
        | st.text(max_size=8),
        _json,
        max_size=5,
    ),
)
def test_generated_objects_parse_or_fail_cleanly(kind: str, fields: dict[str, object]) -> None:
    text = json.dumps({**fields, "type": kind})
    try:
        message = parse_client_message(text)
    except ProtocolError as exc:
        code: ErrorCode | None = exc.code
    else:
        code = None
        assert message.type == kind
        assert parse_client_message(encode(message)) == message
    assert code is None or code in set(ErrorCode)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes | str) -> None:
    # Anything but a ProtocolError (a TypeError, a KeyError...) fails the test.
    try:
        message = parse_client_message(data)
    except ProtocolError as exc:
        assert exc.reason
    else:  # valid by chance: then it must round-trip
        assert parse_client_message(encode(message)) == message


def _summary(**changes: object) -> ConsultationSummary:
    values: dict[str, object] = {
        "id": "c-1",
        "requesting_site": "wonju",
        "consulting_site": "koriyama",
        "state": "requested",
        "consent_cross_border": True,
        "reason": "",
        "created_at": "2026-12-01T09:00:00+00:00",
        "accepted_at": None,
        "ended_at": None,
        "allowed_actions": ["accept", "close"],
    }
    return ConsultationSummary.model_validate({**values, **changes})


def test_consultation_updates_carry_nulls_as_the_http_api_does() -> None:
    update = ConsultationUpdated(consultation=_summary())
    text = encode(update)
    assert json.loads(text)["consultation"] == _summary().model_dump(mode="json")
    assert json.loads(text)["consultation"]["accepted_at"] is None
    assert parse_server_message(text) == update
    # The HTTP model is the same shape, so what one says the other reads.
    out = ConsultationOut.model_validate_json(_summary(state="active").model_dump_json())
    assert out.model_dump() == _summary(state="active").model_dump()


def test_joined_replays_stored_chat_and_a_clients_id_is_only_a_field() -> None:
    stored = Chat.model_validate(
        {
            "text": "血圧は?",
            "id": 7,
            "from": "p-1",
            "sender_name": "Dr W",
            "sender_site": "wonju",
            "at": "2026-12-01T09:00:00Z",
        }
    )
    info = ConsultationInfo(
        id="c-1",
        requesting_site="wonju",
        consulting_site="koriyama",
        state=ConsultationState.ACTIVE,
        consent_cross_border=True,
    )
    joined = Joined(consultation=info, peers=[], members=[], chat=[stored])
    assert parse_server_message(encode(joined)) == joined
    assert json.loads(encode(joined))["chat"][0] == {
        "type": "chat",
        "text": "血圧は?",
        "id": 7,
        "from": "p-1",
        "sender_name": "Dr W",
        "sender_site": "wonju",
        "at": "2026-12-01T09:00:00Z",
    }
    # A client may send an id (the server replaces it); it parses like any chat.
    assert parse_client_message('{"type":"chat","text":"x","id":3}') == Chat(text="x", id=3)


def _relayed_as_encoded(message: Offer | Answer | Candidate, sender: str) -> str:
    return encode(message.model_copy(update={"sender": sender}))


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"offer","sdp":"v=0\\r\\n"}',
        '  {"type": "answer", "to": "p-1", "sdp": "v=0\\r\\n"}\r\n ',
        '{"type":"candidate","to":"p-1","candidate":"","sdp_mid":null,"sdp_mline_index":0}',
    ],
)
def test_a_relay_forwards_the_clients_text_with_from_added(text: str) -> None:
    message = parse_client_message(text)
    assert isinstance(message, Offer | Answer | Candidate)
    relayed = relay_text(text, message, "p-2")
    assert relayed.startswith(text.rstrip()[:-1])  # the client's own text, not re-encoded
    assert json.loads(relayed)["from"] == "p-2"
    assert parse_server_message(relayed) == parse_server_message(
        _relayed_as_encoded(message, "p-2")
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"offer","sdp":"v=0","from":"p-9"}',
        '{"type":"offer","sdp":"v=0","sender":"p-9"}',
        '{"type":"offer","sdp":"v=0","from":null}',
        # The member's name behind an escape: looked for, not decoded.
        '{"type":"offer","sdp":"v=0","fr\\u006fm":"p-9"}',
        '{"type":"offer","sdp":"v=0","fr\\u006fm":null}',
        # A value that only looks like the name: encoded anew all the same.
        '{"type":"answer","to":"from","sdp":"v=0"}',
    ],
)
def test_a_relay_never_forwards_a_from_the_client_wrote(text: str) -> None:
    message = parse_client_message(text)
    assert isinstance(message, Offer | Answer | Candidate)
    relayed = relay_text(text, message, "p-2")
    assert relayed == _relayed_as_encoded(message, "p-2")
    assert json.loads(relayed)["from"] == "p-2"


def test_a_relayed_binary_frame_is_encoded_anew() -> None:
    text = b'{"type":"candidate","to":"p-1","candidate":"c"}'
    message = parse_client_message(text)
    assert isinstance(message, Candidate)
    assert relay_text(text, message, "p-2") == _relayed_as_encoded(message, "p-2")


_relay_fields = st.fixed_dictionaries(
    {"type": st.sampled_from(["offer", "answer", "candidate"])},
    optional={
        "to": st.sampled_from(["p-1", "from", "sender", ""]) | st.text(max_size=6),
        "from": st.sampled_from(["p-9", "p-2"]) | st.none(),
        "sender": st.sampled_from(["p-9"]) | st.none(),
        "sdp": st.text(min_size=1, max_size=30),
        "candidate": st.text(max_size=30) | st.sampled_from(['"from"', "\\u"]),
        "sdp_mid": st.text(max_size=4) | st.none(),
        "sdp_mline_index": st.integers(-1, 256) | st.none(),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    fields=_relay_fields,
    ascii_only=st.booleans(),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
    padding=st.sampled_from(["", " ", "\r\n", "\t \n"]),
)
def test_generated_relays_read_as_the_encoded_message(
    fields: dict[str, object],
    ascii_only: bool,
    separators: tuple[str, str],
    padding: str,
) -> None:
    text = padding + json.dumps(fields, ensure_ascii=ascii_only, separators=separators) + padding
    try:
        message = parse_client_message(text)
    except ProtocolError:
        return
    assert isinstance(message, Offer | Answer | Candidate)
    relayed = relay_text(text, message, "p-2")
    assert json.loads(relayed)["from"] == "p-2"
    assert parse_server_message(relayed) == parse_server_message(
        _relayed_as_encoded(message, "p-2")
    )
