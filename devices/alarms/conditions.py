"""The stable keys of alarm conditions. A key names *what* is wrong, never how a device words
it: the device's own words travel beside it (``DeviceAlarm.text``).

Limit alarms are ``<parameter>_low`` and ``<parameter>_high`` (``spo2_low``,
``heart_rate_high``), plus ``spo2_desat`` for the high-priority desaturation limit. Alarms a
device raises by itself use the same keys where they mean the same thing, and these others:
"""

from __future__ import annotations

from devices.codes import VitalCode

# Physiological, from a device's own analysis (the gateway computes none of these).
APNEA = "apnea"
ASYSTOLE = "asystole"
VFIB_VTACH = "vfib_vtach"
BRADY_EXTREME = "brady_extreme"
TACHY_EXTREME = "tachy_extreme"
ARRHYTHMIA = "arrhythmia"
SPO2_DESAT = "spo2_desat"
#: The oximeter's own "low SpO2" flag (a CMS50's), or a monitor's SpO2 low limit.
SPO2_LOW = "spo2_low"

# Technical.
PROBE_OFF = "probe_off"
SEARCHING = "searching"
LOW_PERFUSION = "low_perfusion"
LOW_SIGNAL = "low_signal"
LEADS_OFF = "leads_off"
SENSOR_FAULT = "sensor_fault"
#: The gateway lost the device (unplugged, silent, the link failed).
DISCONNECTED = "disconnected"
#: A condition known only by the device's words (``text``).
DEVICE = "device"


def low(code: VitalCode) -> str:
    """The condition of ``code`` below its low limit."""
    return f"{code.key}_low"


def high(code: VitalCode) -> str:
    """The condition of ``code`` above its high limit."""
    return f"{code.key}_high"
