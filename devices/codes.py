"""The one table of vital-sign codes: IEEE 11073-10101 (MDC), LOINC and UCUM units.

Every codec names what it decodes by one of these entries; nothing else spells a code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VitalCode:
    """A measured quantity. ``aliases`` are other MDC codes that mean the same thing in
    real messages (both NIBP families occur)."""

    key: str
    refid: str
    mdc: int
    loinc: str | None
    ucum: str
    aliases: tuple[int, ...] = ()


HEART_RATE = VitalCode("heart_rate", "MDC_ECG_HEART_RATE", 147842, "8867-4", "/min")
SPO2 = VitalCode("spo2", "MDC_PULS_OXIM_SAT_O2", 150456, "59408-5", "%")
PULSE_RATE = VitalCode("pulse_rate", "MDC_PULS_OXIM_PULS_RATE", 149530, "8889-8", "/min")
NIBP_SYS = VitalCode("nibp_sys", "MDC_PRESS_CUFF_SYS", 150301, "8480-6", "mm[Hg]", (150021,))
NIBP_DIA = VitalCode("nibp_dia", "MDC_PRESS_CUFF_DIA", 150302, "8462-4", "mm[Hg]", (150022,))
NIBP_MEAN = VitalCode("nibp_mean", "MDC_PRESS_CUFF_MEAN", 150303, "8478-0", "mm[Hg]", (150023,))
RESP_RATE = VitalCode("resp_rate", "MDC_RESP_RATE", 151562, "9279-1", "/min")
TEMPERATURE = VitalCode("temperature", "MDC_TEMP", 150344, "8310-5", "Cel")
#: Relative perfusion (the oximeter's "PI"). No LOINC code is given for it here on purpose:
#: a wrong code is worse than none.
PERFUSION_INDEX = VitalCode("perfusion_index", "MDC_PULS_OXIM_PERF_REL", 150488, None, "%")
ECG_II = VitalCode("ecg_ii", "MDC_ECG_ELEC_POTL_II", 131330, None, "mV")
PLETH = VitalCode("pleth", "MDC_PULS_OXIM_PLETH", 150452, None, "{1}")

ALL_CODES: tuple[VitalCode, ...] = (
    HEART_RATE,
    SPO2,
    PULSE_RATE,
    NIBP_SYS,
    NIBP_DIA,
    NIBP_MEAN,
    RESP_RATE,
    TEMPERATURE,
    PERFUSION_INDEX,
    ECG_II,
    PLETH,
)

_BY_MDC = {mdc: c for c in ALL_CODES for mdc in (c.mdc, *c.aliases)}
_BY_REFID = {c.refid: c for c in ALL_CODES}


def by_mdc(code: int) -> VitalCode | None:
    """The entry for an MDC code (either NIBP family), or None when unknown."""
    return _BY_MDC.get(code)


def by_refid(refid: str) -> VitalCode | None:
    return _BY_REFID.get(refid)
