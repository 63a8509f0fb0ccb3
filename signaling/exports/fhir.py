"""The consultation's record as a FHIR Bundle (type ``collection``), built as plain JSON and
validated with ``fhir.resources`` (its R4B models: FHIR 4.3, the R4 family; Patient,
Observation, Device, AllergyIntolerance and Bundle are the same there as in 4.0.1).

- **Patient**: as the recipient may see them (:mod:`signaling.patient`): the pseudonym as
  an identifier of the requesting site, sex; the names (the patient's own script and
  romanised, each a ``HumanName`` with its ``text``) and the year of birth only when the
  view is identified. The age band travels as an Observation of age (LOINC 30525-0) with
  a range, so a de-identified bundle still says how old the patient is, roughly.
- **Observations** of vital signs, one per value: category ``vital-signs``, the code in
  MDC (``urn:iso:std:iso:11073:10101``) and LOINC, the value a UCUM ``Quantity``, the
  device a reference to a ``Device``; an invalid reading has a ``dataAbsentReason``; a
  value derived from a waveform by the gateway says so in ``method``; with a step over one
  second the value is the step's mean and ``effectivePeriod`` spans it.
- **Alarms** as Observations too: an alarm is something observed about the patient (or,
  technical, about a device) over a period, which is what an Observation with an
  ``effectivePeriod`` is, and what the HL7 Devices on FHIR (PoCD) guidance maps IEEE
  11073 alarms to. ``DetectedIssue`` is for problems found in a proposed or ongoing
  action (a drug interaction), and ``Flag`` for standing cautions shown about a patient
  (a fall risk): neither fits a monitor's alarm. Code: the condition in the pilot's own
  system; priority, kind and source as components; the acknowledgement as a note.
- **AllergyIntolerance** for each allergy the request named (clinical, always sent).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from signaling.api_models import AlarmOut, SeriesOut
from signaling.exports import ExportData

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
#: The pilot's own code systems (alarm conditions; the pseudonyms of each site).
ALARM_SYSTEM = "urn:telemed:alarm-condition"
ALARM_FACET_SYSTEM = "urn:telemed:alarm-facet"
_NAMESPACE = uuid.UUID("6f1c1f5e-6a44-4b8e-9d0e-7c1d2b3a4e5f")


def _instant(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _id(*parts: object) -> str:
    """A stable resource id (FHIR ids: letters, digits, ``-`` and ``.``, at most 64)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", text)[:64] or "x"


def _patient(data: ExportData) -> dict[str, Any] | None:
    view = data.patient
    if view is None:
        return None
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": _id(data.consultation_id, "patient"),
        "identifier": [
            {
                "use": "secondary",
                "system": f"urn:telemed:pseudonym:{_safe(data.requesting_site)}",
                "value": view.pseudonym,
            }
        ],
        "gender": str(view.sex),
    }
    if view.identified:
        names = []
        if view.name:
            names.append({"use": "official", "text": view.name})
        if view.name_romanised:
            names.append({"use": "usual", "text": view.name_romanised})
        if names:
            resource["name"] = names
        if view.birth_year is not None:
            resource["birthDate"] = f"{view.birth_year:04d}"
    return resource


def _ref(resource: dict[str, Any]) -> dict[str, str]:
    """A reference to a resource of the bundle, by its entry's ``fullUrl``."""
    return {"reference": f"urn:uuid:{_entry_uuid(resource)}"}


def _age(data: ExportData, subject: dict[str, str] | None) -> dict[str, Any] | None:
    view = data.patient
    if view is None or view.age_band is None:
        return None
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id(data.consultation_id, "age"),
        "status": "final",
        "code": {
            "coding": [{"system": LOINC_SYSTEM, "code": "30525-0", "display": "Age"}],
            "text": "age",
        },
    }
    if subject is not None:
        observation["subject"] = subject
    year = {"unit": "a", "system": UCUM_SYSTEM, "code": "a"}
    if view.identified and view.age is not None:
        observation["valueQuantity"] = {"value": view.age, **year}
    else:
        low, _, high = view.age_band.partition("-")
        band: dict[str, Any] = {"low": {"value": int(low.rstrip("+")), **year}}
        if high:
            band["high"] = {"value": int(high), **year}
        observation["valueRange"] = band
    return observation


def _devices(data: ExportData) -> dict[str, dict[str, Any]]:
    names = {s.device for s in data.series} | {a.device for a in data.alarms}
    return {
        name: {
            "resourceType": "Device",
            "id": _id(data.consultation_id, "device", name),
            "deviceName": [{"name": name, "type": "user-friendly-name"}],
        }
        for name in sorted(names)
    }


def _code(series: SeriesOut) -> dict[str, Any]:
    coding = []
    if series.mdc is not None:
        coding.append({"system": MDC_SYSTEM, "code": str(series.mdc)})
    if series.loinc:
        coding.append({"system": LOINC_SYSTEM, "code": series.loinc})
    return {"coding": coding, "text": series.code} if coding else {"text": series.code}


