"""Device events -> what travels to the other site: waveform packets and event messages.

Pure and synchronous (the gateway runs it in its worker thread, off the event loop). The
event messages are those of :mod:`media.rtc.events` (``channel``, ``numeric``, ``beats``,
``quality``, ``status``); each leaves here with a ``retain`` key or None: the latest message
under each key (channel metadata, the latest value of each numeric, each device's state) is
what a viewer who connects later is told first.

Each waveform channel, one (device, signal), has an id of its own for the gateway's life
(two devices' pleths are two channels) and a :class:`~media.waveform.clock.SampleTimeline`:
its packets carry the stream index of their first sample and a time from the channel's
sample clock, never a read's arrival time (see :mod:`media.rtc.wire`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from devices.codes import ECG_II, HEART_RATE, PLETH, PULSE_RATE, VitalCode
from devices.export import to_dict
from devices.model import (
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    FrameError,
    Observation,
    WaveformChunk,
)
from media.rtc import events
from media.rtc.wire import MAX_SAMPLES, WirePacket
from media.waveform.channel import ChannelOutput, EcgChannel, PlethChannel
from media.waveform.clock import SampleTimeline

#: A derived rate is sent at most this often per channel.
DERIVED_EVERY_S = 1.0
#: A device in one of these states sends no more samples for now.
_QUIET = frozenset({DeviceState.SILENT, DeviceState.DISCONNECTED, DeviceState.PROBE_OFF})


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
    id: int
    code: VitalCode
    device_id: str
    sample_rate: float
    timeline: SampleTimeline
    sequence: itertools.count[int] = field(default_factory=itertools.count)
    process: Callable[[np.ndarray], ChannelOutput] | None = None
    #: Samples given to ``process`` (the detectors count in these).
    samples_seen: int = 0
    #: (detector index where a chunk starts, its stream index minus that) for recent
    #: chunks: a beat decided late is timed by the chunk it fell in, silences included.
    shifts: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=512))
    #: A read the timeline holds until the next tells whether a silence came before it.
    held: list[WaveformChunk] = field(default_factory=list)
    last_derived: float = float("-inf")

    def announcement(self) -> Event:
        return Event(
            events.ChannelInfo(
                channel=self.id,
                code=self.code.key,
                refid=self.code.refid,
                unit=self.code.ucum,
                sample_rate=self.sample_rate,
                device=self.device_id,
                mdc=self.code.mdc,
            ),
            retain=("channel", self.device_id, str(self.code.mdc)),
        )

    def stream_index(self, detector_index: int) -> int:
        shift = self.shifts[0][1] if self.shifts else 0
        for start, chunk_shift in reversed(self.shifts):
            if start <= detector_index:
                shift = chunk_shift
                break
        return detector_index + shift


class VitalsProcessor:
    """Turns each device event into outgoing packets and messages. ``mains_hz`` is the
    site's mains frequency (the ECG notch)."""

    def __init__(self, mains_hz: float) -> None:
        self.mains_hz = mains_hz
        self._channels: dict[tuple[str, int], _Channel] = {}
        self._ids = itertools.count(1)
        #: Each device's numerics, counted (events.Numeric.seq).
        self._numeric_seq: dict[str, itertools.count[int]] = {}
        self.frame_errors = 0
        #: A test hook on the sending side: a packet for which it returns True is not sent
        #: (its sequence number and samples are missing at the other end, as on a lossy
        #: link). None in service.
        self.drop_packet: Callable[[WirePacket], bool] | None = None
        self.packets_dropped = 0

    def _next_seq(self, device_id: str) -> int:
        return next(self._numeric_seq.setdefault(device_id, itertools.count()))

    def timeline(self, device_id: str, mdc: int) -> SampleTimeline | None:
        """The sample numbering of one device's signal (its gaps and late reads counted)."""
        channel = self._channels.get((device_id, mdc))
        return None if channel is None else channel.timeline

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
                        seq=self._next_seq(event.device_id),
                    )
                ]
            case DeviceStatus():
                status = events.DeviceStatus(
                    device=event.device_id,
                    state=str(event.state),
                    detail=event.detail,
                    time=event.receive_time,
                )
                held = self._release(event.device_id) if event.state in _QUIET else []
                return [*held, Event(status, retain=("status", event.device_id))]
            case FrameError():
                self.frame_errors += 1  # counted and logged by the reader; nothing to send
                return []
        raise TypeError(f"not a device event: {event!r}")

    def _waveform(self, chunk: WaveformChunk) -> list[Outgoing]:
        key = (chunk.device_id, chunk.code.mdc)
        channel = self._channels.get(key)
        out: list[Outgoing] = []
        if channel is None or channel.sample_rate != chunk.sample_rate:
            # A new rate (rare: a monitor's wave settings changed) starts the channel's
            # stream afresh under the same id; its sequence numbers go on.
            if channel is not None and channel.held:
                (placement,) = channel.timeline.release()
                out.extend(self._packets(channel, channel.held.pop(), placement.first_index))
            channel = _Channel(
                channel.id if channel is not None else next(self._ids),
                chunk.code,
                chunk.device_id,
                chunk.sample_rate,
                SampleTimeline(chunk.sample_rate),
                channel.sequence if channel is not None else itertools.count(),
                _pipeline(chunk.code, chunk.sample_rate, self.mains_hz),
            )
            self._channels[key] = channel
            out.append(channel.announcement())
        if len(chunk.samples) == 0:
            return out
        pending = [*channel.held, chunk]
        placed = channel.timeline.place(
            len(chunk.samples), chunk.receive_time, chunk.first_sample_index
        )
        channel.held = pending[len(placed) :]
        for ready, placement in zip(pending, placed, strict=False):
            out.extend(self._packets(channel, ready, placement.first_index))
        return out

    def _release(self, device_id: str) -> list[Outgoing]:
        """A device fell silent: a read its channels hold goes out as the evidence says."""
        out: list[Outgoing] = []
        for channel in self._channels.values():
            if channel.device_id == device_id and channel.held:
                (placement,) = channel.timeline.release()
                out.extend(self._packets(channel, channel.held.pop(), placement.first_index))
        return out

    def _packets(self, channel: _Channel, chunk: WaveformChunk, first: int) -> list[Outgoing]:
        """One placed read: processed for display, beats and quality, then packets."""
        out: list[Outgoing] = []
        samples = np.asarray(chunk.samples, dtype=np.float32)
        n = len(samples)
        shown = samples
        if channel.process is not None:
            channel.shifts.append((channel.samples_seen, first - channel.samples_seen))
            result = channel.process(samples.astype(np.float64))
            shown = result.samples
            out.extend(self._derived(channel, chunk, result))
            channel.samples_seen += n
        for k in range(0, n, MAX_SAMPLES):
            index = first + k
            packet = WirePacket(
                channel=channel.id,
                sequence=next(channel.sequence) & 0xFFFFFFFF,
                sample_rate=chunk.sample_rate,
                first_time=channel.timeline.stamp(index),
                samples=shown[k : k + MAX_SAMPLES],
                first_index=index,
            )
            if self.drop_packet is not None and self.drop_packet(packet):
                self.packets_dropped += 1
                continue
            out.append(packet)
        return out

    def _derived(
        self, channel: _Channel, chunk: WaveformChunk, result: ChannelOutput
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        # Beat and quality times on the channel's sample clock, by stream index.
        timeline = channel.timeline
        if result.beats:
            times = [round(timeline.time_of(channel.stream_index(b)), 4) for b in result.beats]
            out.append(Event(events.Beats(channel=channel.id, times=times)))
        for score in result.quality:
            quality = events.Quality(
                channel=channel.id,
                score=round(score.score, 3),
                time=round(timeline.time_of(channel.stream_index(score.end)), 4),
            )
            out.append(Event(quality))
        rate_code = HEART_RATE if chunk.code is ECG_II else PULSE_RATE
        if result.beats and chunk.receive_time - channel.last_derived >= DERIVED_EVERY_S:
            channel.last_derived = chunk.receive_time
            rate = None if result.rate is None else round(result.rate, 1)
            out.append(
                _numeric(
                    rate_code,
                    rate,
                    chunk.device_id,
                    chunk.receive_time,
                    None,
                    [],
                    derived=True,
                    seq=self._next_seq(chunk.device_id),
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
    seq: int | None = None,
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
        seq=seq,
    )
    # Device values and derived ones are kept apart: a viewer shows the device's own first.
    return Event(numeric, retain=("numeric", device_id, code.key, str(derived)))
