"""The HTTP API's request and response bodies, shared by the server's routes and the Python
client (which returns them typed). The WebSocket messages are in :mod:`signaling.schema`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from signaling.schema import ConsultationSummary, PrincipalKind, Role, Sex

#: Text on one line: no control characters (PostgreSQL refuses NUL; none belongs in a name).
_LINE = r"^[^\x00-\x1f\x7f]*$"
#: Text of several lines: tabs and newlines allowed, other control characters not.
_PARAGRAPH = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
#: A machine key: parameter codes, quality flags, alarm conditions.
_KEY = r"^[A-Za-z0-9_.:-]+$"

#: Times a gateway reports (s since the epoch) lie in this century: 2000-01-01 .. 2100-01-01.
EPOCH_MIN = 946_684_800.0
EPOCH_MAX = 4_102_444_800.0


Line64 = Annotated[str, Field(max_length=64, pattern=_LINE)]
Line128 = Annotated[str, Field(max_length=128, pattern=_LINE)]
Key64 = Annotated[str, Field(min_length=1, max_length=64, pattern=_KEY)]
Key32 = Annotated[str, Field(min_length=1, max_length=32, pattern=_KEY)]
Device = Annotated[str, Field(min_length=1, max_length=64, pattern=_LINE)]
EpochTime = Annotated[float, Field(ge=EPOCH_MIN, le=EPOCH_MAX, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class UserLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class GatewayLogin(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=1024)


class PrincipalOut(BaseModel):
    kind: PrincipalKind
    id: int
    name: str
    role: Role
    site: str


class TokenOut(BaseModel):
    token: str
    expires_at: datetime
    #: A clinician session ends after this many seconds without activity (None: never).
    idle_timeout_s: float | None
    principal: PrincipalOut


class PatientIn(BaseModel):
    """The patient a consultation is about, as the requesting site names them. What each
    recipient gets of it: :mod:`signaling.patient` (identifying fields stay at the
    requesting site without cross-border consent)."""

    model_config = ConfigDict(extra="forbid")

    #: The requesting site's pseudonymous patient id (not a hospital number).
    pseudonym: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    #: The year of birth or the age in years: one of them, or neither.
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    age: int | None = Field(default=None, ge=0, le=130)
    sex: Sex = Sex.UNKNOWN
    ward: Line64 = ""
    bed: Annotated[str, Field(max_length=32, pattern=_LINE)] = ""
    #: Clinical: why the patient is seen (no names in it).
    reason: Annotated[str, Field(max_length=2000, pattern=_PARAGRAPH)] = ""
    #: Clinical: known allergies, one per item (``penicillin``).
    allergies: list[Annotated[str, Field(min_length=1, max_length=128, pattern=_LINE)]] = Field(
        default_factory=list, max_length=32
    )
    #: The name in the patient's own script (漢字, 한글) and romanised.
    name: Line128 = ""
    name_romanised: Line128 = ""

    @model_validator(mode="after")
    def _one_age(self) -> PatientIn:
        if self.birth_year is not None and self.age is not None:
            raise ValueError("give the year of birth or the age, not both")
        return self


class ConsultationRequest(BaseModel):
    consulting_site: str = Field(min_length=1, max_length=32)
    #: Whether the patient consented to their data crossing the border; without consent
    #: images and vitals leave the site de-identified.
    consent_cross_border: bool
    reason: str = Field(default="", max_length=2000)
    #: Who the consultation is about (optional: a request may name no patient).
    patient: PatientIn | None = None


class ConsultationOut(ConsultationSummary):
    """A consultation as the caller sees it; the same fields a ``consultation`` message of
    the WebSocket carries (:class:`~signaling.schema.ConsultationSummary`)."""


class ParticipantOut(BaseModel):
    """Someone who joined the consultation at least once (a clinician or a gateway)."""

    kind: PrincipalKind
    principal_id: int
    name: str
    role: Role
    site: str


class SummaryOut(BaseModel):
    """What a consultation came to: shown when it ends, and part of its record."""

    consultation: ConsultationOut
    #: When it was accepted (ISO 8601, UTC); None if it never was.
    started_at: str | None
    ended_at: str | None
    #: ended_at - started_at; while active, until now; None if it never started.
    duration_s: float | None
    #: Everyone who ever joined, in the order they first joined.
    participants: list[ParticipantOut]
    #: Stored chat messages and snapshots.
    messages: int
    snapshots: int


class SnapshotOut(BaseModel):
    """A stored bedside snapshot (its bytes are at ``.../snapshots/{id}``)."""

    id: int
    consultation_id: str
    taken_at: datetime
    #: The display name of the clinician who took it.
    taken_by: str
    content_type: str
    bytes: int
    sha256: str


class IceServer(BaseModel):
    """Shaped like the browser's ``RTCIceServer`` dictionary."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServersOut(BaseModel):
    ice_servers: list[IceServer]
    #: When the TURN credentials stop working (None when there is no TURN server).
    expires_at: datetime | None


