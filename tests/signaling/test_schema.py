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
