"""How a simulated patient monitor is set up to report (issue 11): blood pressures in
mm[Hg] or kPa, temperature in Cel or [degF], and whether it measures invasive pressures
(an arterial line, a pulmonary artery catheter, a central venous line).

Monitors sold in Europe are often set to kPa, in the United States to degrees Fahrenheit;
an ICU monitor with lines in carries invasive pressures. A host that relabels instead of
converting shows 16 "mmHg" for 120 mmHg; these settings let the simulators (IntelliVue,
HL7) send what such a monitor sends, so that the tests can see the host convert it.

``MonitorSetup.parse("kpa,degf,invasive")`` reads the command line's form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from devices.simulation.patient import Patient

#: mm[Hg] in one kPa (UCUM's mm[Hg]: 133.322387415 Pa).
MMHG_PER_KPA = 1000 / 133.322387415

#: Invasive pressures a simulated patient with lines in has: (key, usual mm[Hg]). A
#: scenario may hold any of them elsewhere (``Patient.held``).
INVASIVE_USUAL: tuple[tuple[str, float], ...] = (
    ("abp_sys", 121),
    ("abp_dia", 79),
    ("abp_mean", 93),
    ("pap_sys", 24),
    ("pap_dia", 10),
    ("pap_mean", 15),
    ("cvp_mean", 8),
)

PressureUnit = Literal["mm[Hg]", "kPa"]
TemperatureUnit = Literal["Cel", "[degF]"]


@dataclass(frozen=True)
class MonitorSetup:
    """The monitor's unit settings and its invasive lines. The defaults are the usual
    setup of this project's simulators (mm[Hg], Cel, no lines)."""

    pressure_unit: PressureUnit = "mm[Hg]"
    temperature_unit: TemperatureUnit = "Cel"
    invasive: bool = False

    @classmethod
    def parse(cls, text: str) -> MonitorSetup:
        """Comma-separated words: ``kpa`` (pressures in kPa), ``degf`` (temperature in
        degrees Fahrenheit), ``invasive`` (ABP, PAP and CVP measured); empty for the
        defaults. Raises ValueError naming an unknown word."""
        words = {w.strip().lower() for w in text.split(",") if w.strip()}
        unknown = words - {"kpa", "degf", "invasive"}
        if unknown:
            raise ValueError(
                f"unknown monitor setting(s) {', '.join(sorted(unknown))} "
                "(known: kpa, degf, invasive)"
            )
        return cls(
            "kPa" if "kpa" in words else "mm[Hg]",
            "[degF]" if "degf" in words else "Cel",
            "invasive" in words,
        )

    def pressure(self, mmhg: float | None) -> float | None:
        """A pressure measured as ``mmhg`` mm[Hg], in this monitor's pressure unit."""
        if mmhg is None or self.pressure_unit == "mm[Hg]":
            return mmhg
        return mmhg / MMHG_PER_KPA

    def temperature(self, celsius: float | None) -> float | None:
        """A temperature measured as ``celsius`` Cel, in this monitor's temperature unit."""
        if celsius is None or self.temperature_unit == "Cel":
            return celsius
        return celsius * 9 / 5 + 32

    def invasive_pressures(self, patient: Patient) -> list[tuple[str, float]]:
        """The invasive pressures measured now, (key, mm[Hg]); none without lines."""
        if not self.invasive:
            return []
        return [(key, patient.held(key, usual)) for key, usual in INVASIVE_USUAL]