# -- the bedside's record: numerics and alarms uploaded by a gateway ---------------------------


class _Upload(BaseModel):
    # A newer gateway may send fields this server does not know: ignored, never kept.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class NumericIn(_Upload):
    """One value of one parameter from one device (or derived by the gateway), as the
    events channel's ``numeric`` carries it. The server keeps at most one per parameter,
    device and second (of ``time``): the latest."""

    device: Device
    code: Key64
    #: UCUM (``/min``, ``%``, ``mm[Hg]``, ``Cel``).
    unit: Annotated[str, Field(max_length=32, pattern=_LINE)] = ""
    #: None: the device had no valid value (a gap, not a zero).
    value: Finite | None
    #: When the gateway received it, and the device's own time for it.
    time: EpochTime
    device_time: Finite | None = None
    derived: bool = False
    quality: list[Key32] = Field(default_factory=list, max_length=16)
    #: The codes the gateway knows the parameter by (for the standards exports).
    mdc: int | None = Field(default=None, ge=0, le=2**31 - 1)
    refid: Key64 | None = None
    loinc: str | None = Field(default=None, pattern=r"^[0-9]{1,7}-[0-9]$")


class AlarmIn(_Upload):
    """An alarm as the gateway knows it now: the fields of the events channel's ``alarm``
    (media.rtc.events.Alarm). Sent when it starts and whenever it changes."""

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=_LINE)]
    device: Device
    code: Key64 | None = None
    condition: Key64
    text: Annotated[str, Field(max_length=256, pattern=_LINE)] = ""
    priority: Literal["high", "medium", "low"]
    kind: Literal["physiological", "technical"]
    source: Literal["device", "limit"]
    state: Literal["active", "ended"]
    started: EpochTime
    ended: EpochTime | None = None
    value: Finite | None = None
    limit: Finite | None = None
    unit: Annotated[str, Field(max_length=32, pattern=_LINE)] = ""
    acknowledged_by: Line128 | None = None
    acknowledged_at: EpochTime | None = None


class LimitIn(_Upload):
    code: Key64
    low: Finite | None = None
    high: Finite | None = None
    delay_s: Annotated[float, Field(ge=0.0, le=3600.0, allow_inf_nan=False)]
    unit: Annotated[str, Field(max_length=32, pattern=_LINE)] = ""


class LimitsIn(_Upload):
    """The alarm limits the gateway put in force at ``time`` (the events channel's
    ``limits``), and who changed them (None: the defaults)."""

    limits: list[LimitIn] = Field(max_length=64)
    changed_by: Line128 | None = None
    time: EpochTime


#: The most a gateway may upload in one ``record`` request.
MAX_RECORD_NUMERICS = 5000
MAX_RECORD_ALARMS = 1000
MAX_RECORD_LIMITS = 100


class RecordIn(_Upload):
    """``POST /api/consultations/{id}/record``: what a gateway measured, in any order."""

    numerics: list[NumericIn] = Field(default_factory=list, max_length=MAX_RECORD_NUMERICS)
    alarms: list[AlarmIn] = Field(default_factory=list, max_length=MAX_RECORD_ALARMS)
    limits: list[LimitsIn] = Field(default_factory=list, max_length=MAX_RECORD_LIMITS)


class RecordOut(BaseModel):
    """How many rows the upload added or changed: 0 each for a batch replayed as it was."""

    numerics: int
    alarms: int
    limits: int = 0


class SeriesOut(BaseModel):
    """One parameter of one device over the window, one point per ``step`` seconds that has
    data: ``[start of the step (s since the epoch), mean value]``. The value is null where
    the device reported no valid value, and a ``[t, null]`` point follows every run of data
    that the next one does not continue: a line through the points breaks at each gap."""

    device: str
    code: str
    unit: str
    derived: bool
    mdc: int | None
    refid: str | None = None
    loinc: str | None
    points: list[tuple[int, float | None]]


class AlarmOut(BaseModel):
    """A stored alarm: the gateway's fields, ``id`` its own id for it."""

    id: str
    device: str
    code: str | None
    condition: str
    text: str
    priority: Literal["high", "medium", "low"]
    kind: Literal["physiological", "technical"]
    source: Literal["device", "limit"]
    state: Literal["active", "ended"]
    started: float
    ended: float | None
    value: float | None
    limit: float | None
    unit: str
    acknowledged_by: str | None
    acknowledged_at: float | None


class TrendsOut(BaseModel):
    """``GET /api/consultations/{id}/trends``: the window asked for (s since the epoch),
    the step used, the series and the alarms that overlap the window."""

    since: int
    until: int
    step: int
    series: list[SeriesOut]
    alarms: list[AlarmOut]
