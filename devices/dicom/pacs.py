"""Pulling a study from the site's PACS into the consultation: C-FIND (Study Root) to find
it, C-GET to retrieve it. Blocking (pynetdicom): run in a worker thread.

C-GET rather than C-MOVE: the instances come back on the association the gateway opened,
so the PACS needs no entry naming the gateway's address and port (a C-MOVE destination),
and a gateway behind NAT or on DHCP can still pull. Each retrieved instance goes through
the same door as a modality's C-STORE (:meth:`devices.dicom.scp.StorageScp.deliver`):
checked, then consent, de-identification and the spool; the status answered to the PACS
is the one a modality would get, and the PACS counts it in the C-GET's
completed/failed/warning sub-operations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from devices.dicom.contexts import CANNOT_UNDERSTAND, STORAGE_CLASSES, TRANSFER_SYNTAXES

log = logging.getLogger(__name__)

#: (Part-10 bytes, SOP class, SOP instance, source) -> (status, error comment).
Deliver = Callable[[bytes, str | None, str | None, str], tuple[int, str]]


class PacsError(Exception):
    """The PACS could not be reached, refused the association, or failed the request."""


@dataclass(frozen=True)
class PacsSettings:
    host: str
    port: int
    #: The PACS's AE title, and ours when calling it.
    called_ae: str
    calling_ae: str = "TELEMED"
    timeout_s: float = 30.0


@dataclass(frozen=True)
class StudyMatch:
    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    description: str
    modalities: tuple[str, ...]
    instances: int | None


@dataclass(frozen=True)
class Retrieved:
    """The PACS's count of the C-GET's sub-operations."""

    completed: int
    failed: int
    warning: int
    status: int


def _ae(pacs: PacsSettings) -> AE:
    ae = AE(ae_title=pacs.calling_ae)
    ae.acse_timeout = pacs.timeout_s
    ae.dimse_timeout = pacs.timeout_s
    ae.network_timeout = pacs.timeout_s
    return ae


def find_studies(
    pacs: PacsSettings,
    *,
    patient_id: str = "",
    accession_number: str = "",
    study_instance_uid: str = "",
    study_date: str = "",
) -> list[StudyMatch]:
    """The studies matching (empty: any). Raises PacsError."""
    ae = _ae(pacs)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_instance_uid
    query.PatientID = patient_id
    query.AccessionNumber = accession_number
    query.StudyDate = study_date
    query.PatientName = ""
    query.StudyDescription = ""
    query.ModalitiesInStudy = ""
    query.NumberOfStudyRelatedInstances = ""
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.called_ae)
    if not assoc.is_established:
        raise PacsError(f"the PACS {pacs.called_ae} at {pacs.host}:{pacs.port} refused us")
    matches: list[StudyMatch] = []
    try:
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            code = int(status.get("Status", 0xC000)) if status else None
            if code is None:
                raise PacsError("the PACS stopped answering the C-FIND")
            if code in (0xFF00, 0xFF01) and identifier is not None:
                matches.append(_match(identifier))
            elif code != 0x0000:
                raise PacsError(f"C-FIND failed: status 0x{code:04X}")
    finally:
        assoc.release()
    return matches


def _match(ds: Dataset) -> StudyMatch:
    modalities = ds.get("ModalitiesInStudy", "")
    count = ds.get("NumberOfStudyRelatedInstances", "")
    return StudyMatch(
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        study_date=str(ds.get("StudyDate", "")),
        description=str(ds.get("StudyDescription", "")),
        modalities=tuple(str(m) for m in modalities)
        if not isinstance(modalities, str)
        else tuple(m for m in modalities.split("\\") if m),
        instances=int(count) if str(count).strip().isdigit() else None,
    )


def get_study(pacs: PacsSettings, study_instance_uid: str, deliver: Deliver) -> Retrieved:
    """Retrieve one study with C-GET, each instance handed to ``deliver``. Raises PacsError."""
    if not study_instance_uid:
        raise ValueError("which study: a Study Instance UID is needed")
    ae = _ae(pacs)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles: list[Any] = []
    for sop_class in STORAGE_CLASSES:
        ae.add_requested_context(sop_class, list(TRANSFER_SYNTAXES))
        roles.append(build_role(sop_class, scp_role=True))
    source = f"PACS {pacs.called_ae}"

    def on_store(event: Any) -> Dataset:
        result = Dataset()
        try:
            part10 = event.encoded_dataset(include_meta=True)
            request = event.request
            status, comment = deliver(
                part10,
                str(request.AffectedSOPClassUID),
                str(request.AffectedSOPInstanceUID),
                source,
            )
        except Exception:  # the PACS is told; the retrieval goes on
            log.exception("an instance retrieved from %s could not be taken", source)
            status, comment = CANNOT_UNDERSTAND, "gateway error"
        result.Status = status
        if status != 0 and comment:
            result.ErrorComment = comment[:64]
        return result

    assoc = ae.associate(
        pacs.host,
        pacs.port,
        ae_title=pacs.called_ae,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    if not assoc.is_established:
        raise PacsError(f"the PACS {pacs.called_ae} at {pacs.host}:{pacs.port} refused us")
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_instance_uid
    last: Dataset | None = None
    try:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            if not status:
                raise PacsError("the PACS stopped answering the C-GET")
            last = status
    finally:
        assoc.release()
    assert last is not None
    return Retrieved(
        completed=int(last.get("NumberOfCompletedSuboperations", 0)),
        failed=int(last.get("NumberOfFailedSuboperations", 0)),
        warning=int(last.get("NumberOfWarningSuboperations", 0)),
        status=int(last.get("Status", 0xC000)),
    )
