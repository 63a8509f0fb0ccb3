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
# Invasive pressures, capnography and cardiac output. MDC codes: IEEE 11073-10101 (SCADA
# partition 2, 2 << 16 | term code), as the Mindray BeneView HL7 interface tables and
# OpenICE's rosetta nomenclature list them (MDC_PRESS_BLD_ART 150032, _ART_ABP 150036,
# _ART_PULM 150044, _VEN_CENT 150084, MDC_PRESS_INTRA_CRAN 153608, each followed by its
# _SYS/_DIA/_MEAN at +1/+2/+3; MDC_CONC_AWAY_CO2_ET 151708, MDC_CO2_RESP_RATE 151594). The
# arterial families ART and ART_ABP both occur in real messages: either is accepted.
# MDC_OUTPUT_CARD 150276 is IntelliVue's NOM_OUTPUT_CARD (0x4B04) in the SCADA partition.
# LOINC codes: those of the German Medical Informatics Initiative's ICU module (its FHIR
# profiles pair them with these MDC codes): pulmonary artery 8440-0/8385-7/8414-5, central
# venous pressure 60985-9 and intracranial pressure 60956-0 (each a mean as monitors report
# them), cardiac output 8741-1; the arterial line: LOINC's "Invasive Systolic / Diastolic /
# Mean blood pressure" 76215-3/76213-8/76214-6. Each passes LOINC's mod-10 check digit
# (tests/devices/test_codes.py). None for EtCO2 and awRR: their LOINC terms (a partial
# pressure or a fraction) could not be settled here, and a wrong code is worse than none.
ABP_SYS = VitalCode("abp_sys", "MDC_PRESS_BLD_ART_ABP_SYS", 150037, "76215-3", "mm[Hg]", (150033,))
ABP_DIA = VitalCode("abp_dia", "MDC_PRESS_BLD_ART_ABP_DIA", 150038, "76213-8", "mm[Hg]", (150034,))
ABP_MEAN = VitalCode(
    "abp_mean", "MDC_PRESS_BLD_ART_ABP_MEAN", 150039, "76214-6", "mm[Hg]", (150035,)
)
PAP_SYS = VitalCode("pap_sys", "MDC_PRESS_BLD_ART_PULM_SYS", 150045, "8440-0", "mm[Hg]")
PAP_DIA = VitalCode("pap_dia", "MDC_PRESS_BLD_ART_PULM_DIA", 150046, "8385-7", "mm[Hg]")
PAP_MEAN = VitalCode("pap_mean", "MDC_PRESS_BLD_ART_PULM_MEAN", 150047, "8414-5", "mm[Hg]")
CVP_SYS = VitalCode("cvp_sys", "MDC_PRESS_BLD_VEN_CENT_SYS", 150085, None, "mm[Hg]")
CVP_DIA = VitalCode("cvp_dia", "MDC_PRESS_BLD_VEN_CENT_DIA", 150086, None, "mm[Hg]")
CVP_MEAN = VitalCode("cvp_mean", "MDC_PRESS_BLD_VEN_CENT_MEAN", 150087, "60985-9", "mm[Hg]")
ICP_SYS = VitalCode("icp_sys", "MDC_PRESS_INTRA_CRAN_SYS", 153609, None, "mm[Hg]")
ICP_DIA = VitalCode("icp_dia", "MDC_PRESS_INTRA_CRAN_DIA", 153610, None, "mm[Hg]")
ICP_MEAN = VitalCode("icp_mean", "MDC_PRESS_INTRA_CRAN_MEAN", 153611, "60956-0", "mm[Hg]")
ETCO2 = VitalCode("etco2", "MDC_CONC_AWAY_CO2_ET", 151708, None, "mm[Hg]")
AWAY_RESP_RATE = VitalCode("awrr", "MDC_CO2_RESP_RATE", 151594, None, "/min")
CARDIAC_OUTPUT = VitalCode("cardiac_output", "MDC_OUTPUT_CARD", 150276, "8741-1", "L/min")
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
    ABP_SYS,
    ABP_DIA,
    ABP_MEAN,
    PAP_SYS,
    PAP_DIA,
    PAP_MEAN,
    CVP_SYS,
    CVP_DIA,
    CVP_MEAN,
    ICP_SYS,
    ICP_DIA,
    ICP_MEAN,
    ETCO2,
    AWAY_RESP_RATE,
    CARDIAC_OUTPUT,
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
