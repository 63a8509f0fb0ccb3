"""ORM tables. The schema itself is owned by the Alembic migrations in ``migrations/``;
``tests/signaling/storage`` checks that the two never drift apart."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    __tablename__ = "sites"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    country: Mapped[str] = mapped_column(String(2))
    language: Mapped[str] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64))
    mains_hz: Mapped[int] = mapped_column(Integer)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    site_code: Mapped[str] = mapped_column(ForeignKey("sites.code"))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GatewayRow(Base):
    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    site_code: Mapped[str] = mapped_column(ForeignKey("sites.code"))
    key_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SessionRow(Base):
    """A login session. Tokens name it, so a logout or an idle timeout ends every token."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_kind: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[int] = mapped_column(Integer)
    source_addr: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Indexed: the server looks for sessions ended by another process (a disabled account).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class LoginAttemptRow(Base):
    """One login attempt, for the rate limit every server process shares
    (``signaling.storage.login_attempts``). ``outcome`` is ``pending`` (reserved, password
    not yet checked), ``failed`` or ``ok``. Rows older than the limit's window are deleted,
    but for the newest ``ok`` of each (account, source): it marks a known address."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_account_at", "account", "at"),
        Index("ix_login_attempts_source_at", "source", "at"),
        Index("ix_login_attempts_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: ``kind:name`` of the account tried (lower case), whether or not it exists.
    account: Mapped[str] = mapped_column(String(200))
    #: The address the attempt came from (without port).
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(8))


class ConsultationRow(Base):
    __tablename__ = "consultations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requesting_site: Mapped[str] = mapped_column(ForeignKey("sites.code"))
    consulting_site: Mapped[str] = mapped_column(ForeignKey("sites.code"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    consent_cross_border: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The patient consented to identified images leaving the requesting site.
    imaging_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Who the consultation is about; loaded with the consultation (it shapes every view).
    patient: Mapped[PatientRow | None] = relationship(lazy="selectin", uselist=False)


class MemberRow(Base):
    """Who has joined a consultation; survives restarts so presence can show who is missing."""

    __tablename__ = "consultation_members"

    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), primary_key=True)
    principal_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    principal_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_joined_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChatMessageRow(Base):
    """One chat message, part of the consultation's record; ``id`` orders them."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    sender_kind: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[int] = mapped_column(Integer)
    #: Name and site as they were when sent (an account renamed later does not rewrite them).
    sender_name: Mapped[str] = mapped_column(String(128))
    sender_site: Mapped[str] = mapped_column(String(32))
    #: The sending socket's peer id, the ``from`` of the message when it was relayed.
    sender_peer: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SnapshotRow(Base):
    """A still image of the bedside camera, stored in the database with its consultation so
    that backups and retention treat it as the rest of the record."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_by_kind: Mapped[str] = mapped_column(String(16))
    taken_by_id: Mapped[int] = mapped_column(Integer)
    taken_by_name: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    #: Loaded only when asked for: listings never read the images.
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class AuditEventRow(Base):
    """Append-only; each row's ``hash`` covers its fields and the previous row's hash."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    site: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    consultation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    source_addr: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """One row: the chain's tip. Locked (``FOR UPDATE``) while appending, so that server
    processes sharing a PostgreSQL database still append one linear chain."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class PatientRow(Base):
    """The patient a consultation is about, as the requesting (bedside) site named them.

    Kept apart from the consultation so that the identifying fields live in one table:
    :mod:`signaling.patient` decides, per recipient, which of them leave the requesting
    site. ``allergies`` is a JSON list of strings."""

    __tablename__ = "consultation_patients"

    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64))
    birth_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    age: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sex: Mapped[str] = mapped_column(String(8))
    ward: Mapped[str] = mapped_column(String(64))
    bed: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    allergies: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(128))
    name_romanised: Mapped[str] = mapped_column(String(128))


class VitalSeriesRow(Base):
    """One parameter of one device (or derived by the gateway) in one consultation: what
    each stored value belongs to. ``mdc``, ``refid`` and ``loinc`` are the codes the gateway
    reported with it (the standards exports name them); ``unit`` is UCUM."""

    __tablename__ = "vital_series"
    __table_args__ = (UniqueConstraint("consultation_id", "device", "code", "derived"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    device: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    derived: Mapped[bool] = mapped_column(Boolean)
    unit: Mapped[str] = mapped_column(String(32))
    mdc: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    loinc: Mapped[str | None] = mapped_column(String(16), nullable=True)


class VitalNumericRow(Base):
    """At most one value per series per second (the primary key): the latest the gateway
    measured in that second. ``second`` is the gateway's receive time, whole seconds since
    the epoch; ``time`` the exact one (it decides which value of a second is the latest)."""

    __tablename__ = "vital_numerics"

    series_id: Mapped[int] = mapped_column(ForeignKey("vital_series.id"), primary_key=True)
    # Indexed on its own too: retention deletes by age across all series.
    second: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, index=True
    )
    #: None: the device had no valid value then (a gap in the trend, not a zero).
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    time: Mapped[float] = mapped_column(Float)
    device_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Quality flag names, comma-separated (empty: nothing known to be wrong).
    quality: Mapped[str] = mapped_column(String(256))


class VitalAlarmRow(Base):
    """An alarm of the bedside as the gateway last reported it (its fields are those of the
    events channel's ``alarm``); updated as it changes. ``alarm_id`` is the gateway's, unique
    per gateway in a consultation."""

    __tablename__ = "vital_alarms"
    __table_args__ = (UniqueConstraint("consultation_id", "gateway_id", "alarm_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    gateway_id: Mapped[int] = mapped_column(Integer)
    alarm_id: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(64))
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    condition: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(256))
    priority: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(8))
    started: Mapped[float] = mapped_column(Float)
    ended: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    limit: Mapped[float | None] = mapped_column("limit_value", Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(32))
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlarmLimitsRow(Base):
    """The alarm limits a gateway reported in force from ``time`` on (a JSON list of
    limits), and who set them (None: the defaults). One row per gateway and time."""

    __tablename__ = "vital_alarm_limits"
    __table_args__ = (UniqueConstraint("consultation_id", "gateway_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    gateway_id: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    changed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    limits: Mapped[str] = mapped_column(Text)


class ImagingInstanceRow(Base):
    """One DICOM instance stored with a consultation: the index QIDO-RS answers from. The
    file itself is under the server's data directory, at a path made of the consultation's
    id and these UIDs (:mod:`signaling.imaging.files`), byte for byte as it was sent."""

    __tablename__ = "imaging_instances"
    __table_args__ = (
        UniqueConstraint("consultation_id", "sop_instance_uid"),
        Index("ix_imaging_instances_study", "consultation_id", "study_instance_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16))
    frames: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: As stored in the file, decoded with its character set (``=`` separates the
    #: alphabetic, ideographic and phonetic groups); empty when de-identified away.
    patient_name: Mapped[str] = mapped_column(String(512))
    patient_id: Mapped[str] = mapped_column(String(128))
    study_date: Mapped[str] = mapped_column(String(8))
    study_time: Mapped[str] = mapped_column(String(32))
    study_description: Mapped[str] = mapped_column(String(128))
    accession_number: Mapped[str] = mapped_column(String(32))
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str] = mapped_column(String(128))
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    #: Patient Identity Removed (0012,0062) was YES.
    deidentified: Mapped[bool] = mapped_column(Boolean)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sender_kind: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[int] = mapped_column(Integer)
    sender_name: Mapped[str] = mapped_column(String(128))