def _observations(
    data: ExportData, devices: dict[str, dict[str, Any]], subject: dict[str, str] | None
) -> list[dict[str, Any]]:
    out = []
    for series in data.series:
        code = _code(series)
        device = _ref(devices[series.device])
        for start, value in series.points:
            observation: dict[str, Any] = {
                "resourceType": "Observation",
                "id": _id(data.consultation_id, series.device, series.code, series.derived, start),
                "status": "final",
                "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "vital-signs"}]}],
                "code": code,
                "device": device,
            }
            if subject is not None:
                observation["subject"] = subject
            if data.step == 1:
                observation["effectiveDateTime"] = _instant(start)
            else:
                observation["effectivePeriod"] = {
                    "start": _instant(start),
                    "end": _instant(start + data.step),
                }
            if value is None:
                observation["dataAbsentReason"] = {
                    "coding": [{"system": ABSENT_SYSTEM, "code": "error"}],
                    "text": "the device had no valid value",
                }
            else:
                observation["valueQuantity"] = {
                    "value": round(value, 3),
                    "unit": series.unit,
                    "system": UCUM_SYSTEM,
                    "code": series.unit,
                }
            if series.derived:
                observation["method"] = {"text": "derived from the waveform by the gateway"}
            if data.step > 1:
                observation["note"] = [{"text": f"mean over {data.step} s"}]
            out.append(observation)
    return out


def _facet(name: str, value: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": ALARM_FACET_SYSTEM, "code": name}], "text": name},
        "valueString": value,
    }


def _alarm(
    data: ExportData,
    alarm: AlarmOut,
    devices: dict[str, dict[str, Any]],
    subject: dict[str, str] | None,
) -> dict[str, Any]:
    period: dict[str, str] = {"start": _instant(alarm.started)}
    if alarm.ended is not None:
        period["end"] = _instant(alarm.ended)
    components = [
        _facet("priority", alarm.priority),
        _facet("kind", alarm.kind),
        _facet("source", alarm.source),
        _facet("state", alarm.state),
    ]
    if alarm.value is not None:
        components.append(
            {
                "code": {"text": f"{alarm.code or 'value'} at the alarm"},
                "valueQuantity": {
                    "value": alarm.value,
                    "unit": alarm.unit,
                    "system": UCUM_SYSTEM,
                    "code": alarm.unit,
                }
                if alarm.unit
                else {"value": alarm.value},
            }
        )
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id(data.consultation_id, "alarm", alarm.id),
        "status": "final" if alarm.state == "ended" else "preliminary",
        "category": [{"coding": [{"system": ALARM_FACET_SYSTEM, "code": "alarm"}]}],
        "code": {
            "coding": [{"system": ALARM_SYSTEM, "code": alarm.condition}],
            "text": alarm.text or alarm.condition,
        },
        "effectivePeriod": period,
        "device": _ref(devices[alarm.device]),
        "component": components,
    }
    if alarm.limit is not None:
        observation["referenceRange"] = [{"text": f"limit {alarm.limit:g} {alarm.unit}".strip()}]
    if subject is not None:
        observation["subject"] = subject
    if alarm.acknowledged_by is not None and alarm.acknowledged_at is not None:
        observation["note"] = [
            {
                "authorString": alarm.acknowledged_by,
                "time": _instant(alarm.acknowledged_at),
                "text": "acknowledged",
            }
        ]
    return observation


def _allergies(data: ExportData, subject: dict[str, str] | None) -> list[dict[str, Any]]:
    view = data.patient
    if view is None or subject is None:
        return []
    return [
        {
            "resourceType": "AllergyIntolerance",
            "id": _id(data.consultation_id, "allergy", k),
            "code": {"text": allergy},
            "patient": subject,
        }
        for k, allergy in enumerate(view.allergies)
    ]


def bundle_json(data: ExportData) -> dict[str, Any]:
    """The Bundle as JSON, unchecked (:func:`build` validates it)."""
    patient = _patient(data)
    subject = _ref(patient) if patient is not None else None
    devices = _devices(data)
    resources: list[dict[str, Any]] = []
    if patient is not None:
        resources.append(patient)
    age = _age(data, subject)
    if age is not None:
        resources.append(age)
    resources += _allergies(data, subject)
    resources += devices.values()
    resources += _observations(data, devices, subject)
    resources += [_alarm(data, a, devices, subject) for a in data.alarms]
    return {
        "resourceType": "Bundle",
        "id": _id(data.consultation_id, "bundle", data.since, data.until, data.step),
        "type": "collection",
        "timestamp": _instant(data.created),
        "identifier": {"system": "urn:telemed:consultation", "value": data.consultation_id},
        "entry": [{"fullUrl": f"urn:uuid:{_entry_uuid(r)}", "resource": r} for r in resources],
    }


def _entry_uuid(resource: dict[str, Any]) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{resource['resourceType']}/{resource['id']}"))


def build(data: ExportData) -> str:
    """The Bundle's JSON text, validated against the FHIR models (raises pydantic's
    ``ValidationError`` when it is not a valid Bundle: a fault of ours). CPU-bound for a
    long consultation: call it in a worker thread."""
    return Bundle.model_validate(bundle_json(data)).model_dump_json(exclude_none=True)
