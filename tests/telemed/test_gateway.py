"""The gateway's vitals processing, and `telemed gateway` as a user runs it."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from devices.codes import ECG_II, PLETH, PULSE_RATE, SPO2
from devices.model import DeviceState, DeviceStatus, FrameError, Observation, WaveformChunk
from media.rtc.wire import MAX_SAMPLES, WirePacket, decode, encode
from media.waveform.channel import EcgChannel
from telemed.gateway.runner import DeviceSpec
from telemed.gateway.vitals import Event, Outgoing, VitalsProcessor
from telemed.gateway_cli import config_from
from telemed.settings import GatewayOptions, Settings, SettingsError
from tests.helpers import LiveServer


def _ecg(seconds: float, fs: float = 250.0, rate: float = 75.0) -> np.ndarray:
    """Narrow spikes at ``rate`` a minute over 60 Hz hum: enough of an ECG for the detector."""
    t = np.arange(0, seconds, 1 / fs)
    beats = np.arange(0.4, seconds, 60.0 / rate)
    x = sum(np.exp(-0.5 * ((t - b) / 0.012) ** 2) for b in beats)
    return np.asarray(x + 0.2 * np.sin(2 * np.pi * 60 * t), dtype=np.float64)


def _chunks(x: np.ndarray, fs: float, n: int, start: float = 1000.0) -> list[WaveformChunk]:
    """Reads of ``n`` samples, each arriving as its last sample is made."""
    return [
        WaveformChunk(
            ECG_II,
            fs,
            start + k / fs,
            x[k : k + n].astype(np.float32),
            "monitor",
            start + (k + len(x[k : k + n]) - 1) / fs,
        )
        for k in range(0, len(x), n)
    ]


def _messages(out: list[Outgoing]) -> list[dict[str, object]]:
    return [json.loads(o.text) for o in out if isinstance(o, Event)]


def test_ecg_becomes_announced_packets_beats_and_a_derived_heart_rate() -> None:
    fs = 250.0
    processor = VitalsProcessor(mains_hz=60.0)
    out: list[Outgoing] = []
    for chunk in _chunks(_ecg(20.0), fs, 125):
        out.extend(processor.handle(chunk))
    messages = _messages(out)
    assert messages[0] == {
        "type": "channel",
        "channel": 1,
        "code": "ecg_ii",
        "refid": ECG_II.refid,
        "unit": "mV",
        "sample_rate": fs,
        "device": "monitor",
        "mdc": ECG_II.mdc,
    }
    assert sum(m["type"] == "channel" for m in messages) == 1
    packets = [o for o in out if isinstance(o, WirePacket)]
    assert [p.sequence for p in packets] == list(range(len(packets)))
    assert [p.first_index for p in packets] == list(range(0, 20 * 250, 125))
    assert {p.channel for p in packets} == {1}
    shown = np.concatenate([p.samples for p in packets])
    tail = shown[int(5 * fs) :]
    spectrum = np.abs(np.fft.rfft(tail - tail.mean()))
    freqs = np.fft.rfftfreq(len(tail), 1 / fs)
    hum = spectrum[np.argmin(np.abs(freqs - 60.0))]
    assert hum < 0.05 * spectrum.max()  # the site's mains notched out of what is shown
    beat_times = [t for m in messages if m["type"] == "beats" for t in m["times"]]  # type: ignore[attr-defined]
    expected = 1000.0 + np.arange(0.4, 20.0, 0.8)
    found = [min(abs(expected - t)) for t in beat_times]
    assert len(beat_times) >= len(expected) - 4 and max(found) < 0.03
    rates = [m for m in messages if m["type"] == "numeric"]
    assert rates and all(m["code"] == "heart_rate" and m["derived"] for m in rates)
    assert all(abs(float(m["value"]) - 75.0) < 2 for m in rates if m["value"] is not None)  # type: ignore[arg-type]
    for packet in packets[:3]:  # what goes on the wire decodes to the same
        again = decode(encode(packet))
        assert np.allclose(again.samples, packet.samples, atol=1e-3 * np.abs(packet.samples).max())


def test_gaps_stay_gaps_and_do_not_poison_the_filters() -> None:
    fs = 250.0
    x = _ecg(12.0)
    x[1000:1100] = np.nan  # the lead came off for 0.4 s
    channel = EcgChannel(fs, 60.0)
    shown = np.concatenate([channel.process(x[k : k + 50]).samples for k in range(0, len(x), 50)])
    assert np.isnan(shown[1000:1100]).all()
    assert not np.isnan(shown[:1000]).any() and not np.isnan(shown[1100:]).any()
    assert np.nanmax(np.abs(shown[1500:])) < 5  # the filters recovered


def test_long_chunks_are_split_and_other_events_pass_as_messages() -> None:
    processor = VitalsProcessor(mains_hz=50.0)
    long = WaveformChunk(PLETH, 125.0, 10.0, np.zeros(MAX_SAMPLES + 5, np.float32), "ox", 11.0)
    packets = [o for o in processor.handle(long) if isinstance(o, WirePacket)]
    assert [len(p.samples) for p in packets] == [MAX_SAMPLES, 5]
    assert [p.first_index for p in packets] == [0, MAX_SAMPLES]
    # The read's last sample arrived at 11.0: the clock times the samples back from it.
    assert packets[1].first_time == pytest.approx(11.0 - 4 / 125.0)
    assert packets[1].first_time - packets[0].first_time == pytest.approx(MAX_SAMPLES / 125.0)
    (numeric,) = _messages(processor.handle(Observation(SPO2, None, "ox", 12.0, 11.5)))
    assert numeric["value"] is None and numeric["code"] == "spo2" and numeric["derived"] is False
    (retained,) = processor.handle(DeviceStatus("ox", DeviceState.PROBE_OFF, 13.0))
    assert isinstance(retained, Event) and retained.retain == ("status", "ox")
    (status,) = _messages([retained])
    assert status == {
        "type": "status",
        "device": "ox",
        "state": "probe_off",
        "detail": "",
        "time": 13.0,
    }
    assert processor.handle(FrameError("ox", "bad checksum", 1, 14.0)) == []
    assert processor.frame_errors == 1


def test_numerics_are_counted_per_device_across_their_parameters() -> None:
    """events.Numeric.seq: one count per device from 0, its values and derived ones alike,
    so a viewer can tell what it missed and what it has already shown."""
    processor = VitalsProcessor(mains_hz=50.0)
    seqs = []
    for device, code, t in (("ox", SPO2, 1.0), ("ox", PULSE_RATE, 1.1), ("mon", SPO2, 1.2)):
        (numeric,) = _messages(processor.handle(Observation(code, 97.0, device, t, None)))
        seqs.append((numeric["device"], numeric["seq"]))
    (again,) = _messages(processor.handle(Observation(SPO2, 96.0, "ox", 2.0, None)))
    assert [*seqs, (again["device"], again["seq"])] == [("ox", 0), ("ox", 1), ("mon", 0), ("ox", 2)]


def _pleth_reads(
    device: str,
    rate: float,
    seconds: float,
    *,
    start: float = 2000.0,
    jitter_s: float = 0.040,
    seed: int = 3,
    silent: tuple[float, float] | None = None,
    truth: list[int] | None = None,
) -> list[WaveformChunk]:
    """A device without a counter as the gateway reads it: a read every 16-50 ms brings the
    samples made since the last, 0-40 ms late; ``silent`` (start, length): none sent. Each
    chunk's first sample time is what a codec gives (the read's time, back by the chunk's
    length); ``truth`` gets the device's own number of each chunk's first sample."""
    rng = np.random.default_rng(seed)
    chunks, sent, t = [], 0, 0.0
    while t < seconds:
        t += rng.uniform(0.016, 0.050)
        newest = int(t * rate)
        if newest < sent:
            continue
        if silent and silent[0] <= sent / rate < silent[0] + silent[1]:
            sent = newest + 1
            continue
        values = (np.arange(sent, newest + 1) % 120).astype(np.float32)
        arrival = start + newest / rate + rng.uniform(0, jitter_s)
        first = arrival - (len(values) - 1) / rate
        chunks.append(WaveformChunk(PLETH, rate, first, values, device, arrival))
        if truth is not None:
            truth.append(sent)
        sent = newest + 1
    return chunks


def _packets(out: list[Outgoing], channel: int | None = None) -> list[WirePacket]:
    return [o for o in out if isinstance(o, WirePacket) and channel in (None, o.channel)]


def test_two_devices_measuring_pleth_are_two_channels_named_by_their_device() -> None:
    processor = VitalsProcessor(mains_hz=60.0)
    oximeter = _pleth_reads("oximeter-1", 60.0, 5.0)
    monitor = _pleth_reads("monitor-1", 125.0, 5.0, seed=4)
    reads = sorted([*oximeter, *monitor], key=lambda c: c.receive_time)
    out = [o for chunk in reads for o in processor.handle(chunk)]
    infos = {m["device"]: m for m in _messages(out) if m["type"] == "channel"}
    assert set(infos) == {"oximeter-1", "monitor-1"}
    assert {m["mdc"] for m in infos.values()} == {PLETH.mdc}
    assert infos["oximeter-1"]["channel"] != infos["monitor-1"]["channel"]
    for device, chunks in (("oximeter-1", oximeter), ("monitor-1", monitor)):
        info = infos[device]
        packets = _packets(out, int(info["channel"]))  # type: ignore[call-overload]
        assert info["sample_rate"] == chunks[0].sample_rate
        assert sum(len(p.samples) for p in packets) == sum(len(c.samples) for c in chunks)
        assert all(p.sample_rate == chunks[0].sample_rate for p in packets)


def test_packets_follow_on_by_index_and_their_times_do_not_jitter() -> None:
    """The defect this fixes: a packet timed by its read started up to 40 ms late or early
    against the one before it, and a trace placed by times broke or overlapped there."""
    processor = VitalsProcessor(mains_hz=60.0)
    reads = _pleth_reads("oximeter-1", 60.0, 60.0)
    packets = _packets([o for chunk in reads for o in processor.handle(chunk)])
    firsts = [p.first_index for p in packets]
    ends = [p.first_index + len(p.samples) for p in packets]
    assert firsts[0] == 0 and firsts[1:] == ends[:-1]  # every sample once, in order
    for packet, chunk in zip(packets, reads, strict=True):  # values untouched (pleth)
        assert np.array_equal(packet.samples, chunk.samples)
    # Where each packet's time says it follows the one before, against where it does.
    step = np.array(
        [
            b.first_time - (a.first_time + len(a.samples) / 60.0)
            for a, b in itertools.pairwise(packets)
        ]
    )
    read_step = np.array(
        [
            b.first_sample_time - (a.first_sample_time + len(a.samples) / 60.0)
            for a, b in itertools.pairwise(reads)
        ]
    )
    later = np.array([p.first_index for p in packets[1:]]) > 5 * 60
    assert np.abs(read_step[later]).max() > 0.020  # what the reads' own times do
    assert np.abs(step[later]).max() < 0.0005  # the clock's slew: 0.5 % of a packet


def test_a_device_gap_stays_nan_and_a_silence_becomes_a_gap_of_its_length() -> None:
    processor = VitalsProcessor(mains_hz=60.0)
    truth: list[int] = []
    reads = _pleth_reads("oximeter-1", 60.0, 20.0, silent=(10.0, 2.0), truth=truth)
    probe_off = reads[100]
    reads[100] = WaveformChunk(
        PLETH,
        60.0,
        probe_off.first_sample_time,
        np.full(len(probe_off.samples), np.nan, np.float32),
        "oximeter-1",
        probe_off.receive_time,
    )
    packets = _packets([o for chunk in reads for o in processor.handle(chunk)])
    assert np.isnan(packets[100].samples).all()  # the device's own "no value"
    lost = [b - a for a, b in itertools.pairwise(truth) if b - a > 3]
    assert len(lost) == 1 and lost[0] > 110  # the 2 s silence, as the device counted
    # Each packet at the device's own number for its first sample, within one sample
    # (the read jitter hides which read a silence ended in); never squeezed out.
    offsets = np.array([p.first_index for p in packets]) - np.array(truth)
    assert np.abs(offsets).max() <= 1
    gap = int(np.flatnonzero(np.diff(truth) > 3)[0]) + 1
    assert (offsets[:gap] == 0).all() and len(set(offsets[gap:])) == 1


def test_a_late_read_is_no_gap_and_a_held_read_goes_out_when_its_device_falls_silent() -> None:
    processor = VitalsProcessor(mains_hz=60.0)

    def read(first: int, n: int, late: float = 0.0) -> list[Outgoing]:
        arrival = 3000.0 + (first + n - 1) / 60 + 0.005 + late
        values = np.arange(first, first + n, dtype=np.float32) % 120
        return processor.handle(WaveformChunk(PLETH, 60.0, arrival, values, "ox", arrival))

    out = [o for k in range(180) for o in read(k, 1)]  # 3 s on time
    assert _packets(read(180, 1, late=0.4)) == []  # 0.4 s late: held, a silence or not?
    out += read(181, 24)  # what was made meanwhile, on time: it was only late
    indices = [
        i for p in _packets(out) for i in range(p.first_index, p.first_index + len(p.samples))
    ]
    assert indices == list(range(205))
    # A read after 2 s of silence is held; the device is then reported silent.
    assert _packets(read(205 + 120, 1)) == []
    released = processor.handle(DeviceStatus("ox", DeviceState.SILENT, 3010.0))
    (packet,) = _packets(released)
    assert abs(packet.first_index - (205 + 120)) <= 1  # after a gap of the silence
    assert isinstance(released[-1], Event)  # and the status after it


def test_a_device_counter_numbers_the_samples() -> None:
    processor = VitalsProcessor(mains_hz=60.0)
    out: list[Outgoing] = []
    for k, device_index in enumerate([900, 925, 975, 1000]):  # 950..974 never came
        chunk = WaveformChunk(
            PLETH,
            125.0,
            0.0,
            np.ones(25, np.float32),
            "monitor-1",
            100.0 + 0.2 * k,
            first_sample_index=device_index,
        )
        out += processor.handle(chunk)
    assert [p.first_index for p in _packets(out)] == [0, 25, 75, 100]


def test_beats_after_a_silence_are_timed_by_their_samples() -> None:
    fs = 250.0
    processor = VitalsProcessor(mains_hz=60.0)
    chunks = [
        c for c in _chunks(_ecg(30.0), fs, 50) if not 12.0 <= c.first_sample_time - 1000.0 < 15.0
    ]
    out = [o for chunk in chunks for o in processor.handle(chunk)]
    beats = [t for m in _messages(out) if m["type"] == "beats" for t in m["times"]]  # type: ignore[attr-defined]
    expected = 1000.0 + np.arange(0.4, 30.0, 0.8)
    later = [t for t in beats if t > 1016.0]
    assert len(later) >= 15
    assert max(min(abs(expected - t)) for t in later) < 0.03


def test_packets_the_loss_hook_takes_are_not_sent() -> None:
    processor = VitalsProcessor(mains_hz=60.0)
    processor.drop_packet = lambda p: p.sequence in (3, 4)
    packets = _packets(
        [o for chunk in _pleth_reads("oximeter-1", 60.0, 1.0) for o in processor.handle(chunk)]
    )
    assert processor.packets_dropped == 2
    sequences = [p.sequence for p in packets]
    assert 3 not in sequences and 4 not in sequences and sequences[:3] == [0, 1, 2]


def test_device_specs_name_known_protocols() -> None:
    assert DeviceSpec.parse("cms50:/dev/ttyUSB0") == DeviceSpec("cms50", "/dev/ttyUSB0")
    assert DeviceSpec.parse("hl7:2575").port == "2575"
    for bad in ("cms50", "nosuch:/dev/ttyS0", "datex:"):
        with pytest.raises(ValueError, match=r"PROTOCOL:PORT|unknown protocol"):
            DeviceSpec.parse(bad)


@pytest.mark.slow
async def test_telemed_gateway_command_sends_a_simulated_oximeter(
    server: LiveServer, tmp_path: Path
) -> None:
    await server.add_gateway("bed-2.wonju", "wonju", "bed-2-key-0123456789abcdef0123456789")
    key_file = tmp_path / "key"
    key_file.write_text("bed-2-key-0123456789abcdef0123456789\n")
    args = ["gateway", "--server", server.base_url, "--name", "bed-2.wonju"]
    args += ["--key-file", str(key_file), "--site", "wonju", "--simulate", "cms50"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemed",
        *args,
        "--seconds",
        "6",
        env={**os.environ, "TELEMED_DATA_DIR": str(tmp_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 0, text
    packets = int(text.split("gateway stopped: ")[1].split(" waveform packets")[0])
    # 60 pleth packets a second once the process is up and the pty opened (a few seconds).
    assert packets > 60
    assert "Traceback" not in text

    # A wrong key: a clear refusal and exit status 1, not a traceback.
    key_file.write_text("not-the-key")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemed",
        *args,
        env={**os.environ, "TELEMED_DATA_DIR": str(tmp_path)},
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 1, err.decode()
    assert "refused" in err.decode()
    assert "Traceback" not in err.decode()


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "server": None,
        "name": None,
        "key_file": None,
        "site": None,
        "device": [],
        "camera": None,
        "size": None,
        "consultation": None,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_gateway_configuration_comes_from_flags_then_settings(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("flag-key\n")
    settings = Settings(
        data_dir=tmp_path,
        gateway=GatewayOptions(
            name="bed-9", key=SecretStr("settings-key"), site="koriyama", devices=("nonin:/dev/x",)
        ),
    )
    config = config_from(_args(device=["hl7:2575"], size="1280x720"), settings)
    assert (config.name, config.key, config.mains_hz) == ("bed-9", "settings-key", 50.0)
    assert [d.protocol for d in config.devices] == ["nonin", "hl7"]
    assert (config.video.width, config.video.height) == (1280, 720)
    assert config.video.timezone == "Asia/Tokyo"
    assert config.server_url == "http://127.0.0.1:8000"
    assert config.relay_only is False
    flagged = config_from(
        _args(key_file=key, site="wonju", name="bed-1", relay_only=True), settings
    )
    assert (flagged.name, flagged.key, flagged.mains_hz) == ("bed-1", "flag-key", 60.0)
    assert flagged.relay_only is True
    relayed = Settings(
        data_dir=tmp_path, gateway=settings.gateway.model_copy(update={"relay_only": True})
    )
    assert config_from(_args(), relayed).relay_only is True


def test_the_waveform_history_length_comes_from_the_flag_then_the_setting(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        gateway=GatewayOptions(name="bed-9", key=SecretStr("k"), site="wonju"),
    )
    assert config_from(_args(), settings).waveform_history.seconds == 600.0
    assert config_from(_args(waveform_history=120.0), settings).waveform_history.seconds == 120.0
    longer = Settings(
        data_dir=tmp_path,
        gateway=settings.gateway.model_copy(update={"waveform_history_s": 1800.0}),
    )
    assert config_from(_args(), longer).waveform_history.seconds == 1800.0
    with pytest.raises(SettingsError, match="waveform-history"):
        config_from(_args(waveform_history=-5.0), settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": None}, "needs a name"),
        ({"key": None}, "needs its key"),
        ({"site": None}, "needs its site"),
        ({"site": "seoul"}, "unknown site"),
        ({"size": "big"}, "WIDTHxHEIGHT"),
        ({"device": ["serial0"]}, "PROTOCOL:PORT"),
    ],
)
def test_gateway_configuration_errors_say_what_is_missing(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    options: dict[str, object] = {"name": "bed-1", "key": SecretStr("k"), "site": "wonju"}
    flags: dict[str, object] = {}
    for field_name, value in overrides.items():
        if field_name in ("size", "device"):
            flags[field_name] = value
        else:
            options[field_name] = value
    settings = Settings(data_dir=tmp_path, gateway=GatewayOptions.model_validate(options))
    with pytest.raises(SettingsError, match=message):
        config_from(_args(**flags), settings)
