"""The signaling wire protocol, defined once for the server, the Python client and the tests.

Every WebSocket message is one JSON object with a ``type`` discriminator. Version
:data:`PROTOCOL_VERSION` is announced by the client in ``hello`` and echoed in ``welcome``.

A connection's life: ``hello`` (must be first) -> ``welcome``; the socket is then in its
site's *lobby*: every change of a consultation of its site (created, accepted, cancelled,
closed) reaches a clinician's socket as ``consultation``, in a room or not. ``join`` ->
``joined`` (peers, members and the stored chat) and a ``peer-joined`` to the others; then
``offer``/``answer``/``candidate`` are relayed only to peers of the same consultation, the
server filling in ``from``; ``chat`` is stored with the consultation and relayed to the whole
room with its ``id``; ``alarm-ack`` and ``alarm-limits`` go to the room's gateways only,
with ``from`` and ``by`` set; ``leave`` or closing the socket sends ``peer-left`` to the others.
``ping``/``pong`` are heartbeats. Anything wrong gets an ``error`` with a :class:`ErrorCode`.

This module is sans-I/O: :func:`parse_client_message` turns text into a model or raises
:class:`ProtocolError`; :func:`encode` turns a model into text, and :func:`relay_text` the
text of a relayed offer, answer or candidate into what its recipient gets.
"""

from __future__ import annotations

import enum
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from signaling.errors import ProtocolError

PROTOCOL_VERSION = 1

#: The deepest nesting of arrays and objects a message may have unless the caller says
#: otherwise; no message of this protocol needs more than a few levels.
MAX_JSON_DEPTH = 32

_ID = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class ErrorCode(enum.StrEnum):
    """Reason codes carried by ``error`` messages (stable: clients switch on them)."""

    BAD_JSON = "bad_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    UNEXPECTED_TYPE = "unexpected_type"
    TOO_LARGE = "too_large"
    #: Arrays and objects nested deeper than the server allows (refused before decoding).
    TOO_DEEP = "too_deep"
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTH_FAILED = "auth_failed"
    SESSION_EXPIRED = "session_expired"
    ALREADY_AUTHENTICATED = "already_authenticated"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    NOT_FOUND = "not_found"
    NOT_MEMBER = "not_member"
    NOT_ACTIVE = "not_active"
    UNKNOWN_PEER = "unknown_peer"
    RATE_LIMITED = "rate_limited"
    #: In the room, but the role or site may not do this (an alarm acknowledgement by a
    #: technician, a limit change from the requesting site).
    NOT_PERMITTED = "not_permitted"
    #: The account already has as many sockets open as the server allows.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (RFC 6455 and the 4000-4999 private range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    #: Too many sockets from the client's address, or for its account.
    TOO_MANY_CONNECTIONS = 4429
    SESSION_EXPIRED = 4408
    UNSUPPORTED_VERSION = 4426


class PrincipalKind(enum.StrEnum):
    USER = "user"
    GATEWAY = "gateway"


class Role(enum.StrEnum):
    DOCTOR = "doctor"
    TECHNICIAN = "technician"
    ENGINEER = "engineer"
    ADMIN = "admin"
    #: Not a clinician role: what a device gateway's token carries.
    GATEWAY = "gateway"


class ConsultationState(enum.StrEnum):
    REQUESTED = "requested"
    ACTIVE = "active"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class ConsultationAction(enum.StrEnum):
    """What a principal may do with a consultation; the server lists them per consultation
    (``allowed_actions``) so that no client re-derives the rules."""

    ACCEPT = "accept"
    CANCEL = "cancel"
    CLOSE = "close"
    JOIN = "join"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Peer(_Message):
    """One online connection in a consultation."""

    peer_id: _ID
    kind: PrincipalKind
    principal_id: int
    name: str
    role: Role
    site: str
    #: The client's own id for itself (its ``hello``'s ``instance``): the same for a browser
    #: tab or a gateway across reconnections, while ``peer_id`` is new for each connection.
    #: Media keyed by (principal, instance) survives a signaling reconnect. None: the client
    #: sent none.
    instance: str | None = None


