"""Who a consultation is about, and what of it each recipient may see.

The requesting site (the patient's) names the patient when it asks for a consultation
(:class:`~signaling.api_models.PatientIn`). What leaves that site follows the cross-border
rule (Korea PIPA Art. 28-8, Japan APPI Art. 28): without the patient's recorded consent,
data crosses de-identified. Here that means:

- **always sent** (to everyone who may see the consultation): the pseudonym (an id that only
  the requesting site can map back to a person), a ten-year age band, sex, and the clinical
  data: the reason for the consultation and the allergies. These are what a consulting
  doctor needs; none of them names a person (sex and an age band are the aggregates the
  HIPAA safe harbour and DICOM PS3.15's Basic Profile keep).
- **identifying** (:data:`~signaling.schema.IDENTIFYING_FIELDS`): the name in the patient's
  own script and romanised, the exact year of birth and age, ward and bed (a location that,
  with a date, picks out one person). These reach the requesting site's own principals
  always, and anyone else only when ``consent_cross_border`` is set.

Free text (reason, allergies) is clinical by contract: the requesting clinician must not
write a name in it, as on any de-identified referral form.

Every view of a consultation (HTTP routes, the ``consultation`` push, summaries, exports)
is built by :func:`view_for`, so the rule lives in this one place.
"""

from __future__ import annotations

import json
from datetime import datetime

from signaling.auth import Principal
from signaling.schema import PatientView, Sex
from signaling.storage.models import ConsultationRow, PatientRow


def may_identify(principal: Principal, row: ConsultationRow) -> bool:
    """Whether ``principal`` may see who the patient is: their own site's, or consented."""
    return principal.site == row.requesting_site or row.consent_cross_border


def age_of(patient: PatientRow, at: datetime) -> int | None:
    """The age in years at ``at``: as given, or from the year of birth (to within a year:
    no birthday is kept)."""
    if patient.age is not None:
        return patient.age
    if patient.birth_year is not None:
        return max(0, at.year - patient.birth_year)
    return None


def age_band(age: int | None) -> str | None:
    """``60-69`` for 60 to 69; ``90+`` from 90 on (few enough to identify otherwise)."""
    if age is None:
        return None
    if age >= 90:
        return "90+"
    low = age - age % 10
    return f"{low}-{low + 9}"


def allergies_of(patient: PatientRow) -> list[str]:
    loaded = json.loads(patient.allergies or "[]")
    return [str(a) for a in loaded] if isinstance(loaded, list) else []


def view_for(principal: Principal, row: ConsultationRow) -> PatientView | None:
    """The consultation's patient as ``principal`` may see them; None when none was named."""
    patient = row.patient
    if patient is None:
        return None
    age = age_of(patient, row.created_at)
    identified = may_identify(principal, row)
    common = {
        "pseudonym": patient.pseudonym,
        "age_band": age_band(age),
        "sex": Sex(patient.sex),
        "reason": patient.reason,
        "allergies": allergies_of(patient),
        "identified": identified,
    }
    if not identified:
        return PatientView.model_validate(common)
    return PatientView.model_validate(
        {
            **common,
            "name": patient.name,
            "name_romanised": patient.name_romanised,
            "birth_year": patient.birth_year,
            "age": age,
            "ward": patient.ward,
            "bed": patient.bed,
        }
    )
