"""Device events -> what travels to the other site: waveform packets and event messages.

Pure and synchronous (the gateway runs it in its worker thread, off the event loop). The
event messages are those of :mod:`media.rtc.events` (``channel``, ``numeric``, ``beats``,
``quality``, ``status``); each leaves here with a ``retain`` key or None: the latest message
under each key (channel metadata, the latest value of each numeric, each device's state) is
what a viewer who connects later is told first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from devices.codes import ECG_II, HEART_RATE, PLETH, PULSE_RATE, VitalCode
from devices.export import to_dict
from devices.model import DeviceEvent, DeviceStatus, FrameError, Observation, WaveformChunk
from media.rtc import events
from media.rtc.wire import MAX_SAMPLES, WirePacket
from media.waveform.channel import ChannelOutput, EcgChannel, PlethChannel

#: A derived rate is sent at most this often per channel.
DERIVED_EVERY_S = 1.0


@dataclass(frozen=True)
class Event:
    """A message for the reliable channel; ``retain`` is None for passing events. ``text``
    is its JSON, encoded once here (in the worker thread) for every viewer."""

    message: events.EventMessage
    retain: tuple[str, ...] | None = None
    text: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", events.encode_event(self.message))


Outgoing = WirePacket | Event


@dataclass
class _Channel:
    code: VitalCode
    device_id: str
    sample_rate: float
    sequence: itertools.count[int] = field(default_factory=itertools.count)
    process: Callable[[np.ndarray], ChannelOutput] | None = None
    samples_seen: int = 0
    last_derived: float = float("-inf")

    def announcement(self) -> Event:
        return Event(
            events.ChannelInfo(
                channel=self.code.mdc,
                code=self.code.key,
                refid=self.code.refid,
                unit=self.code.ucum,
                sample_rate=self.sample_rate,
                device=self.device_id,
            ),
            retain=("channel", self.device_id, str(self.code.mdc)),
        )


class VitalsProcessor:
    """Turns each device event into outgoing packets and messages. ``mains_hz`` is the
    site's mains frequency (the ECG notch)."""

    def __init__(self, mains_hz: float) -> None:
        self.mains_hz = mains_hz
        self._channels: dict[tuple[str, int], _Channel] = {}
        self.frame_errors = 0

    def handle(self, event: DeviceEvent) -> list[Outgoing]:
        match event:
            case WaveformChunk():
                return self._waveform(event)
            case Observation():
                return [
                    _numeric(
                        event.code,
                        event.value,
                        event.device_id,
                        event.receive_time,
                        event.device_time,
                        to_dict(event)["quality"],
                        derived=False,
                    )
                ]
            case DeviceStatus():
                status = events.DeviceStatus(
                    device=event.device_id,
                    state=str(event.state),
                    detail=event.detail,
                    time=event.receive_time,
                )
                return [Event(status, retain=("status", event.device_id))]
            case FrameError():
                self.frame_errors += 1  # counted and logged by the reader; nothing to send
                return []
        raise TypeError(f"not a device event: {event!r}")

    def _waveform(self, chunk: WaveformChunk) -> list[Outgoing]:
        key = (chunk.device_id, chunk.code.mdc)
        channel = self._channels.get(key)
        out: list[Outgoing] = []
        if channel is None or channel.sample_rate != chunk.sample_rate:
            channel = _Channel(chunk.code, chunk.device_id, chunk.sample_rate)
            channel.process = _pipeline(chunk.code, chunk.sample_rate, self.mains_hz)
            self._channels[key] = channel
            out.append(channel.announcement())
        samples = np.asarray(chunk.samples, dtype=np.float32)
        shown = samples
        if channel.process is not None and len(samples):
            result = channel.process(samples.astype(np.float64))
            shown = result.samples
            out.extend(self._derived(channel, chunk, result))
        for k in range(0, len(shown), MAX_SAMPLES):
            part = shown[k : k + MAX_SAMPLES]
            out.append(
                WirePacket(
                    channel=chunk.code.mdc,
                    sequence=next(channel.sequence) & 0xFFFFFFFF,
                    sample_rate=chunk.sample_rate,
                    first_time=chunk.first_sample_time + k / chunk.sample_rate,
                    samples=part,
                )
            )
        channel.samples_seen += len(samples)
        return out

    def _derived(
        self, channel: _Channel, chunk: WaveformChunk, result: ChannelOutput
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        # Beat times on the waveform's own clock: stream index -> time of that sample.
        origin = chunk.first_sample_time - channel.samples_seen / chunk.sample_rate
        if result.beats:
            times = [round(origin + b / chunk.sample_rate, 4) for b in result.beats]
            out.append(Event(events.Beats(channel=chunk.code.mdc, times=times)))
        for score in result.quality:
            quality = events.Quality(
                channel=chunk.code.mdc,
                score=round(score.score, 3),
                time=round(origin + score.end / chunk.sample_rate, 4),
            )
            out.append(Event(quality))
        rate_code = HEART_RATE if chunk.code is ECG_II else PULSE_RATE
        if result.beats and chunk.receive_time - channel.last_derived >= DERIVED_EVERY_S:
            channel.last_derived = chunk.receive_time
            rate = None if result.rate is None else round(result.rate, 1)
            out.append(
                _numeric(
                    rate_code, rate, chunk.device_id, chunk.receive_time, None, [], derived=True
                )
            )
        return out


def _pipeline(
    code: VitalCode, fs: float, mains_hz: float
) -> Callable[[np.ndarray], ChannelOutput] | None:
    if code is ECG_II:
        return EcgChannel(fs, mains_hz).process
    if code is PLETH:
        return PlethChannel(fs).process
    return None  # other waveforms (respiration, pressure) travel as the device sent them


def _numeric(
    code: VitalCode,
    value: float | None,
    device_id: str,
    time: float,
    device_time: float | None,
    quality: list[str],
    *,
    derived: bool,
) -> Event:
    numeric = events.Numeric(
        code=code.key,
        mdc=code.mdc,
        refid=code.refid,
        loinc=code.loinc,
        unit=code.ucum,
        value=value,
        time=time,
        device_time=device_time,
        device=device_id,
        quality=quality,
        derived=derived,
    )
    # Device values and derived ones are kept apart: a viewer shows the device's own first.
    return Event(numeric, retain=("numeric", device_id, code.key, str(derived)))
