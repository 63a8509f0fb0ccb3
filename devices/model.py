"""The device data model every codec decodes into.

Times are seconds since the Unix epoch (floats). ``device_time`` is the device's own clock
when it has one (else None); ``receive_time`` is the gateway's clock when the bytes arrived.
The two are never mixed: devices drift, and the gateway's clock is the one we trust for
latency, the device's the one that orders samples.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from devices.codes import VitalCode


class Quality(enum.Flag):
    """Why a value may not be trusted. An empty flag set means nothing is known to be wrong."""

    OK = 0
    INVALID = enum.auto()
    PROBE_OFF = enum.auto()
    SEARCHING = enum.auto()
    ARTIFACT = enum.auto()
    LOW_PERFUSION = enum.auto()
    OUT_OF_TRACK = enum.auto()
    LOW_SIGNAL = enum.auto()
    #: The device sent the value in a unit that is unknown or does not measure this
    #: parameter: the value is withheld (None), never shown under the wrong unit.
    UNIT_UNKNOWN = enum.auto()


@dataclass(frozen=True, slots=True)
class Observation:
    """One numeric value. ``value`` is None when the device sent a sentinel or flagged it
    invalid: the sentinel itself is never passed on. A non-finite value given is stored as
    None with :attr:`Quality.INVALID`."""

    code: VitalCode
    value: float | None
    device_id: str
    receive_time: float
    device_time: float | None = None
    quality: Quality = Quality.OK

    def __post_init__(self) -> None:
        # Whatever a codec computed: NaN or an infinity is "no value", flagged, never a
        # number passed on (nor NaN/Infinity in JSON, which is not JSON).
        if self.value is not None and not math.isfinite(self.value):
            object.__setattr__(self, "value", None)
            object.__setattr__(self, "quality", self.quality | Quality.INVALID)
        if self.device_time is not None and not math.isfinite(self.device_time):
            object.__setattr__(self, "device_time", None)


@dataclass(frozen=True, slots=True, eq=False)
class WaveformChunk:
    """Consecutive samples of one channel. Missing samples are NaN (a gap is marked, never
    filled with zeros); ``first_sample_time`` is on the device clock when the device has one,
    else estimated from the gateway's receive time. ``first_sample_index`` is the device's own
    number for the first sample when the device numbers its samples (counting up, unwrapped
    by the codec), else None: the gateway then counts the samples it receives."""

    code: VitalCode
    sample_rate: float
    first_sample_time: float
    samples: NDArray[np.float32]
    device_id: str
    receive_time: float
    quality: Quality = Quality.OK
    first_sample_index: int | None = None

    @property
    def gap_mask(self) -> NDArray[np.bool_]:
        return np.isnan(self.samples)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class DeviceState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SEARCHING = "searching"
    PROBE_OFF = "probe_off"
    SILENT = "silent"
    DISCONNECTED = "disconnected"
    #: The reader's session failed on something unforeseen (a decoder fault); it starts
    #: afresh after a backoff. ``detail`` says what failed.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    state: DeviceState
    receive_time: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that could not be decoded; they were skipped and the stream resynchronised.
    ``reason`` is a stable category (what the stats count); ``detail`` the specifics."""

    device_id: str
    reason: str
    skipped: int
    receive_time: float
    detail: str = ""


class AlarmPriority(enum.StrEnum):
    """IEC 60601-1-8 alarm priorities (high: red, medium: yellow, low: cyan)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """2 for high, 1 for medium, 0 for low: to sort and to compare."""
        return {"high": 2, "medium": 1, "low": 0}[self.value]


class AlarmKind(enum.StrEnum):
    """IEC 60601-1-8: a physiological alarm is about the patient, a technical one about the
    equipment (a probe off, a lost signal, a device gone)."""

    PHYSIOLOGICAL = "physiological"
    TECHNICAL = "technical"


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    """One alarm condition a device itself reports. ``condition`` is a stable key
    (:mod:`devices.alarms.conditions`: ``spo2_low``, ``probe_off``, ``device`` for one known
    only by the device's words in ``text``); ``code`` the parameter it concerns (None: the
    device as a whole); ``device_time`` when the device says it began, if it says."""

    condition: str
    priority: AlarmPriority
    kind: AlarmKind
    code: VitalCode | None = None
    text: str = ""
    device_time: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two reports the same alarm: the condition, the parameter and, for a
        condition known only by its words, the words."""
        text = self.text if self.condition == "device" else ""
        return (self.condition, self.code.key if self.code else "", text)


@dataclass(frozen=True, slots=True)
class DeviceAlarms:
    """Every alarm ``device_id`` reports active at ``receive_time``: a complete list, so an
    alarm absent from it has ended. Decoders send one when the list changes and repeat it
    now and then (a lost one is made good by the next)."""

    device_id: str
    alarms: tuple[DeviceAlarm, ...]
    receive_time: float


DeviceEvent = Observation | WaveformChunk | DeviceStatus | FrameError | DeviceAlarms


@dataclass
class DecoderStats:
    """Counters every decoder keeps; ``errors`` by reason; ``unmapped`` what decoded but
    could not be passed on (a code outside :mod:`devices.codes`, an unknown unit), by what."""

    bytes_in: int = 0
    frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())
