"""De-identification at the bedside, before an instance crosses the border: DICOM PS3.15
Annex E, Basic Application Level Confidentiality Profile. Pure: bytes in, bytes out.

Which library, and why. Three maintained pydicom-based libraries were compared:

- ``dicom-anonymizer`` (Kitware, BSD): carries Table E.1-1 itself, generated from the
  standard's part15 per edition (2023, 2024b, 2026c here), as the profile's action codes
  (D, Z, X, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*) on a pydicom dataset; each action is a
  replaceable function per tag; needs only pydicom. Chosen: it *is* the profile's table,
  kept current with the standard, and its rules can be overridden tag by tag, which is how
  the UIDs are remapped per consultation here.
- ``dicognito``: replaces identities with plausible fake values and shifts dates,
  consistently per seed. Useful for realistic test data, but that is not the Basic
  Profile's actions (dates and names are to be emptied or dummied, not faked) and it does
  not hold the table's full attribute list.
- ``deid`` (pydicom organisation): a recipe language (REPLACE/BLANK/REMOVE/JITTER) with a
  "best effort" default recipe of its own, plus pixel-region filters; the profile's table
  would have to be written into a recipe and kept current by us; pulls in matplotlib.

What is done to each instance (:func:`deidentify`):

- every attribute of Table E.1-1 (PS3.15-2026c) gets its action, through dicom-anonymizer;
- UIDs (action U, and the UIDs inside X/Z/U* sequences) are remapped, never emptied, to
  ``2.25.<128 bits of HMAC-SHA256(key, uid)>``: with one key per consultation, the same
  input UID gives the same output UID for every instance of the consultation (studies and
  series stay together, references keep pointing at their targets), and a different one in
  another consultation; the mapping is not reversible without the key;
- private attributes, overlays (every 60xx group), curves (every 50xx group) and icon
  images (0088,0200, at any depth) are removed;
- the file's preamble (128 bytes the writer may fill, e.g. a TIFF header) is zeroed;
- Patient Identity Removed (0012,0062) = YES, De-identification Method (0012,0063) and its
  code sequence (0012,0064: DCM 113100, the Basic Profile) are set; the file meta's Media
  Storage SOP Instance UID follows the new SOP Instance UID.

Pixel data is left as it is (the Clean Pixel Data option is not applied): an instance that
says its pixels carry burned-in text (Burned In Annotation (0028,0301) = YES) is refused
unless the patient consented (:func:`prepare`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from devices.dicom.check import Refused
from devices.dicom.contexts import CANNOT_UNDERSTAND, NOT_AUTHORISED

#: The edition of PS3.15 whose Table E.1-1 is applied.
TABLE_EDITION = "dicomfields_2026c"
METHOD = "PS3.15 E.1-1 Basic Profile (2026c, dicom-anonymizer)"

_TABLE = dicom_anonymization_database_selector(TABLE_EDITION)
#: Attributes whose UIDs are remapped: U, and the UIDs an X/Z/U* sequence holds.
_UID_TAGS: frozenset[int] = frozenset(int(Tag(t)) for t in _TABLE["U_TAGS"] if len(t) == 2)
_UID_SEQUENCES: frozenset[int] = frozenset(
    int(Tag(t)) for t in _TABLE["X_Z_U_STAR_TAGS"] if len(t) == 2
)
_ICON_IMAGE = 0x00880200
#: Refusal comment (a DIMSE Error Comment is 64 characters at most); the log says more.
BURNED_IN_COMMENT = "Burned-in annotation: needs the patient's imaging consent"
BURNED_IN_REASON = (
    "Burned In Annotation (0028,0301) is YES: the pixels may show who the patient is, "
    "which de-identification cannot remove; not sent across the border unless the "
    "consultation records the patient's imaging consent"
)


def consultation_key(secret: bytes, consultation_id: str) -> bytes:
    """The UID-remapping key of one consultation, from the gateway's secret."""
    return hmac.new(secret, b"uid-key:" + consultation_id.encode(), hashlib.sha256).digest()


