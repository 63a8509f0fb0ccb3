"""The site's PACS from the room: a clinician's ``pacs-find`` is answered with the studies the
PACS matches (C-FIND), a ``pacs-pull`` retrieves one into the consultation (C-GET, through
:meth:`telemed.gateway.imaging.GatewayImaging.pull_study`: the path a modality's instance
takes). Answers go to the asking connection only.

Who may: clinicians (doctors, technicians) of the gateway's own site, which is the site whose
PACS it is. A search's answer names patients and must not cross the border; a pull's
instances do cross it, but de-identified unless the patient consented, as every instance
the bedside sends. Anyone else is answered with the reason and logged. When the gateway does
not know its own site yet (not logged in) nobody may: the safe side.

A browser must not be able to keep the bedside or the PACS busy: each clinician (by identity,
across reconnections) has a token bucket of requests, at most :data:`QUEUE_SIZE` wait in
all, and one is answered at a time. The C-FIND and C-GET are blocking pynetdicom calls: they
run in a worker thread, bounded by the PACS's own timeout (``PacsSettings.timeout_s``, on
every association and DIMSE wait), so a PACS that does not answer ends in an ``error`` or
``failed`` answer with the reason, never in a hang. Each pull is logged at warning level
(who, which study, the outcome): the bedside's record of what it took from its PACS.

:meth:`PacsRoom.run` owns the answering; its owner cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Literal

from devices.dicom.pacs import PacsError, PacsSettings, StudyMatch, find_studies
from media.rtc.events import (
    MAX_EVENT_BYTES,
    MAX_PACS_STUDIES,
    PacsFind,
    PacsPull,
    PacsPulled,
    PacsStudies,
    PacsStudy,
    encode_event,
)
from media.rtc.peer import MediaPeer
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.ratelimit import TokenBuckets
from signaling.schema import Peer, PrincipalKind, Role
from telemed.gateway.imaging import GatewayImaging, NoConsultation
from telemed.gateway.peers import identity

log = logging.getLogger(__name__)

#: Requests waiting to be answered, for all clinicians together.
QUEUE_SIZE = 8
#: A clinician may ask this many at once ...
BURST = 4
#: ... and then one every 1 / this many seconds.
REQUESTS_PER_S = 0.2
#: The roles that may search and pull (of the gateway's own site).
CLINICIANS = frozenset({Role.DOCTOR, Role.TECHNICIAN})
#: A failure after this share of the PACS timeout is told as the PACS not answering.
SILENT_FRACTION = 0.9

NO_PACS = "no PACS is configured at this site"
OTHER_SITE = "only clinicians of the bedside's site may search its PACS"
OTHER_SITE_PULL = "only clinicians of the bedside's site may pull from its PACS"
NOT_CLINICIAN = "only doctors and technicians may use the PACS"
TOO_OFTEN = "asked too often: wait a few seconds and try again"
BUSY = "the bedside is busy with other PACS requests: try again shortly"

_DATE = re.compile(r"^\d{8}$")
#: Accession Number is a DICOM SH: 16 characters at most (Patient ID, an LO, takes the
#: contract's 64).
ACCESSION_MAX = 16
BAD_ACCESSION = f"accession number: at most {ACCESSION_MAX} characters"
#: The query goes in DICOM's default repertoire (no Specific Character Set: not every PACS
#: honours one in a query); identifiers are ASCII in practice.
NOT_ASCII = "patient ID and accession number: ASCII letters, digits and signs only"

#: C-FIND: (PACS, patient id, accession number, study date) -> matches. Raises PacsError.
Find = Callable[[PacsSettings, str, str, str], list[StudyMatch]]


def _find(pacs: PacsSettings, patient_id: str, accession: str, date: str) -> list[StudyMatch]:
    return find_studies(pacs, patient_id=patient_id, accession_number=accession, study_date=date)


class PacsRoom:
    """``imaging``: the gateway's imaging path (None: none, and so no PACS); ``own_site``:
    the gateway's site as the server told it at login (None before); ``media_of``: a
    clinician's open connection by its current peer id (None when it has none)."""

    def __init__(
        self,
        imaging: GatewayImaging | None,
        own_site: Callable[[], str | None],
        media_of: Callable[[str], MediaPeer | None],
        clock: Clock = SYSTEM_CLOCK,
        find: Find = _find,
    ) -> None:
        self._imaging = imaging
        self.pacs = imaging.config.pacs if imaging is not None else None
        self._own_site = own_site
        self._media_of = media_of
        self._clock = clock
        self._find = find
        self._queue: asyncio.Queue[tuple[Peer, PacsFind | PacsPull]] = asyncio.Queue(QUEUE_SIZE)
        self._buckets = TokenBuckets(REQUESTS_PER_S, BURST, clock)
        #: Requests refused before answering (who, too often, queue full) and answered.
        self.refused = 0
        self.answered = 0

    def request(self, peer: Peer, message: PacsFind | PacsPull) -> None:
        """A clinician's ``pacs-find`` or ``pacs-pull`` (on the event loop): queued for
        answering, or refused at once (answered with the reason, logged)."""
        reason = self._refusal(peer)
        if reason is None and self.pacs is None:
            reason = NO_PACS
        if reason is None and isinstance(message, PacsFind):
            reason = query_problem(message)
        if reason is None and not self._buckets.take(identity(peer)):
            reason = TOO_OFTEN
        if reason is None:
            try:
                self._queue.put_nowait((peer, message))
            except asyncio.QueueFull:
                reason = BUSY
            else:
                return
        if isinstance(message, PacsPull) and reason == OTHER_SITE:
            reason = OTHER_SITE_PULL
        self.refused += 1
        log.warning("%s from %s (%s) refused: %s", message.type, peer.name, peer.site, reason)
        self._send(peer, _unanswered(message, reason, "refused"))

    def _refusal(self, peer: Peer) -> str | None:
        """Why this peer may not use the PACS, or None when it may."""
        if peer.kind is not PrincipalKind.USER or peer.role not in CLINICIANS:
            return NOT_CLINICIAN
        own = self._own_site()
        if own is None or peer.site != own:
            return OTHER_SITE
        return None

    async def run(self) -> None:
        """Answer the requests one at a time, until cancelled."""
        while True:
            peer, message = await self._queue.get()
            try:
                answer = await self._answer(peer, message)
            except Exception as exc:  # one answer failing must not end the answering
                log.exception("%s from %s failed", message.type, peer.name)
                answer = _unanswered(message, f"the bedside failed: {type(exc).__name__}", "failed")
            self.answered += 1
            self._send(peer, answer)

    async def _answer(self, peer: Peer, message: PacsFind | PacsPull) -> str:
        pacs = self.pacs
        assert pacs is not None  # request() queues nothing without one
        if isinstance(message, PacsFind):
            return await self._search(peer, pacs, message)
        return await self._pull(peer, pacs, message)

    async def _search(self, peer: Peer, pacs: PacsSettings, message: PacsFind) -> str:
        # Not abandoned to an asyncio timeout: the thread would go on holding its
        # association. pynetdicom bounds each wait for the PACS by its timeout.
        started = self._clock.monotonic()
        try:
            matches = await asyncio.to_thread(
                self._find,
                pacs,
                message.patient_id,
                message.accession_number,
                "" if message.study_date == "-" else message.study_date,  # "-": any date
            )
        except (PacsError, OSError, RuntimeError, ValueError) as exc:
            reason = self._reason(pacs, exc, started)
            log.warning("PACS search by %s failed: %s", peer.name, reason)
            return encode_event(PacsStudies(request=message.request, error=reason))
        log.info("PACS search by %s (%s): %d studies", peer.name, _criteria(message), len(matches))
        return studies_text(message.request, matches)

    async def _pull(self, peer: Peer, pacs: PacsSettings, message: PacsPull) -> str:
        imaging = self._imaging
        assert imaging is not None
        uid = message.study_instance_uid
        who = f"{peer.name} ({peer.role}, {peer.site})"
        started = self._clock.monotonic()
        try:
            # Not bounded as a whole (a large study takes its time); pynetdicom bounds each
            # wait for the PACS by its timeout.
            retrieved = await imaging.pull_study(pacs, uid)
        except NoConsultation as exc:
            answer = PacsPulled(
                request=message.request, study_instance_uid=uid, outcome="refused", reason=str(exc)
            )
        except (PacsError, OSError, RuntimeError, ValueError) as exc:
            reason = self._reason(pacs, exc, started)
            answer = PacsPulled(
                request=message.request, study_instance_uid=uid, outcome="failed", reason=reason
            )
        else:
            # 0x0000 success, 0xB000 some sub-operations failed; anything else (0xA7xx out
            # of resources, 0xA9xx, 0xCxxx, 0xFE00 cancelled) the retrieval as a whole failed.
            answer = PacsPulled(
                request=message.request,
                study_instance_uid=uid,
                outcome="pulled" if retrieved.status in (0x0000, 0xB000) else "failed",
                completed=retrieved.completed,
                failed=retrieved.failed,
                reason=None if retrieved.status == 0 else f"PACS status 0x{retrieved.status:04X}",
            )
        # The bedside's record of what it took from its PACS, and for whom.
        log.warning(
            "PACS pull of study %s from %s by %s: %s, %d instances, %d failed%s",
            uid,
            pacs.called_ae,
            who,
            answer.outcome,
            answer.completed,
            answer.failed,
            f" ({answer.reason})" if answer.reason else "",
        )
        return encode_event(answer)

    def _reason(self, pacs: PacsSettings, exc: Exception, started: float) -> str:
        """Why asking the PACS failed. pynetdicom tells a PACS that never answered the
        association from one that refused it only by the time it took."""
        where = f"{pacs.called_ae} at {pacs.host}:{pacs.port}"
        if self._clock.monotonic() - started >= SILENT_FRACTION * pacs.timeout_s:
            return f"the PACS {where} did not answer within {pacs.timeout_s:g} s"
        text = str(exc) or type(exc).__name__
        return f"the PACS {where} could not be asked: {text}"[:512]

    def _send(self, peer: Peer, text: str) -> None:
        media = self._media_of(peer.peer_id)
        if media is None:
            log.info("PACS answer to %s dropped: its link is gone", peer.name)
            return
        media.send_event(text)


