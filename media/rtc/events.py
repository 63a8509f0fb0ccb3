"""The messages of the reliable ``events`` data channel, defined once. Sans-I/O.

The waveform samples travel in the binary format of :mod:`media.rtc.wire` on their own
unordered channel; everything else between a bedside and a viewer travels here as one JSON
object per message with a ``type`` discriminator:

- bedside → viewer: ``hello`` (first, names the version), ``channel`` (a waveform's metadata,
  before its first packet), ``numeric``, ``beats``, ``quality``, ``status`` (a device's state),
  ``alarm`` and ``limits`` (the bedside's alarms and the limits in force), ``sources`` (the
  primary device of a parameter two devices measure), ``video`` (what the bedside's video
  adaptation sends this viewer, :mod:`media.rtc.adapt`);
- viewer → bedside: ``source`` (a technician's choice of that primary device),
  ``waveform-history-request`` (a clinician asks for samples the live trace lost in a gap),
  ``hold-frame`` (hold the frame a doctor froze) and ``keep-frame`` (keep a live imaging
  frame as a DICOM Secondary Capture), ``pacs-find`` and
  ``pacs-pull`` (search the bedside site's PACS, pull a study into the consultation),
  ``latency-report`` (what the engineer's overlay measured) and ``playout-delay`` (the
  viewer's path needs a jitter buffer: hold frames up to that long);
- bedside → one viewer: ``waveform-history`` (the samples the bedside kept of that range),
  ``cameras`` (which transceiver carries which camera), ``kept-frame``, ``pacs-studies``,
  ``pacs-pulled`` (the answers to those requests);
- either way: ``hb`` (a heartbeat ping) and ``hb-ack`` (its echo), see
  :mod:`media.rtc.heartbeat`.

Version :data:`EVENTS_VERSION`. Within a version, fields are only ever added (optional), so a
reader must ignore fields it does not know; a change that is not additive is a new version.
The JSON Schema for the browser is generated from these models
(``clinic_ui/static/schema/events.schema.json``, by ``scripts/generate``), and tests hold
both the generated file and the browser's reader and writer to it.

:func:`parse_event` reads by type, never by text; :func:`encode_event` writes compact JSON
(no spaces, no NaN: a reader must not depend on either).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from media.errors import MediaError

EVENTS_VERSION = 1

#: Bounds on what a peer may send us: a message larger than this is refused unread.
MAX_EVENT_BYTES = 64 * 1024


class EventError(MediaError, ValueError):
    """A message on the events channel that is not one of ours; the text says why."""


class _Event(BaseModel):
    # Unknown fields are ignored (forward compatible within a version), never kept.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class Hello(_Event):
    """The bedside's first message on a new connection."""

    type: Literal["hello"] = "hello"
    v: int = EVENTS_VERSION
    #: The gateway's name, for the viewer's labels and logs.
    source: str = Field(default="", max_length=128)
    #: What the bedside's sound (the connection's audio track, if any) is: ``voice`` (a
    #: room microphone) or ``stethoscope`` (heart and lung sounds: play without processing,
    #: on headphones); None: the bedside sends no sound.
    audio: Literal["voice", "stethoscope"] | None = None
    #: True when the bedside plays what the viewer sends on the same audio transceiver
    #: (talk-back, push-to-talk); the audio m-line is then sendrecv.
    talkback: bool = False
    #: When this gateway process started (s since the Unix epoch): the numerics' ``seq``
    #: count from it, so a viewer that sees another value knows the count began again.
    started: float | None = None


class ChannelInfo(_Event):
    """A waveform channel's metadata, sent before its first packet (and again to a viewer
    who connects later). A channel is one signal of one device: two devices measuring the
    same signal (a monitor's pleth and an oximeter's) are two channels, each named by its
    device."""

    type: Literal["channel"] = "channel"
    #: The id the wire packets carry, given by the gateway to this (device, signal); the
    #: same id for the gateway's life. (``Beats`` and ``Quality`` name channels by it too.)
    channel: int = Field(ge=0, le=0xFFFFFFFF)
    code: str
    refid: str
    unit: str
    sample_rate: float = Field(gt=0)
    #: The device the samples come from (its id at the gateway).
    device: str
    #: The signal's MDC code (131330 ECG lead II, 150452 pleth). Optional within this
    #: version of the events channel; gateways that speak waveform wire version 2 always
    #: send it (before it, ``channel`` was the MDC code).
    mdc: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)