class Member(_Message):
    """A principal that has joined the consultation, online or not (kept in the database)."""

    kind: PrincipalKind
    principal_id: int
    name: str
    role: Role
    site: str
    online: bool


class ConsultationInfo(_Message):
    id: _ID
    requesting_site: str
    consulting_site: str
    state: ConsultationState
    consent_cross_border: bool
    #: The patient consented to identified images crossing the border: the bedside sends
    #: DICOM instances as they are instead of de-identified (set by the requesting site).
    imaging_consent: bool = False


class Sex(enum.StrEnum):
    """Administrative sex, as FHIR's ``AdministrativeGender``."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


#: The fields of :class:`PatientView` that identify a person. They are absent (not null:
#: the key itself is left out) from every view the requesting site's patient has not
#: consented to send across the border; :mod:`signaling.patient` decides.
IDENTIFYING_FIELDS: tuple[str, ...] = (
    "name",
    "name_romanised",
    "birth_year",
    "age",
    "ward",
    "bed",
)


class PatientView(_Message):
    """The patient of a consultation as one recipient may see them. Everyone who may see
    the consultation gets the pseudonym, the age band, sex and the clinical data (reason,
    allergies); the identifying fields (:data:`IDENTIFYING_FIELDS`) only the requesting
    site, or anyone when the patient consented to cross-border transfer (``identified``)."""

    #: The requesting site's pseudonymous id: meaningful only where the key to it is kept.
    pseudonym: str
    #: Ten-year band of the age when the consultation was requested (``60-69``; ``90+``
    #: above 89, as HIPAA's safe harbour aggregates); None when no age was given.
    age_band: str | None
    sex: Sex
    #: Why the patient is being seen, and known allergies: clinical data, always sent.
    reason: str
    allergies: list[str]
    #: True when the identifying fields below are part of this view.
    identified: bool
    name: str | None = None
    name_romanised: str | None = None
    birth_year: int | None = None
    #: In years, when the consultation was requested (from the year of birth if given).
    age: int | None = None
    ward: str | None = None
    bed: str | None = None

    @model_serializer(mode="wrap")
    def _withhold(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Withheld fields are left out, key and all: nothing about them crosses the border.
        data: dict[str, Any] = handler(self)
        if not self.identified:
            for name in IDENTIFYING_FIELDS:
                data.pop(name, None)
        return data


class ConsultationSummary(ConsultationInfo):
    """A consultation as one principal sees it: the HTTP API's ``ConsultationOut`` and what
    ``consultation`` messages carry. Times are ISO 8601 strings in UTC."""

    reason: str
    created_at: str
    accepted_at: str | None
    ended_at: str | None
    #: What the recipient may do with it now (by its state, their role and site).
    allowed_actions: list[ConsultationAction]
    #: The patient as the recipient may see them (None: the request named no patient).
    patient: PatientView | None = None


class Hello(_Message):
    type: Literal["hello"] = "hello"
    v: int
    token: str = Field(min_length=1, max_length=4096)
    client: str = Field(default="", max_length=128)
    #: An id the client makes once (per browser tab, per gateway process) and sends on every
    #: connection, so that peers can tell its reconnection from somebody new.
    instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$")


class Welcome(_Message):
    type: Literal["welcome"] = "welcome"
    v: int = PROTOCOL_VERSION
    peer_id: _ID
    kind: PrincipalKind
    principal_id: int
    name: str
    role: Role
    site: str


class Chat(_Message):
    """A chat message. A client sends ``text`` only; what the server relays, replays in
    ``joined`` and lists over HTTP also has ``id`` (its place in the stored record, rising),
    ``from`` (the sender's peer id when sent), ``sender_name``, ``sender_site`` and ``at``."""

    type: Literal["chat"] = "chat"
    text: str = Field(min_length=1, max_length=4000)
    #: Assigned by the server when the message is stored; a client's value is ignored.
    id: int | None = None
    sender: _ID | None = Field(default=None, alias="from")
    #: Display name and site of the sender, filled in by the server.
    sender_name: str | None = None
    sender_site: str | None = None
    at: datetime | None = None


#: How many stored chat messages ``joined`` replays at most (the newest ones); the whole
#: record is at ``GET /api/consultations/{id}/chat``.
CHAT_REPLAY_MAX = 500


class Join(_Message):
    type: Literal["join"] = "join"
    consultation_id: _ID


class Joined(_Message):
    type: Literal["joined"] = "joined"
    consultation: ConsultationInfo
    peers: list[Peer]
    members: list[Member]
    #: The consultation's stored chat, oldest first (at most the last
    #: :data:`CHAT_REPLAY_MAX` messages); sent on every (re)join, so a client replaces its
    #: log with it and de-duplicates what follows by ``id``.
    chat: list[Chat] = Field(default_factory=list)


class Leave(_Message):
    type: Literal["leave"] = "leave"
    consultation_id: _ID


class Left(_Message):
    type: Literal["left"] = "left"
    consultation_id: _ID


class PeerJoined(_Message):
    type: Literal["peer-joined"] = "peer-joined"
    consultation_id: _ID
    peer: Peer


class PeerLeft(_Message):
    type: Literal["peer-left"] = "peer-left"
    consultation_id: _ID
    peer_id: _ID
    #: "left", "disconnected" or "closed" (the consultation ended).
    reason: str


class Offer(_Message):
    """SDP offer. ``to`` names one peer (None: every other peer); ``from`` is set by the server."""

    type: Literal["offer"] = "offer"
    to: _ID | None = None
    sender: _ID | None = Field(default=None, alias="from")
    sdp: str = Field(min_length=1, max_length=60_000)


class Answer(_Message):
    type: Literal["answer"] = "answer"
    to: _ID
    sender: _ID | None = Field(default=None, alias="from")
    sdp: str = Field(min_length=1, max_length=60_000)


class Candidate(_Message):
    """A trickled ICE candidate; an empty ``candidate`` is end-of-candidates."""

    type: Literal["candidate"] = "candidate"
    to: _ID
    sender: _ID | None = Field(default=None, alias="from")
    candidate: str = Field(max_length=1024)
    sdp_mid: str | None = Field(default=None, max_length=64)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=255)


