"""Device events as plain JSON-ready dicts and as readable one-line text."""

from __future__ import annotations

import math
from typing import Any

from devices.model import (
    DeviceAlarms,
    DeviceEvent,
    DeviceStatus,
    FrameError,
    Observation,
    Quality,
    WaveformChunk,
)


def _quality(q: Quality) -> list[str]:
    return [flag.name.lower() for flag in Quality if flag and flag in q and flag.name]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def to_dict(event: DeviceEvent) -> dict[str, Any]:
    """One event as a dict with MDC code, reference id, LOINC and UCUM unit where it has a
    code. Every number is finite or None (NaN samples, the gaps, become None), so the dict
    is valid JSON (``json.dumps(..., allow_nan=False)`` never fails on it)."""
    match event:
        case Observation():
            c = event.code
            return {
                "kind": "observation",
                "device": event.device_id,
                "code": c.key,
                "mdc": c.mdc,
                "refid": c.refid,
                "loinc": c.loinc,
                "unit": c.ucum,
                "value": _finite(event.value),
                "device_time": _finite(event.device_time),
                "receive_time": _finite(event.receive_time),
                "quality": _quality(event.quality),
            }
        case WaveformChunk():
            c = event.code
            return {
                "kind": "waveform",
                "device": event.device_id,
                "code": c.key,
                "mdc": c.mdc,
                "refid": c.refid,
                "unit": c.ucum,
                "sample_rate": _finite(event.sample_rate),
                "first_sample_time": _finite(event.first_sample_time),
                "receive_time": _finite(event.receive_time),
                "samples": [_finite(float(x)) for x in event.samples.tolist()],
            }
        case DeviceStatus():
            return {
                "kind": "status",
                "device": event.device_id,
                "state": str(event.state),
                "detail": event.detail,
                "receive_time": _finite(event.receive_time),
            }
        case FrameError():
            return {
                "kind": "frame_error",
                "device": event.device_id,
                "reason": event.reason,
                "detail": event.detail,
                "skipped": event.skipped,
                "receive_time": _finite(event.receive_time),
            }
        case DeviceAlarms():
            return {
                "kind": "alarms",
                "device": event.device_id,
                "alarms": [
                    {
                        "condition": a.condition,
                        "priority": str(a.priority),
                        "kind": str(a.kind),
                        "code": a.code.key if a.code else None,
                        "text": a.text,
                        "device_time": _finite(a.device_time),
                    }
                    for a in event.alarms
                ],
                "receive_time": _finite(event.receive_time),
            }


def to_text(event: DeviceEvent) -> str:
    match event:
        case Observation():
            value = "—" if event.value is None else f"{event.value:g}"
            flags = ",".join(_quality(event.quality))
            return (
                f"{event.code.refid:28} {event.code.mdc:>7} {value:>8} {event.code.ucum:7} {flags}"
            ).rstrip()
        case WaveformChunk():
            valid = event.samples[~event.gap_mask]
            span = f"{valid.min():g}..{valid.max():g}" if len(valid) else "—"
            gaps = int(event.gap_mask.sum())
            return (
                f"{event.code.refid:28} {event.code.mdc:>7} {len(event.samples):>4} samples"
                f" @ {event.sample_rate:g} Hz  range {span}" + (f"  gaps {gaps}" if gaps else "")
            )
        case DeviceStatus():
            return f"status {event.state}" + (f": {event.detail}" if event.detail else "")
        case FrameError():
            return f"frame error: {event.reason} ({event.skipped} bytes skipped) {event.detail}"
        case DeviceAlarms():
            listed = "; ".join(
                f"{a.priority} {a.kind} {a.condition}" + (f" ({a.text})" if a.text else "")
                for a in event.alarms
            )
            return f"alarms: {listed or 'none'}"