class Numeric(_Event):
    """One value of one parameter from one device (or derived by the gateway)."""

    type: Literal["numeric"] = "numeric"
    code: str
    mdc: int
    refid: str
    loinc: str | None
    unit: str
    #: None: the device had no valid value (a sentinel, an invalid flag).
    value: float | None
    #: When the gateway received it (s since the Unix epoch).
    time: float
    #: The device's own time for it, when the device has a clock.
    device_time: float | None = None
    device: str
    #: Why the value may not be trusted (flag names; empty: nothing known to be wrong).
    quality: list[str] = Field(default_factory=list)
    #: True when the gateway computed it from a waveform (heart rate from ECG, pulse rate
    #: from pleth) rather than the device reporting it.
    derived: bool = False
    #: The gateway's count of numerics from this device (its own and derived ones), from 0
    #: when the gateway started (:attr:`Hello.started`). A viewer that sees it jump knows how
    #: many it missed (the gateway's journal gives them to the server's record), and one it
    #: has already shown for a parameter (re-sent on a new connection) is not news.
    seq: int | None = Field(default=None, ge=0)


class Beats(_Event):
    """R peaks or pulse peaks found in a waveform, on the waveform's own clock."""

    type: Literal["beats"] = "beats"
    channel: int
    times: list[float]


class Quality(_Event):
    """A waveform's signal quality over the last window, 0 (unusable) to 1 (clean)."""

    type: Literal["quality"] = "quality"
    channel: int
    score: float = Field(ge=0.0, le=1.0)
    time: float


class DeviceStatus(_Event):
    """A device's connection state (connected, probe off, disconnected, ...)."""

    type: Literal["status"] = "status"
    device: str
    state: str
    detail: str = ""
    time: float


class Ping(_Event):
    """A heartbeat ping: answered at once with an :class:`Ack` echoing ``seq`` and ``at``."""

    type: Literal["hb"] = "hb"
    seq: int = Field(ge=0)
    #: The sender's monotonic clock (s); only the sender reads it back, for the round trip.
    at: float


class Ack(_Event):
    type: Literal["hb-ack"] = "hb-ack"
    seq: int = Field(ge=0)
    at: float


class Alarm(_Event):
    """One alarm condition at the bedside, as the gateway knows it: sent when it starts, when
    anything about it changes (acknowledged, ended) and to a viewer who connects while it is
    active. ``id`` is stable over the alarm's life and unique at this gateway.

    Priorities and colours follow IEC 60601-1-8 (high red, medium yellow, low cyan).
    ``source`` says who decided: the device itself, or the gateway's limit check."""

    type: Literal["alarm"] = "alarm"
    id: str = Field(min_length=1, max_length=128)
    device: str
    #: The parameter (``spo2``, ``heart_rate`` ...); None for a device-wide alarm.
    code: str | None = None
    #: A stable key for what is wrong (``spo2_low``, ``hr_high``, ``probe_off``,
    #: ``disconnected``, or ``device`` for a device's own text).
    condition: str = Field(min_length=1, max_length=64)
    #: The device's own words, when it gave any.
    text: str = Field(default="", max_length=256)
    priority: Literal["high", "medium", "low"]
    kind: Literal["physiological", "technical"]
    source: Literal["device", "limit"]
    state: Literal["active", "ended"]
    #: When it started and ended (gateway clock, s since the epoch).
    started: float
    ended: float | None = None
    #: The value that crossed the limit, and the limit (limit alarms), in the parameter's unit.
    value: float | None = None
    limit: float | None = None
    unit: str = ""
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None


class LimitInForce(_Event):
    """A parameter's alarm limits at the gateway (see signaling's ``AlarmLimit``)."""

    code: str
    low: float | None = None
    high: float | None = None
    delay_s: float
    unit: str = ""


class AlarmLimits(_Event):
    """The limits in force: sent to every new viewer and whenever they change."""

    type: Literal["limits"] = "limits"
    limits: list[LimitInForce]
    #: Who changed them last (None: the defaults), and when.
    changed_by: str | None = None
    time: float


class SourceChoice(_Event):
    """Viewer → bedside: show ``device``'s value as the primary one for the parameter
    ``code`` (when two devices measure it, e.g. SpO2 from the monitor and an oximeter). The
    gateway takes it from a technician's connection only."""

    type: Literal["source"] = "source"
    code: str = Field(min_length=1, max_length=64)
    device: str = Field(min_length=1, max_length=128)