class ConsultationStateChanged(_Message):
    """To the members of a room: its consultation was accepted, closed or cancelled."""

    type: Literal["consultation-state"] = "consultation-state"
    consultation: ConsultationInfo


class ConsultationUpdated(_Message):
    """To every clinician socket of the two sites, in a room or not: a consultation was
    created, accepted, cancelled or closed. ``consultation`` is computed for the recipient
    (its ``allowed_actions``) and carried whole, nulls included, as the HTTP API gives it."""

    type: Literal["consultation"] = "consultation"
    consultation: ConsultationSummary

    @model_serializer(mode="wrap")
    def _whole_consultation(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # encode() drops nulls; the summary keeps them (accepted_at: null), as over HTTP.
        data: dict[str, Any] = handler(self)
        data["consultation"] = self.consultation.model_dump(mode="json", by_alias=True)
        return data


class Ping(_Message):
    type: Literal["ping"] = "ping"
    nonce: int = Field(ge=0, le=2**53)


class Pong(_Message):
    type: Literal["pong"] = "pong"
    nonce: int


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    reason: str
    #: The ``type`` of the message that caused the error, when known.
    ref: str | None = None


class AlarmLimit(_Message):
    """One parameter's alarm limits at the bedside: ``code`` is the parameter's key (e.g.
    ``spo2``), ``low``/``high`` in its unit (None: no limit on that side), ``delay_s`` how
    long a value must stay beyond a limit before it alarms."""

    code: str = Field(min_length=1, max_length=64)
    low: float | None = Field(default=None, allow_inf_nan=False)
    high: float | None = Field(default=None, allow_inf_nan=False)
    delay_s: float = Field(default=10.0, ge=0.0, le=120.0)


class AlarmAck(_Message):
    """A doctor acknowledges a bedside alarm. Sent by a doctor of the room (the server refuses
    anyone else, and audits both); the server relays it to the room's gateways with ``from``
    and ``by`` (the doctor's name) filled in. The gateway owns the alarm's state and tells
    every viewer, over the events channel, that it was acknowledged."""

    type: Literal["alarm-ack"] = "alarm-ack"
    alarm_id: str = Field(min_length=1, max_length=128)
    sender: _ID | None = Field(default=None, alias="from")
    by: str | None = None


class AlarmLimitsChange(_Message):
    """The consulting site's doctor changes alarm limits from the room (audited, with the
    old and new values as the gateway reports them); relayed to the room's gateways, which
    apply them and tell every viewer the limits now in force."""

    type: Literal["alarm-limits"] = "alarm-limits"
    limits: list[AlarmLimit] = Field(min_length=1, max_length=32)
    sender: _ID | None = Field(default=None, alias="from")
    by: str | None = None


#: A DICOM UID (PS3.5 9.1): dot-separated numbers without leading zeros, at most 64.
DICOM_UID = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
]
#: A coordinate or window value in an image's pixels or units: finite, bounded.
_IMAGE_VALUE = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]


