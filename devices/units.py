"""The one conversion table: each protocol's unit, in UCUM, to the canonical unit of the
parameter (``VitalCode.ucum``).

A value is converted, never relabelled: 16 kPa is 120 mm[Hg], 98.6 [degF] is 37 Cel. A unit
this table does not know, or one that does not measure the parameter's quantity (a pressure
sent in Cel), gives no value and the :attr:`~devices.model.Quality.UNIT_UNKNOWN` flag.

Where the units come from:

- IntelliVue: the 16-bit unit code of a NuObsValue, the IEEE 11073-10101 dimension
  (MDC_PART_DIM) term code (MDC_DIM_MMHG 3872, MDC_DIM_KILO_PASCAL 3843, MDC_DIM_DEGC 6048,
  MDC_DIM_FAHR 4416, ...: the Data Export Interface Programming Guide's NOM_DIM_* list);
- HL7 OBX-6: ``identifier^text^system``: a UCUM code (``kPa^kPa^UCUM``), an MDC dimension
  code (``266016^MDC_DIM_MMHG^MDC``: the dimension partition 4 << 16 | term code) or its
  reference id, and the common non-UCUM spellings gateways send (``mmHg``, ``degF``, ``bpm``);
- Datex S/5: fixed units per field, stated in the codec (already canonical).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.codes import VitalCode


@dataclass(frozen=True, slots=True)
class _Scale:
    """``canonical = value * factor + offset``."""

    canonical: str
    factor: float
    offset: float = 0.0


#: UCUM unit -> (canonical unit, factor, offset). Canonical units map to themselves.
_TO_CANONICAL: dict[str, _Scale] = {
    "mm[Hg]": _Scale("mm[Hg]", 1.0),
    # 1 kPa = 1000 / 133.322387415 mm[Hg] (UCUM's definition of mm[Hg]).
    "kPa": _Scale("mm[Hg]", 1000 / 133.322387415),
    # 1 cm[H2O] = 98.0665 Pa.
    "cm[H2O]": _Scale("mm[Hg]", 98.0665 / 133.322387415),
    "Cel": _Scale("Cel", 1.0),
    "[degF]": _Scale("Cel", 5 / 9, -32 * 5 / 9),
    "K": _Scale("Cel", 1.0, -273.15),
    "%": _Scale("%", 1.0),
    "/min": _Scale("/min", 1.0),
    "{beats}/min": _Scale("/min", 1.0),
    "{breaths}/min": _Scale("/min", 1.0),
    "/s": _Scale("/min", 60.0),
    "L/min": _Scale("L/min", 1.0),
    "mL/min": _Scale("L/min", 0.001),
    "mV": _Scale("mV", 1.0),
    "uV": _Scale("mV", 0.001),
    "{1}": _Scale("{1}", 1.0),
    "1": _Scale("{1}", 1.0),
}

#: IEEE 11073-10101 dimension term codes (MDC_PART_DIM) -> UCUM.
MDC_DIMENSIONS: dict[int, str] = {
    512: "{1}",  # MDC_DIM_DIMLESS
    544: "%",  # MDC_DIM_PERCENT
    2720: "/min",  # MDC_DIM_BEAT_PER_MIN
    2784: "/min",  # MDC_DIM_RESP_PER_MIN
    3072: "L/min",  # MDC_DIM_X_L_PER_MIN
    3090: "mL/min",  # MDC_DIM_MILLI_L_PER_MIN
    3843: "kPa",  # MDC_DIM_KILO_PASCAL
    3872: "mm[Hg]",  # MDC_DIM_MMHG
    3904: "cm[H2O]",  # MDC_DIM_CM_H2O
    4274: "mV",  # MDC_DIM_MILLI_VOLT
    4275: "uV",  # MDC_DIM_MICRO_VOLT
    4384: "K",  # MDC_DIM_KELVIN
    4416: "[degF]",  # MDC_DIM_FAHR
    6048: "Cel",  # MDC_DIM_DEGC
}
_DIM_PARTITION = 4

MDC_DIMENSION_REFIDS: dict[str, str] = {
    "MDC_DIM_DIMLESS": "{1}",
    "MDC_DIM_PERCENT": "%",
    "MDC_DIM_BEAT_PER_MIN": "/min",
    "MDC_DIM_RESP_PER_MIN": "/min",
    "MDC_DIM_X_L_PER_MIN": "L/min",
    "MDC_DIM_L_PER_MIN": "L/min",
    "MDC_DIM_MILLI_L_PER_MIN": "mL/min",
    "MDC_DIM_KILO_PASCAL": "kPa",
    "MDC_DIM_MMHG": "mm[Hg]",
    "MDC_DIM_CM_H2O": "cm[H2O]",
    "MDC_DIM_MILLI_VOLT": "mV",
    "MDC_DIM_MICRO_VOLT": "uV",
    "MDC_DIM_KELVIN": "K",
    "MDC_DIM_FAHR": "[degF]",
    "MDC_DIM_DEGC": "Cel",
}

#: Spellings gateways send that are not UCUM, and UCUM's own case variants.
_ALIASES: dict[str, str] = {
    "mmhg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "kpa": "kPa",
    "cmh2o": "cm[H2O]",
    "cm[h2o]": "cm[H2O]",
    "cel": "Cel",
    "degc": "Cel",
    "°c": "Cel",
    "c": "Cel",
    "[degf]": "[degF]",
    "degf": "[degF]",
    "°f": "[degF]",
    "f": "[degF]",
    "bpm": "/min",
    "rpm": "/min",
    "brpm": "/min",
    "/min": "/min",
    "1/min": "/min",
    "{beats}/min": "/min",
    "{beat}/min": "/min",
    "{breaths}/min": "/min",
    "{breath}/min": "/min",
    "/s": "/s",
    "%": "%",
    "l/min": "L/min",
    "ml/min": "mL/min",
    "mv": "mV",
    "uv": "uV",
    "µv": "uV",
    "{1}": "{1}",
    "1": "{1}",
}


def ucum_of_intellivue(unit_code: int) -> str | None:
    """The UCUM unit of an IntelliVue unit code, or None when unknown."""
    return MDC_DIMENSIONS.get(unit_code)


def ucum_of_hl7(field: str) -> str | None:
    """The UCUM unit an OBX-6 (``identifier^text^system``) names, or None when unknown.
    An empty OBX-6 names no unit: "" (the parameter's own, see :func:`to_canonical`)."""
    parts = [p.strip() for p in field.split("^")]
    if not any(parts):
        return ""
    ident = parts[0]
    text = parts[1] if len(parts) > 1 else ""
    for candidate in (ident, text):
        if candidate in _TO_CANONICAL:
            return candidate
        if candidate.upper() in MDC_DIMENSION_REFIDS:
            return MDC_DIMENSION_REFIDS[candidate.upper()]
        if candidate.isdigit():
            number = int(candidate)
            if number >> 16 == _DIM_PARTITION:
                number &= 0xFFFF
            if number in MDC_DIMENSIONS:
                return MDC_DIMENSIONS[number]
        if candidate.lower() in _ALIASES:
            return _ALIASES[candidate.lower()]
    return None


def to_canonical(code: VitalCode, unit: str | None, value: float) -> float | None:
    """``value`` in ``unit`` (UCUM) converted to ``code``'s canonical unit; None when the
    unit is unknown (None) or does not measure that quantity. An empty unit ("" : none
    stated) is taken as the canonical one: gateways leave OBX-6 empty for the standard unit
    of a parameter, and a unit stated is always checked."""
    if unit == "":
        return value
    if unit is None:
        return None
    scale = _TO_CANONICAL.get(unit)
    if scale is None or scale.canonical != code.ucum:
        return None
    if scale.factor == 1.0 and scale.offset == 0.0:
        return value
    # Rounded to what a monitor shows (two decimals): 98.6 [degF] is 37 Cel, not
    # 36.99999999999999.
    return round(value * scale.factor + scale.offset, 2)
