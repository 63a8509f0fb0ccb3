"""One example of every events-channel message, for the Python and the browser tests."""

from __future__ import annotations

from media.rtc import events

EXAMPLES: list[events.EventMessage] = [
    events.Hello(source="bed-1.wonju"),
    events.ChannelInfo(
        channel=131330,
        code="ecg_ii",
        refid="MDC_ECG_ELEC_POTL_II",
        unit="mV",
        sample_rate=500.0,
        device="monitor-1",
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
    events.Beats(channel=131330, times=[1_800_000_000.25, 1_800_000_001.05]),
    events.Quality(channel=150452, score=0.82, time=1_800_000_002.0),
    events.DeviceStatus(device="oximeter-1", state="probe_off", detail="", time=1.0),
    events.Ping(seq=7, at=1234.5),
    events.Ack(seq=7, at=1234.5),
]
