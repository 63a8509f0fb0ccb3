"""QIDO-RS (PS3.18 10.6) over the consultation's index, without the I/O: the query's
parameters, matching, and the DICOM JSON of studies, series and instances.

Matching is on the index rows in memory (a consultation holds a few studies): single
values and lists of UIDs, ``*``/``?`` wildcards on text (case-insensitive, as
``fuzzymatching`` would), date ranges (``20260101-20261231``, either end open). A key the
index does not hold is refused (:class:`~signaling.errors.InvalidRequest`) rather than
silently ignored: a search that could not filter must not look like an answer.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from signaling.errors import InvalidRequest
from signaling.imaging.dicom import UTF8_CHARSET
from signaling.storage.models import ImagingInstanceRow

#: The most results one answer gives (``limit`` may ask for fewer).
MAX_RESULTS = 1000


class Level(enum.StrEnum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


# Matching keys: keyword, tag, the row's field, and how it matches.
_UID, _TEXT, _DATE, _CODE = "uid", "text", "date", "code"
_KEYS: dict[str, tuple[str, str, str]] = {
    "StudyInstanceUID": ("0020000D", "study_instance_uid", _UID),
    "SeriesInstanceUID": ("0020000E", "series_instance_uid", _UID),
    "SOPInstanceUID": ("00080018", "sop_instance_uid", _UID),
    "SOPClassUID": ("00080016", "sop_class_uid", _UID),
    "Modality": ("00080060", "modality", _CODE),
    "ModalitiesInStudy": ("00080061", "modality", _CODE),
    "PatientName": ("00100010", "patient_name", _TEXT),
    "PatientID": ("00100020", "patient_id", _TEXT),
    "StudyDate": ("00080020", "study_date", _DATE),
    "AccessionNumber": ("00080050", "accession_number", _TEXT),
    "StudyDescription": ("00081030", "study_description", _TEXT),
    "SeriesDescription": ("0008103E", "series_description", _TEXT),
}
_BY_TAG = {tag: keyword for keyword, (tag, _, _) in _KEYS.items()}
_CONTROL = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
_DATE_VALUE = re.compile(r"\d{8}")


@dataclass(frozen=True)
class Query:
    """What a search asks: each (row field, kind, value) must match."""

    filters: tuple[tuple[str, str, str], ...] = ()
    limit: int = MAX_RESULTS
    offset: int = 0
    #: The attributes asked for by ``includefield`` beyond the level's (all we have are sent).
    include: tuple[str, ...] = field(default=())


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    """Read a query string's pairs; raises :class:`InvalidRequest` naming the fault."""
    filters: list[tuple[str, str, str]] = []
    limit, offset = MAX_RESULTS, 0
    include: list[str] = []
    for name, value in params:
        if name in _CONTROL:
            if name == "limit":
                limit = _bounded_int(name, value, 1, MAX_RESULTS)
            elif name == "offset":
                offset = _bounded_int(name, value, 0, 10**9)
            elif name == "includefield":
                include += [v for v in value.split(",") if v]
            elif value not in ("true", "false"):
                raise InvalidRequest("fuzzymatching is true or false")
            continue
        keyword = _BY_TAG.get(name.upper(), name)
        if keyword not in _KEYS:
            raise InvalidRequest(f"cannot search on {name[:64]!r}")
        _, column, kind = _KEYS[keyword]
        if len(value) > 256:
            raise InvalidRequest(f"the value for {keyword} is too long")
        if kind == _DATE and not _valid_date_match(value):
            raise InvalidRequest(f"{keyword} is a date YYYYMMDD or a range of them")
        filters.append((column, kind, value))
    return Query(tuple(filters), limit, offset, tuple(include))