def remap_uid(key: bytes, uid: str) -> str:
    """``uid``'s replacement under ``key``: a ``2.25`` UID (PS3.5 B.2) of 128 bits."""
    digest = hmac.new(key, uid.strip().encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


@dataclass(frozen=True)
class Prepared:
    """What goes to the server: the Part-10 file, and whether it was de-identified."""

    part10: bytes
    deidentified: bool


def prepare(part10: bytes, *, consent: bool, key: bytes) -> Prepared | Refused:
    """The bytes to forward for one checked instance: as received when the consultation
    records the patient's imaging consent, de-identified otherwise; an instance with
    burned-in annotation is refused without consent. Never raises."""
    if consent:
        return Prepared(part10, deidentified=False)
    try:
        ds = dcmread(BytesIO(part10))
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            return Refused(NOT_AUTHORISED, BURNED_IN_REASON, BURNED_IN_COMMENT)
        return Prepared(_deidentify(ds, key), deidentified=True)
    except Exception as exc:  # checked input should not fail here; if it does, refuse it
        return Refused(CANNOT_UNDERSTAND, f"cannot de-identify: {type(exc).__name__}: {exc}")


def deidentify(part10: bytes, key: bytes) -> bytes:
    """``part10`` de-identified (see the module's docstring); raises what pydicom raises on
    a file it cannot read."""
    return _deidentify(dcmread(BytesIO(part10)), key)


def _deidentify(ds: Dataset, key: bytes) -> bytes:
    remap = _UidRemapper(key)
    rules: dict[tuple[int, ...], Callable[[Dataset, Any], None]] = {}
    for tag in _TABLE["U_TAGS"]:
        if len(tag) == 2:
            rules[tag] = remap.element
    for tag in _TABLE["X_Z_U_STAR_TAGS"]:
        if len(tag) == 2:
            rules[tag] = remap.sequence
    anonymize_dataset(
        ds, extra_anonymization_rules=rules, delete_private_tags=True, base_rules_gen=_table
    )
    _strip(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    # The 128-byte preamble is the writer's own (a TIFF header, say) and can carry anything.
    ds.preamble = bytes(128)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _table() -> dict[tuple[int, ...], Any]:
    """Table E.1-1's actions, less its repeating-group rows (curves 50xx, overlay data and
    comments 60xx): :func:`_strip` removes those whole groups, and the library would walk
    the whole data set once per row to find them (most of its time on a CT slice)."""
    actions: dict[tuple[int, ...], Any] = initialize_actions(TABLE_EDITION)
    return {tag: action for tag, action in actions.items() if len(tag) == 2}


def _strip(ds: Dataset) -> None:
    """Remove overlays (60xx), curves (50xx) and icon images at every depth, and private
    attributes inside sequences (the library removes the top level's)."""
    ds.remove_private_tags()
    doomed = [
        e.tag for e in ds if (e.tag.group & 0xFF00) in (0x6000, 0x5000) or e.tag == _ICON_IMAGE
    ]
    for tag in doomed:
        del ds[tag]
    for element in ds:
        if element.VR == "SQ" and element.value is not None:
            for item in element.value:
                _strip(item)


class _UidRemapper:
    """dicom-anonymizer actions (``action(dataset, tag)``) that remap UIDs under one key."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _map(self, value: Any) -> Any:
        if isinstance(value, str | bytes) and str(value).strip():
            return remap_uid(self.key, str(value))
        return value

    def element(self, dataset: Dataset, tag: tuple[int, int] | BaseTag) -> None:
        """U: replace the UID (each value of a multi-valued one)."""
        element = dataset.get(Tag(tag))
        if element is None or element.VR != "UI" or element.value is None:
            return
        if isinstance(element.value, list | tuple) or element.VM > 1:
            element.value = [self._map(v) for v in element.value]
        else:
            element.value = self._map(element.value)

    def sequence(self, dataset: Dataset, tag: tuple[int, int] | BaseTag) -> None:
        """X/Z/U*: keep the sequence and remap the instance UIDs it holds, at any depth."""
        element = dataset.get(Tag(tag))
        if element is None:
            return
        if element.VR != "SQ":
            self.element(dataset, tag)
            return
        for item in element.value or []:
            self._walk(item)

    def _walk(self, item: Dataset) -> None:
        for element in list(item):
            if element.VR == "SQ":
                for nested in element.value or []:
                    self._walk(nested)
            elif int(element.tag) in _UID_TAGS or int(element.tag) in _UID_SEQUENCES:
                self.element(item, element.tag)
