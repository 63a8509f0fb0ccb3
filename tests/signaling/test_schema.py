"""The message schema: round trips, reason codes, and generated garbage (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.errors import ProtocolError
from signaling.schema import (
    CLIENT_TYPES,
    Answer,
    Candidate,
    Chat,
    ClientMessage,
    ErrorCode,
    Hello,
    Join,
    Leave,
    Offer,
    Ping,
    encode,
    parse_client_message,
    parse_server_message,
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