class Sources(_Event):
    """Bedside → viewers: the device whose value is primary for each parameter measured by
    more than one (default: the patient monitor), and who chose it last."""

    type: Literal["sources"] = "sources"
    primary: dict[str, str]
    chosen_by: str | None = None


#: The largest playout delay a viewer may ask for (the extension carries up to 40.95 s; a
#: consultation is not served live beyond one second).
MAX_PLAYOUT_DELAY_MS = 1000


class VideoState(_Event):
    """Bedside → one viewer: what its video adaptation now sends it, each time that changes
    (and once a connection's video is sent): the full picture, a reduced one because the
    path carries less, or none (audio and vital signs only)."""

    type: Literal["video"] = "video"
    mode: Literal["full", "reduced", "paused"]
    #: The frame height and frame rate sent (None while paused).
    height: int | None = Field(default=None, ge=0, le=4320)
    fps: float | None = Field(default=None, ge=0, le=120)
    #: The path's estimate for video in bits per second, when one is known.
    estimate_bps: int | None = Field(default=None, ge=0)
    time: float
    #: The quality layer of the shared encode this viewer is actually sent (``"720p"``,
    #: ``"360p"``...): during a switch, the old one until the new one's key frame. None
    #: while paused, or where each viewer has its own encoder.
    layer: str | None = Field(default=None, max_length=16)
    #: The largest playout delay the bedside asks this viewer's receiver to hold, in ms
    #: (RTP playout-delay extension; 0: show each frame at once). Raised on the viewer's
    #: ``playout-delay`` request.
    playout_delay_ms: int | None = Field(default=None, ge=0, le=MAX_PLAYOUT_DELAY_MS)


#: The most samples one ``waveform-history-request`` may ask for (about 4 min at 500 Hz).
MAX_HISTORY_REQUEST = 131072
#: The most samples in one ``waveform-history`` message (a longer range takes several).
MAX_HISTORY_SAMPLES = 2000


class WaveformHistoryRequest(_Event):
    """Viewer → bedside: send what you kept of ``channel``'s samples ``first`` to
    ``first + count - 1`` (stream indices, as the wire packets carry them). Asked after a
    link's gap, to review what the live trace missed; the bedside answers the asking
    connection only, with :class:`WaveformHistory` messages, and may refuse a connection
    that asks too often."""

    type: Literal["waveform-history-request"] = "waveform-history-request"
    channel: int = Field(ge=0, le=0xFFFFFFFF)
    first: int = Field(ge=0, le=2**53 - 1)
    count: int = Field(ge=1, le=MAX_HISTORY_REQUEST)


class WaveformHistory(_Event):
    """Bedside → one viewer: kept samples of a channel, ``samples[k]`` being index
    ``first + k`` (null: not kept, or the device had no value: a gap stays a gap). A
    request is answered by one or more of these in index order, the last with ``done``;
    the range starts later than asked when its beginning is older than what the bedside
    keeps, and nothing of it is kept when the last message has no samples."""

    type: Literal["waveform-history"] = "waveform-history"
    channel: int = Field(ge=0, le=0xFFFFFFFF)
    first: int = Field(ge=0, le=2**53 - 1)
    samples: list[float | None] = Field(max_length=MAX_HISTORY_SAMPLES)
    rate: float = Field(gt=0)
    #: The request this answers (its ``first`` and ``count``), so several can be told apart.
    request_first: int = Field(ge=0, le=2**53 - 1)
    request_count: int = Field(ge=1, le=MAX_HISTORY_REQUEST)
    #: True on the last message of an answer.
    done: bool = False


#: A request id a viewer chooses, echoed in the answer (so a viewer can tell answers apart).
RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
#: A camera's name, as given on the gateway's command line (``--camera ultrasound=...``).
CameraName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