def _bounded_int(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or len(value) > 10 or not low <= int(value) <= high:
        raise InvalidRequest(f"{name} is a whole number from {low} to {high}")
    return int(value)


def _valid_date_match(value: str) -> bool:
    if _DATE_VALUE.fullmatch(value):
        return True
    low, sep, high = value.partition("-")
    return (
        bool(sep)
        and (low or high) != ""
        and all(v == "" or _DATE_VALUE.fullmatch(v) for v in (low, high))
    )


def _matches(row: ImagingInstanceRow, column: str, kind: str, value: str) -> bool:
    actual = str(getattr(row, column) or "")
    if value == "":
        return True  # universal matching: the attribute is returned, nothing filtered
    if kind == _UID:
        return actual in value.split(",") if "," in value else actual == value
    if kind == _CODE:
        return actual.upper() in {v.upper() for v in value.split(",")}
    if kind == _DATE:
        if "-" not in value:
            return actual == value
        low, _, high = value.partition("-")
        return bool(actual) and (not low or actual >= low) and (not high or actual <= high)
    # Text: wildcards, case-insensitive; a name matches any of its component groups.
    pattern = value.lower()
    candidates = [actual.lower(), *actual.lower().split("=")]
    if "*" in value or "?" in value:
        return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
    return pattern in candidates


def select(rows: Sequence[ImagingInstanceRow], query: Query) -> list[ImagingInstanceRow]:
    """The rows that match every filter."""
    return [r for r in rows if all(_matches(r, c, k, v) for c, k, v in query.filters)]


def _page(items: list[dict[str, Any]], query: Query) -> list[dict[str, Any]]:
    return items[query.offset : query.offset + query.limit]


# -- DICOM JSON ------------------------------------------------------------------------------


def _attr(vr: str, value: object) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}
    return {"vr": vr, "Value": [value]}


def person_name(value: str) -> dict[str, Any]:
    """A PN value in DICOM JSON: ``=`` separates its alphabetic, ideographic and phonetic
    groups."""
    if not value:
        return {"vr": "PN"}
    groups = value.split("=")[:3]
    names = {
        k: g for k, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False) if g
    }
    return {"vr": "PN", "Value": [names]}


def _study(first: ImagingInstanceRow, rows: list[ImagingInstanceRow], url: str) -> dict[str, Any]:
    modalities = sorted({r.modality for r in rows if r.modality})
    return {
        "00080005": _attr("CS", UTF8_CHARSET),
        "00080020": _attr("DA", first.study_date),
        "00080030": _attr("TM", first.study_time),
        "00080050": _attr("SH", first.accession_number),
        "00080061": {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
        "00081030": _attr("LO", first.study_description),
        "00081190": _attr("UR", url),
        "00100010": person_name(first.patient_name),
        "00100020": _attr("LO", first.patient_id),
        "0020000D": _attr("UI", first.study_instance_uid),
        "00201206": _attr("IS", len({r.series_instance_uid for r in rows})),
        "00201208": _attr("IS", len(rows)),
    }


def _series(first: ImagingInstanceRow, rows: list[ImagingInstanceRow], url: str) -> dict[str, Any]:
    return {
        "00080005": _attr("CS", UTF8_CHARSET),
        "00080060": _attr("CS", first.modality),
        "0008103E": _attr("LO", first.series_description),
        "00081190": _attr("UR", url),
        "0020000D": _attr("UI", first.study_instance_uid),
        "0020000E": _attr("UI", first.series_instance_uid),
        "00200011": _attr("IS", first.series_number),
        "00201209": _attr("IS", len(rows)),
    }


def _instance(row: ImagingInstanceRow, url: str) -> dict[str, Any]:
    return {
        "00080005": _attr("CS", UTF8_CHARSET),
        "00080016": _attr("UI", row.sop_class_uid),
        "00080018": _attr("UI", row.sop_instance_uid),
        "00080060": _attr("CS", row.modality),
        "00081190": _attr("UR", url),
        "0020000D": _attr("UI", row.study_instance_uid),
        "0020000E": _attr("UI", row.series_instance_uid),
        "00200013": _attr("IS", row.instance_number),
        "00280008": _attr("IS", row.frames),
        "00280010": _attr("US", row.rows),
        "00280011": _attr("US", row.columns),
    }


def search(
    rows: Sequence[ImagingInstanceRow],
    level: Level,
    query: Query,
    url_of: Callable[[ImagingInstanceRow, Level], str],
) -> list[dict[str, Any]]:
    """The answer to a search at ``level``: one DICOM JSON object per study, series or
    instance with a matching instance, in the order they were first stored. ``url_of``
    gives the RetrieveURL of a row's study, series or instance."""
    matched = select(rows, query)
    if level is Level.INSTANCE:
        return _page([_instance(r, url_of(r, level)) for r in matched], query)

    def key(row: ImagingInstanceRow) -> str:
        return row.study_instance_uid if level is Level.STUDY else row.series_instance_uid

    # A study's or series' counts are of all its instances, not only those matched.
    members: dict[str, list[ImagingInstanceRow]] = {}
    for row in rows:
        members.setdefault(key(row), []).append(row)
    firsts: dict[str, ImagingInstanceRow] = {}
    for row in matched:
        firsts.setdefault(key(row), row)
    describe = _study if level is Level.STUDY else _series
    out = [describe(first, members[k], url_of(first, level)) for k, first in firsts.items()]
    return _page(out, query)