class ImagingStored(_Message):
    """To the members of a room: a DICOM instance was stored with the consultation (its
    images are at ``/api/consultations/{id}/dicomweb``)."""

    type: Literal["imaging.stored"] = "imaging.stored"
    consultation_id: _ID
    study: DICOM_UID
    series: DICOM_UID
    sop: DICOM_UID
    modality: str
    #: How many frames the instance has (1 for a single image).
    frames: int


class ImagingView(_Message):
    """What a doctor is looking at, shared with the room: sent by a clinician of an active
    consultation, relayed by the server to the room's other clinicians with ``from`` set.
    ``frame`` is 1-based, as in the DICOMweb frame URLs; ``window`` is ``[centre, width]``
    (None: the image's own); ``pointer`` is ``[x, y]`` in the image's pixel coordinates
    (None: no pointer)."""

    type: Literal["imaging.view"] = "imaging.view"
    study: DICOM_UID
    series: DICOM_UID
    sop: DICOM_UID
    frame: int = Field(default=1, ge=1, le=65_535)
    window: tuple[_IMAGE_VALUE, Annotated[float, Field(gt=0, le=1e6)]] | None = None
    pointer: tuple[_IMAGE_VALUE, _IMAGE_VALUE] | None = None
    sender: _ID | None = Field(default=None, alias="from")


ClientMessage = (
    Hello
    | Join
    | Leave
    | Offer
    | Answer
    | Candidate
    | Chat
    | Ping
    | AlarmAck
    | AlarmLimitsChange
    | ImagingView
)
ServerMessage = (
    Welcome
    | Joined
    | Left
    | PeerJoined
    | PeerLeft
    | Offer
    | Answer
    | Candidate
    | Chat
    | ConsultationStateChanged
    | ConsultationUpdated
    | AlarmAck
    | AlarmLimitsChange
    | ImagingStored
    | ImagingView
    | Pong
    | Error
)
Message = ClientMessage | ServerMessage

_CLIENT_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)
_SERVER_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(
    Annotated[ServerMessage, Field(discriminator="type")]
)


def _types(adapter_union: Any) -> frozenset[str]:
    return frozenset(m.model_fields["type"].default for m in adapter_union.__args__)


CLIENT_TYPES = _types(ClientMessage)
SERVER_TYPES = _types(ServerMessage)


# A JSON string (escapes included), or a character that is neither a quote nor a bracket:
# both are removed before the brackets are counted, so brackets inside strings are not
# nesting. An unterminated string runs to the end, and the quantifiers are possessive:
# every character is looked at once, whatever the text.
_NOT_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.?)*+(?:"|\Z)|[^"\[\]{}]++', re.DOTALL)