class Camera(BaseModel):
    """One of the bedside's video sources, as a viewer's connection receives it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: CameraName
    #: ``room``: the room camera, enhanced for viewing (denoise, contrast, overlay);
    #: ``diagnostic``: an imaging modality's video output (ultrasound, endoscope), sent as
    #: captured at full frame rate: nothing drawn on it, nothing enhanced.
    purpose: Literal["room", "diagnostic"]
    #: The media id (SDP ``a=mid``) of the transceiver that carries it on this connection.
    mid: str = Field(min_length=1, max_length=32)
    #: The frame size as captured (None until known).
    width: int | None = Field(default=None, ge=1, le=8192)
    height: int | None = Field(default=None, ge=1, le=8192)


class Cameras(_Event):
    """Bedside → one viewer, once its connection opens (and when a camera comes or goes):
    which transceiver carries which camera."""

    type: Literal["cameras"] = "cameras"
    cameras: list[Camera] = Field(max_length=8)


class KeepFrameRequest(_Event):
    """Viewer → bedside: keep the frame ``camera`` shows now as a DICOM Secondary Capture
    in the consultation (de-identified unless the patient consented). ``frame_id`` is the
    frame the doctor froze on, when the viewer knows it (the bedside stamp); the bedside
    keeps that frame if it still holds it, else the newest. Answered with
    :class:`FrameKept` to the asking connection."""

    type: Literal["keep-frame"] = "keep-frame"
    request: RequestId
    camera: CameraName
    frame_id: int | None = Field(default=None, ge=0, le=2**53 - 1)


class HoldFrameRequest(_Event):
    """Viewer → bedside, when a doctor freezes a diagnostic camera's picture: hold frame
    ``frame_id`` (read from the frozen picture's stamp) as captured, so that a
    :class:`KeepFrameRequest` for it later finds it even after the seconds of recent frames
    the bedside keeps have passed. Not answered; the bedside holds a few frames per camera
    (the oldest hold dropped first), and the ``kept-frame`` answer names the frame kept."""

    type: Literal["hold-frame"] = "hold-frame"
    camera: CameraName
    frame_id: int = Field(ge=0, le=2**53 - 1)


class FrameKept(_Event):
    """Bedside → one viewer: the outcome of a :class:`KeepFrameRequest`. ``kept``: stored
    for sending to the server under ``sop_instance_uid`` (as sent: the remapped UID when
    de-identified); ``refused`` (no active consultation, burned-in annotation without
    consent, asked too often: ``reason`` says) and ``failed`` (the bedside could not build
    or store it) keep nothing."""

    type: Literal["kept-frame"] = "kept-frame"
    request: RequestId
    camera: CameraName
    outcome: Literal["kept", "refused", "failed"]
    sop_instance_uid: str | None = Field(default=None, max_length=64)
    deidentified: bool | None = None
    #: The frame kept (its capture stamp) and when it was captured (s since the Unix epoch).
    frame_id: int | None = Field(default=None, ge=0, le=2**53 - 1)
    captured: float | None = None
    reason: str | None = Field(default=None, max_length=512)


#: The most studies one ``pacs-studies`` answer lists (``truncated`` says there were more).
MAX_PACS_STUDIES = 50
_DicomDate = Annotated[str, Field(max_length=17, pattern=r"^(\d{8})?(-(\d{8})?)?$")]
_QueryText = Annotated[str, Field(max_length=64, pattern=r"^[^\\\x00-\x1f]*$")]


class PacsFind(_Event):
    """Viewer → bedside: find studies in the bedside site's PACS (empty field: any;
    ``study_date`` a DICOM date or range, ``20261201-20261202``). The bedside answers only
    clinicians of its own site: the answer names patients, which must not cross the border
    for a search. Answered with :class:`PacsStudies`."""

    type: Literal["pacs-find"] = "pacs-find"
    request: RequestId
    patient_id: _QueryText = ""
    accession_number: _QueryText = ""
    study_date: _DicomDate = ""


class PacsStudy(BaseModel):
    """One study the PACS matched."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    study_instance_uid: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=324)
    study_date: str = Field(default="", max_length=8)
    description: str = Field(default="", max_length=64)
    modalities: list[str] = Field(default_factory=list, max_length=16)
    instances: int | None = Field(default=None, ge=0)


class PacsStudies(_Event):
    """Bedside → one viewer: the answer to a :class:`PacsFind`: the studies (at most
    :data:`MAX_PACS_STUDIES`), or ``error`` (the PACS is not configured, did not answer,
    or the asker may not search it)."""

    type: Literal["pacs-studies"] = "pacs-studies"
    request: RequestId
    studies: list[PacsStudy] = Field(default_factory=list, max_length=MAX_PACS_STUDIES)
    truncated: bool = False
    error: str | None = Field(default=None, max_length=512)


class PacsPull(_Event):
    """Viewer → bedside: pull this study from the site's PACS into the consultation (its
    instances take the bedside's imaging path: checked, de-identified unless consent, sent
    to the server). Only clinicians of the bedside's site. Answered with
    :class:`PacsPulled`."""

    type: Literal["pacs-pull"] = "pacs-pull"
    request: RequestId
    study_instance_uid: str = Field(min_length=1, max_length=64, pattern=r"^[0-9.]+$")


