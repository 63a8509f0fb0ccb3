"""The consultation's numerics and alarms in the standards other systems read: HL7 v2
ORU^R01 as IHE PCD-01 (:mod:`signaling.exports.hl7`) and a FHIR R4 Bundle
(:mod:`signaling.exports.fhir`).

Both are built, without I/O, from one :class:`ExportData` that
:func:`signaling.exports.gather` reads from the database for one recipient: the patient
in it is the :class:`~signaling.schema.PatientView` that recipient may see, so the
cross-border rule of :mod:`signaling.patient` holds in the exports as everywhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from signaling.api_models import AlarmOut, SeriesOut
from signaling.auth import Principal
from signaling.patient import view_for
from signaling.schema import PatientView
from signaling.storage import vitals
from signaling.storage.database import Database
from signaling.storage.models import ConsultationRow

#: The most values one export may hold (series x steps): past it, ask for a longer step.
MAX_EXPORT_VALUES = 200_000


@dataclass(frozen=True)
class ExportData:
    """What an export holds: the consultation, its patient as the recipient may see them
    (None: none named), every series over ``[since, until)`` at ``step`` seconds (a mean
    per step when ``step`` > 1), and the alarms overlapping that window."""

    consultation_id: str
    requesting_site: str
    consulting_site: str
    patient: PatientView | None
    since: int
    until: int
    step: int
    series: list[SeriesOut]
    alarms: list[AlarmOut]
    #: When the export was made (s since the epoch).
    created: float


class ExportTooLarge(ValueError):
    """The window at this step holds more than :data:`MAX_EXPORT_VALUES` values."""


async def gather(
    db: Database,
    principal: Principal,
    row: ConsultationRow,
    *,
    now: float,
    step: int = 1,
    since: float | None = None,
    until: float | None = None,
) -> ExportData:
    """Read what the export of ``row`` holds for ``principal``. The window defaults to
    the consultation's, from its acceptance (or creation) to its end (or ``now``).

    Raises :class:`ExportTooLarge`."""
    start = since if since is not None else (row.accepted_at or row.created_at).timestamp()
    end = until if until is not None else (row.ended_at.timestamp() if row.ended_at else now)
    first, last = math.floor(start), max(math.floor(start) + 1, math.ceil(end))
    found = await vitals.series(db, row.id)
    if len(found) * (last - first) / step > MAX_EXPORT_VALUES:
        raise ExportTooLarge(
            f"{len(found)} series over {last - first} s at {step} s a value is more than "
            f"{MAX_EXPORT_VALUES} values: export a shorter window or a longer step"
        )
    series = await vitals.trends(db, row.id, None, first, last, step)
    # The null points that mark gaps in a trend are no measurement: an export lists what
    # was measured, the invalid readings (null values) included.
    measured = await vitals.measured_seconds(db, row.id, first, last, step)
    for s in series:
        keep = measured.get((s.device, s.code, s.derived), set())
        s.points = [p for p in s.points if p[0] in keep]
    alarms = await vitals.alarms(db, row.id, first, last)
    return ExportData(
        consultation_id=row.id,
        requesting_site=row.requesting_site,
        consulting_site=row.consulting_site,
        patient=view_for(principal, row),
        since=first,
        until=last,
        step=step,
        series=series,
        alarms=alarms,
        created=now,
    )