def _unanswered(
    message: PacsFind | PacsPull, reason: str, outcome: Literal["refused", "failed"]
) -> str:
    """The answer to a request that got no result: a search's ``error``, or a pull
    ``refused`` (not allowed, not now) or ``failed`` (the bedside or PACS failed)."""
    if isinstance(message, PacsFind):
        return encode_event(PacsStudies(request=message.request, error=reason))
    return encode_event(
        PacsPulled(
            request=message.request,
            study_instance_uid=message.study_instance_uid,
            outcome=outcome,
            reason=reason,
        )
    )


def query_problem(message: PacsFind) -> str | None:
    """Why the PACS could not be asked this (the reason, to tell the asker), or None."""
    if not (message.patient_id + message.accession_number).isascii():
        return NOT_ASCII
    if len(message.accession_number) > ACCESSION_MAX:
        return BAD_ACCESSION
    return None


def _criteria(message: PacsFind) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("patient", message.patient_id),
            ("accession", message.accession_number),
            ("date", message.study_date),
        )
        if value
    ]
    return ", ".join(parts) or "any"


def _study(match: StudyMatch) -> PacsStudy | None:
    """The answer's form of a match, fitted to the contract's bounds (a PACS may send
    anything); None for one without a usable Study Instance UID (it could not be pulled)."""
    uid = match.study_instance_uid.strip()
    if not uid or len(uid) > 64:
        return None
    return PacsStudy(
        study_instance_uid=uid,
        patient_id=match.patient_id[:64],
        patient_name=match.patient_name[:324],
        study_date=match.study_date if _DATE.match(match.study_date) else "",
        description=match.description[:64],
        modalities=[m[:16] for m in match.modalities[:16]],
        instances=match.instances if match.instances is None or match.instances >= 0 else None,
    )


def studies_text(request: str, matches: list[StudyMatch]) -> str:
    """The ``pacs-studies`` answer: at most :data:`MAX_PACS_STUDIES` studies, and no more
    than fit in one events message (``truncated`` when any were left out). Pure."""
    studies = [s for s in (_study(m) for m in matches) if s is not None]
    truncated = len(studies) > MAX_PACS_STUDIES
    studies = studies[:MAX_PACS_STUDIES]
    while True:
        text = encode_event(PacsStudies(request=request, studies=studies, truncated=truncated))
        if len(text.encode()) <= MAX_EVENT_BYTES or not studies:
            return text
        # Long names in a multi-byte character set: fewer studies, said so.
        studies = studies[: len(studies) * 3 // 4]
        truncated = True
