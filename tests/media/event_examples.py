"""One example of every events-channel message, for the Python and the browser tests."""

from __future__ import annotations

from media.rtc import events

EXAMPLES: list[events.EventMessage] = [
    events.Hello(source="bed-1.wonju"),
    events.ChannelInfo(
        channel=1,
        code="ecg_ii",
        refid="MDC_ECG_ELEC_POTL_II",
        unit="mV",
        sample_rate=500.0,
        device="monitor-1",
        mdc=131330,
    ),
    events.Numeric(
        code="spo2",
        mdc=150456,
        refid="MDC_PULS_OXIM_SAT_O2",
        loinc="59408-5",
        unit="%",
        value=97.0,
        time=1_800_000_000.5,
        device="oximeter-1",
        quality=["searching"],
    ),
    events.Numeric(
        code="heart_rate",
        mdc=147842,
        refid="MDC_ECG_HEART_RATE",
        loinc=None,
        unit="/min",
        value=None,
        time=1_800_000_001.0,
        device="monitor-1",
        derived=True,
    ),
    events.Beats(channel=1, times=[1_800_000_000.25, 1_800_000_001.05]),
    events.Quality(channel=2, score=0.82, time=1_800_000_002.0),
    events.DeviceStatus(device="oximeter-1", state="probe_off", detail="", time=1.0),
    events.Ping(seq=7, at=1234.5),
    events.Ack(seq=7, at=1234.5),
    events.Alarm(
        id="monitor-1:spo2_low:1",
        device="monitor-1",
        code="spo2",
        condition="spo2_low",
        priority="medium",
        kind="physiological",
        source="limit",
        state="active",
        started=1_800_000_010.0,
        value=86.0,
        limit=90.0,
        unit="%",
    ),
    events.Alarm(
        id="oximeter-1:probe_off:2",
        device="oximeter-1",
        condition="probe_off",
        text="PROBE OFF",
        priority="low",
        kind="technical",
        source="device",
        state="ended",
        started=1_800_000_010.0,
        ended=1_800_000_020.0,
        acknowledged_by="doctor.koriyama",
        acknowledged_at=1_800_000_015.0,
    ),
    events.AlarmLimits(
        limits=[
            events.LimitInForce(code="spo2", low=90.0, high=None, delay_s=10.0, unit="%"),
            events.LimitInForce(code="heart_rate", low=50.0, high=120.0, delay_s=10.0),
        ],
        changed_by="doctor.koriyama",
        time=1_800_000_030.0,
    ),
    events.SourceChoice(code="spo2", device="oximeter-1"),
    events.Sources(primary={"spo2": "monitor-1"}, chosen_by=None),
    events.VideoState(mode="reduced", height=240, fps=10.0, estimate_bps=180_000, time=2.0),
    events.VideoState(mode="paused", time=3.0),
    events.VideoState(
        mode="full", height=720, fps=30.0, time=4.0, layer="720p", playout_delay_ms=200
    ),
    events.PlayoutDelayRequest(camera="room", max_ms=200, reason="loss"),
    events.PlayoutDelayRequest(max_ms=0, reason="clear"),
    events.WaveformHistoryRequest(channel=1, first=120_000, count=15_000),
    events.WaveformHistory(
        channel=1,
        first=120_000,
        samples=[0.25, None, -1.5, 0.0],
        rate=500.0,
        request_first=120_000,
        request_count=15_000,
    ),
    events.WaveformHistory(
        channel=2, first=9, samples=[], rate=125.0, request_first=0, request_count=10, done=True
    ),
    events.Cameras(
        cameras=[
            events.Camera(name="room", purpose="room", mid="0", width=1280, height=720),
            events.Camera(name="ultrasound", purpose="diagnostic", mid="1"),
        ]
    ),
    events.KeepFrameRequest(request="keep-1", camera="ultrasound", frame_id=4812),
    events.HoldFrameRequest(camera="ultrasound", frame_id=4812),
    events.FrameKept(
        request="keep-1",
        camera="ultrasound",
        outcome="kept",
        sop_instance_uid="2.25.123456789",
        deidentified=True,
        frame_id=4812,
        captured=1_800_000_040.0,
    ),
    events.FrameKept(
        request="keep-2",
        camera="ultrasound",
        outcome="refused",
        reason="no active consultation: start it, then keep the frame again",
    ),
    events.PacsFind(request="find-1", patient_id="KR-0042", study_date="20261201-"),
    events.PacsStudies(
        request="find-1",
        studies=[
            events.PacsStudy(
                study_instance_uid="1.2.392.200036.9116.2.6.1.48.1",
                patient_id="KR-0042",
                patient_name="Yamada^Taro=山田^太郎",
                study_date="20261201",
                description="CT chest",
                modalities=["CT"],
                instances=120,
            )
        ],
    ),
    events.PacsStudies(request="find-2", error="no PACS is configured at this site"),
    events.PacsPull(request="pull-1", study_instance_uid="1.2.392.200036.9116.2.6.1.48.1"),
    events.PacsPulled(
        request="pull-1",
        study_instance_uid="1.2.392.200036.9116.2.6.1.48.1",
        outcome="pulled",
        completed=120,
    ),
    events.LatencyReport(
        camera="room",
        video=events.LatencySummary(median_ms=18.5, p95_ms=24.0, max_ms=41.2, count=150),
        waveform=events.LatencySummary(median_ms=22.0, p95_ms=30.5, max_ms=38.0, count=600),
        jitter_buffer_ms=4.2,
        decode_ms=1.6,
    ),
    events.LatencyReport(),
]