class PacsPulled(_Event):
    """Bedside → the asking viewer: the outcome of a :class:`PacsPull`. ``pulled``: the PACS
    sent ``completed`` instances (each then admitted or refused as the bedside's imaging
    does: see the room's image panel for what arrived); ``refused``/``failed``: ``reason``."""

    type: Literal["pacs-pulled"] = "pacs-pulled"
    request: RequestId
    study_instance_uid: str = Field(min_length=1, max_length=64)
    outcome: Literal["pulled", "refused", "failed"]
    completed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    reason: str | None = Field(default=None, max_length=512)


class LatencySummary(BaseModel):
    """Latencies measured over the last interval, in milliseconds: median, 95th percentile,
    maximum and how many were measured (count > 0 when the figures are given)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    median_ms: float = Field(ge=0, le=600_000)
    p95_ms: float = Field(ge=0, le=600_000)
    max_ms: float = Field(ge=0, le=600_000)
    count: int = Field(ge=1, le=1_000_000)


class LatencyReport(_Event):
    """Viewer → bedside, every few seconds while the engineer's latency overlay is open:
    what the viewer measured where the doctor looks. ``video``: the bedside stamp's capture
    time → the frame's presentation (``requestVideoFrameCallback``) for ``camera``;
    ``waveform``: a sample's device time → the frame that drew it. ``jitter_buffer_ms`` and
    ``decode_ms``: the receiver's own shares per frame over the interval (``getStats``).
    The bedside logs it; it does not answer."""

    type: Literal["latency-report"] = "latency-report"
    camera: CameraName | None = None
    video: LatencySummary | None = None
    waveform: LatencySummary | None = None
    jitter_buffer_ms: float | None = Field(default=None, ge=0, le=600_000)
    decode_ms: float | None = Field(default=None, ge=0, le=600_000)


class PlayoutDelayRequest(_Event):
    """Viewer → bedside: the viewer's path to ``camera`` (None: every camera of this viewer)
    loses or delays packets, so hold up to ``max_ms`` in the receiver's jitter buffer (the
    RTP playout-delay extension's maximum; its minimum stays 0); ``max_ms`` 0 when the path
    is clean again. ``reason``: what the viewer saw (``loss``, ``jitter``) or ``clear``. The
    bedside applies it within :data:`MAX_PLAYOUT_DELAY_MS`, at most a few times a minute
    per viewer, and tells the viewer in its next ``video`` (``playout_delay_ms``)."""

    type: Literal["playout-delay"] = "playout-delay"
    camera: CameraName | None = None
    max_ms: int = Field(ge=0, le=MAX_PLAYOUT_DELAY_MS)
    reason: Literal["loss", "jitter", "clear"]


EventMessage = (
    Hello
    | ChannelInfo
    | Numeric
    | Beats
    | Quality
    | DeviceStatus
    | Alarm
    | AlarmLimits
    | SourceChoice
    | Sources
    | VideoState
    | WaveformHistoryRequest
    | WaveformHistory
    | Cameras
    | KeepFrameRequest
    | HoldFrameRequest
    | FrameKept
    | PacsFind
    | PacsStudies
    | PacsPull
    | PacsPulled
    | LatencyReport
    | PlayoutDelayRequest
    | Ping
    | Ack
)

_ADAPTER: TypeAdapter[EventMessage] = TypeAdapter(
    Annotated[EventMessage, Field(discriminator="type")]
)
EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default for m in EventMessage.__args__
)


def parse_event(text: str | bytes) -> EventMessage:
    """One message from its JSON text. Raises :class:`EventError` with the reason on any
    fault: bad JSON, an unknown ``type``, a missing or invalid field, an oversize message."""
    if len(text) > MAX_EVENT_BYTES:
        raise EventError(f"message of {len(text)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise EventError(f"{where}: {first['msg']}") from None


def encode_event(message: EventMessage) -> str:
    """The compact JSON text of a message. (A non-finite number never gets this far: the
    models refuse NaN and infinities when they are built.)"""
    return message.model_dump_json()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every message, as published for the browser."""
    schema = _ADAPTER.json_schema()
    for definition in schema["$defs"].values():
        # ``type`` has a default in the models (for building them), but every message on
        # the wire carries it: required for readers (parts of messages have none).
        if "type" in definition.get("properties", {}):
            definition["required"] = ["type", *definition.get("required", [])]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"telemed events channel, version {EVENTS_VERSION}"
    schema["version"] = EVENTS_VERSION
    return schema