def json_depth_exceeds(text: str | bytes, max_depth: int) -> bool:
    """True when ``text`` nests arrays and objects deeper than ``max_depth``, judged by a
    scan of its brackets outside strings, without decoding it: what a recursive decoder
    (``json.loads``) must never be given. Unbalanced text is judged by its deepest point."""
    if isinstance(text, bytes):
        # One character per byte: the brackets and quotes are ASCII in every encoding a
        # JSON decoder accepts, whatever the other bytes are.
        text = text.decode("latin-1")
    if text.count("[") + text.count("{") <= max_depth:
        return False  # the common case, decided at C speed: it cannot nest that deep
    depth = 0
    for char in _NOT_STRUCTURE.sub("", text):
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth = max(0, depth - 1)
    return False


def _load_object(text: str | bytes, max_depth: int) -> tuple[dict[str, Any], str]:
    if json_depth_exceeds(text, max_depth):
        raise ProtocolError(
            ErrorCode.TOO_DEEP, f"arrays and objects nested deeper than {max_depth} levels"
        )
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    except RecursionError:
        # Not reached past the scan above; kept so that no text can end a connection.
        raise ProtocolError(ErrorCode.TOO_DEEP, "arrays and objects nested too deep") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "missing string field 'type'")
    return data, kind


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or "message"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_client_message(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> ClientMessage:
    """Parse what a client sent. Raises :class:`ProtocolError` with the reason on any fault;
    ``too_deep`` when arrays and objects nest deeper than ``max_depth`` (checked before the
    text is decoded, so that no nesting can exhaust the decoder's recursion)."""
    data, kind = _load_object(text, max_depth)
    if kind not in CLIENT_TYPES:
        code = ErrorCode.UNEXPECTED_TYPE if kind in SERVER_TYPES else ErrorCode.UNKNOWN_TYPE
        raise ProtocolError(code, f"type {kind[:40]!r} may not be sent by a client")
    try:
        return _CLIENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _describe(exc), ref=kind) from None


def parse_server_message(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> ServerMessage:
    """Parse what the server sent. Raises :class:`ProtocolError` on any fault (``too_deep``
    as :func:`parse_client_message`)."""
    data, kind = _load_object(text, max_depth)
    if kind not in SERVER_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown server message type {kind[:40]!r}")
    try:
        return _SERVER_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _describe(exc), ref=kind) from None


def encode(message: Message) -> str:
    """Serialise a message to its JSON text (aliases such as ``from`` applied, no nulls)."""
    return message.model_dump_json(by_alias=True, exclude_none=True)


#: What a member named ``from`` (or ``sender``, the name it may also be given) looks like in
#: a message's text. Without ``\u`` escapes in the text, a member of that name shows its
#: name literally; a string value equal to the name matches too (then the text is encoded
#: anew: slower, never wrong).
_SENDER_KEYS = ('"from"', '"sender"')


def relay_text(text: str | bytes, message: Offer | Answer | Candidate, sender: str) -> str:
    """The text that relays ``message`` with ``from`` set to ``sender``, where ``message`` is
    what :func:`parse_client_message` made of ``text``.

    A relay need not encode what it has just validated: this is the client's own text with
    ``"from"`` added as its last member, when that text names no ``from`` (or ``sender``) of
    its own and has no ``\\u`` escape behind which such a name could hide. Otherwise (and for
    a binary frame) it is the message encoded anew, as
    ``encode(message.model_copy(update={"sender": sender}))``. Either way the recipient's
    :func:`parse_server_message` gives the same message; the first keeps the client's
    spelling (whitespace, the members it gave as null), which the schema accepted."""
    if isinstance(text, str) and message.sender is None and "\\u" not in text:
        body = text.rstrip(" \t\n\r")
        if body.endswith("}") and not any(key in body for key in _SENDER_KEYS):
            # json.dumps: an id needs no escaping, but the text stays JSON whatever it is.
            return f'{body[:-1]},"from":{json.dumps(sender)}}}'
    return encode(message.model_copy(update={"sender": sender}))
