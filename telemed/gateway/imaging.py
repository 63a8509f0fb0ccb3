"""The gateway's imaging: the bedside Storage SCP -> check -> de-identify -> spool -> STOW-RS
to the server, for the gateway's active consultation.

:class:`GatewayImaging` owns the SCP (started in :meth:`~GatewayImaging.run`, stopped and
awaited when it ends), the intake task and the forwarder task. For each instance the SCP
accepted (checked in its association thread, see devices.dicom.scp):

1. No active consultation: refused at C-STORE time, 0xA700, "no active consultation: start
   it, then send again". A technician sees the send fail on the modality and sends again
   once the consultation runs; holding it for "the next" consultation could put one
   patient's images into another patient's consultation.
2. The consultation's imaging consent is read (the server's view of it, kept a few
   seconds; when it cannot be read the instance is de-identified: the safe side).
3. :func:`devices.dicom.deidentify.prepare` in a worker thread: as received with consent,
   de-identified without; burned-in annotation without consent refused (0x0124).
4. Spooled durably on disk (``<data_dir>/imaging/spool``), then answered 0x0000: from there
   nothing accepted is lost; a full spool refuses (0xA700) instead of dropping.
5. The forwarder sends the spool oldest first, one instance per STOW-RS request with its
   Content-Digest, checks X-Telemed-Stored-SHA256, and retries with backoff while the
   server is away (devices.dicom.stow).

A study can also be pulled from the site's PACS (:meth:`GatewayImaging.pull_study`, C-GET,
devices.dicom.pacs): its instances take the same path from step 1. A frame of a live
imaging source a doctor keeps (:meth:`GatewayImaging.keep_frame`) is built into a Secondary
Capture (devices.dicom.secondary), checked as the SCP checks, and takes the same path too;
its outcome is returned rather than answered.

UIDs are remapped with a key per consultation derived from the gateway's own secret
(``<data_dir>/imaging/uid.key``, made on first use), so the mapping survives a restart of
the gateway and cannot be recomputed by anyone without the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from devices.dicom.check import Accepted, Refused, check_instance
from devices.dicom.contexts import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from devices.dicom.deidentify import Prepared, consultation_key, prepare, remap_uid
from devices.dicom.pacs import PacsSettings, Retrieved, get_study
from devices.dicom.scp import Arrival, ScpSettings, StorageScp
from devices.dicom.secondary import Placement, build_secondary_capture
from devices.dicom.spool import Spool, SpoolFull, SpoolLimits
from devices.dicom.stow import (
    Forwarder,
    StowAnswer,
    StowRefused,
    StowSend,
    StowUnreachable,
    parse_stored_header,
)
from signaling.client import SignalingClient
from signaling.errors import SignalingError

log = logging.getLogger(__name__)

NO_CONSULTATION = "no active consultation: start it, then send again"
#: How long the consultation's imaging consent is believed before it is read again.
CONSENT_TTL_S = 5.0


class NoConsultation(Exception):
    """Nothing to put images into: the gateway is in no active consultation."""


@dataclass(frozen=True)
class ImagingConfig:
    scp: ScpSettings
    spool: SpoolLimits = field(default_factory=SpoolLimits)
    #: How long the consultation's imaging consent is believed before it is read again.
    consent_ttl_s: float = CONSENT_TTL_S
    #: The site's PACS, which clinicians of the site search and pull from (see
    #: telemed.gateway.pacs_room); None: none.
    pacs: PacsSettings | None = None


@dataclass(frozen=True)
class KeptFrame:
    """What became of a frame a doctor kept (:meth:`GatewayImaging.keep_frame`)."""

    #: Spooled for the consultation (the forwarder sends it); False: refused.
    kept: bool
    #: The SOP Instance UID the server will store it under (remapped when de-identified);
    #: empty when refused.
    sop_instance_uid: str
    deidentified: bool = False
    #: Why it was refused (empty when kept): to show the doctor.
    reason: str = ""


@dataclass(frozen=True)
class _Outcome:
    """What became of one checked instance: the DIMSE status and Error Comment its
    modality is answered, the reason in full, and the UID it is sent under when kept."""

    status: int
    comment: str
    reason: str = ""
    sent_uid: str = ""
    deidentified: bool = False


def _secondary_capture(
    frame: npt.NDArray[np.uint8],
    source: str,
    device: str,
    at: datetime,
    placement: Placement,
    burned_in: bool,
    lossy_method: str | None,
) -> tuple[bytes, Accepted | Refused]:
    """The frame's Secondary Capture and the check's verdict on it (a worker thread's
    work: the frame is copied and encoded)."""
    part10 = build_secondary_capture(
        frame,
        source=source,
        device=device,
        at=at,
        placement=placement,
        burned_in=burned_in,
        lossy_method=lossy_method,
    )
    return part10, check_instance(part10)


class GatewayImaging:
    def __init__(
        self,
        config: ImagingConfig,
        data_dir: Path,
        consultation: Callable[[], str | None],
        consent: Callable[[str], Awaitable[bool]],
        send: StowSend,
    ) -> None:
        self.config = config
        self._consultation = consultation
        self._consent = consent
        self._consent_cache: dict[str, tuple[float, bool]] = {}
        self.directory = data_dir / "imaging"
        self.spool = Spool(self.directory / "spool", config.spool)
        self.secret = _secret(self.directory / "uid.key")
        self.forwarder = Forwarder(self.spool, send)
        self.scp: StorageScp | None = None
        #: (consultation, frames it kept since the gateway started): Instance Numbers.
        self._frames: tuple[str, int] = ("", 0)

    def start(self) -> None:
        """Listen for modalities (from a coroutine: the SCP hands over to its loop). Raises
        devices.errors.DicomListenError; the gateway calls it before its tasks start, so a
        taken port stops it at once with the port named."""
        if self.scp is None:
            scp = StorageScp(self.config.scp, asyncio.get_running_loop())
            scp.start()
            self.scp = scp

    async def stop(self) -> None:
        """Stop listening and wait for the SCP's threads (idempotent)."""
        scp, self.scp = self.scp, None
        if scp is not None:
            await scp.stop()

    async def run(self) -> None:
        """Until cancelled (started first if :meth:`start` was not called)."""
        self.start()
        scp = self.scp
        assert scp is not None
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._intake(scp), name="dicom-intake")
                tasks.create_task(self.forwarder.run(), name="dicom-forwarder")
        finally:
            await self.stop()

    async def pull_study(self, pacs: PacsSettings, study_instance_uid: str) -> Retrieved:
        """Retrieve a study from the site's PACS (C-GET) into the active consultation: each
        instance takes the path a modality's does (check, consent, de-identification,
        spool). Raises NoConsultation, PacsError, and RuntimeError before :meth:`run`."""
        if self._consultation() is None:
            raise NoConsultation(NO_CONSULTATION)
        scp = self.scp
        if scp is None:
            raise RuntimeError("the imaging path is not running")
        retrieved = await asyncio.to_thread(get_study, pacs, study_instance_uid, scp.deliver)
        log.info(
            "study %s from %s: %d instances taken, %d failed",
            study_instance_uid,
            pacs.called_ae,
            retrieved.completed,
            retrieved.failed,
        )
        return retrieved

    async def _intake(self, scp: StorageScp) -> None:
        while True:
            arrival = await scp.arrivals.get()
            if arrival.answered:  # its modality was told 0xA700 and will send it again
                continue
            try:
                status, comment = await self._take(arrival)
            except Exception:  # one instance's failure must not stop the next
                log.exception("taking DICOM instance %s failed", arrival.verdict.sop_instance_uid)
                status, comment = CANNOT_UNDERSTAND, "gateway error: see its log"
            arrival.answer(status, comment)

    async def keep_frame(
        self,
        frame: npt.NDArray[np.uint8],
        *,
        source: str,
        device: str,
        at: datetime,
        burned_in: bool = True,
        lossy_method: str | None = None,
    ) -> KeptFrame:
        """Keep one frame of a live imaging source (``source``: its label, "ultrasound";
        ``device``: the capture device) as a Secondary Capture in the active consultation,
        on the path a modality's instance takes: checked, de-identified unless the patient
        consented (refused when ``burned_in`` and no consent), spooled, then forwarded.

        ``frame``: uint8, H x W x 3 BGR (OpenCV's) or H x W grey; ``at``: when it was
        captured, timezone-aware; ``lossy_method``: the device delivered it lossy (see
        :func:`~devices.dicom.secondary.build_secondary_capture`). The frames a consultation
        keeps form one study, a series
        per source and device. Raises NoConsultation (nothing is built), and ValueError for
        a frame :func:`~devices.dicom.secondary.build_secondary_capture` refuses; every
        other outcome is in the :class:`KeptFrame`."""
        consultation = self._consultation()
        if consultation is None:
            raise NoConsultation(NO_CONSULTATION)
        key = consultation_key(self.secret, consultation)
        number = self._frames[1] + 1 if self._frames[0] == consultation else 1
        self._frames = (consultation, number)
        # UIDs of the consultation's own (remapped again when de-identified, consistently).
        placement = Placement(
            study_instance_uid=remap_uid(key, "telemed:kept-frames"),
            series_instance_uid=remap_uid(key, f"telemed:kept-frames:{source}:{device}"),
            instance_number=number,
        )
        part10, verdict = await asyncio.to_thread(
            _secondary_capture, frame, source, device, at, placement, burned_in, lossy_method
        )
        if isinstance(verdict, Refused):  # a frame built here should not fail its check
            log.error("frame kept from %s refused by the check: %s", source, verdict.reason)
            return KeptFrame(False, "", reason=verdict.reason)
        origin = f"frame {verdict.sop_instance_uid} kept from {source} ({device})"
        outcome = await self._admit(part10, verdict, origin)
        return KeptFrame(
            outcome.status == SUCCESS,
            outcome.sent_uid,
            deidentified=outcome.deidentified,
            reason=outcome.reason or outcome.comment,
        )

    async def _take(self, arrival: Arrival) -> tuple[int, str]:
        origin = f"C-STORE of {arrival.verdict.sop_instance_uid} from {arrival.calling_ae}"
        outcome = await self._admit(
            arrival.part10, arrival.verdict, origin, abandoned=lambda: arrival.answered
        )
        return outcome.status, outcome.comment

    async def _admit(
        self,
        part10: bytes,
        verdict: Accepted,
        origin: str,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> _Outcome:
        """Steps 1-4 of the module's docstring for one checked instance: the consultation,
        its consent, prepare(), the spool. ``abandoned``: whether whoever waits for the
        outcome stopped waiting (then it is not kept)."""
        consultation = self._consultation()
        if consultation is None:
            log.warning("%s refused: %s", origin, NO_CONSULTATION)
            return _Outcome(OUT_OF_RESOURCES, NO_CONSULTATION)
        consent = await self._consented(consultation)
        key = consultation_key(self.secret, consultation)
        result = await asyncio.to_thread(prepare, part10, consent=consent, key=key)
        if not isinstance(result, Prepared):
            log.warning("%s refused (0x%04X): %s", origin, result.status, result.reason)
            return _Outcome(result.status, result.comment, result.reason)
        if abandoned():
            # The association stopped waiting (0xA700 told): the modality sends it again.
            # (Answered between here and the spool, it is kept and sent twice; the same
            # bytes either way, which the server stores once.)
            log.warning("C-STORE of %s answered before it was kept", verdict.sop_instance_uid)
            return _Outcome(OUT_OF_RESOURCES, "gateway busy: send again")
        sent_uid = verdict.sop_instance_uid
        if result.deidentified:
            sent_uid = remap_uid(key, verdict.sop_instance_uid)
        try:
            await asyncio.to_thread(
                self.spool.put,
                consultation,
                result.part10,
                deidentified=result.deidentified,
                sop_instance_uid=sent_uid,
            )
        except SpoolFull as exc:
            log.error("%s refused: the spool is full (%s)", origin, exc)
            return _Outcome(OUT_OF_RESOURCES, "gateway spool full: send again later")
        except OSError as exc:
            log.error("%s refused: cannot write the spool (%s)", origin, exc)
            return _Outcome(OUT_OF_RESOURCES, "gateway cannot store it: disk error")
        log.info(
            "%s accepted (%s, sha256 %s) for consultation %s, %s",
            origin,
            verdict.modality,
            verdict.sha256,
            consultation,
            "de-identified" if result.deidentified else "as received (consent)",
        )
        self.forwarder.wake()
        return _Outcome(SUCCESS, "", sent_uid=sent_uid, deidentified=result.deidentified)

    async def _consented(self, consultation: str) -> bool:
        now = time.monotonic()
        cached = self._consent_cache.get(consultation)
        if cached is not None and now - cached[0] < self.config.consent_ttl_s:
            return cached[1]
        try:
            value = await self._consent(consultation)
        except Exception as exc:  # unknown consent: de-identify (the safe side)
            log.warning("imaging consent of %s unknown (%s): de-identifying", consultation, exc)
            return False
        self._consent_cache = {consultation: (now, value)}
        return value


def _secret(path: Path) -> bytes:
    """The gateway's UID-remapping secret, made on first use (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


#: Statuses after which the same request may succeed later (the server's state, not ours).
_TRY_AGAIN = frozenset({401, 408, 429})


def client_send(client: SignalingClient) -> StowSend:
    """A :data:`~devices.dicom.stow.StowSend` through the gateway's signaling client (its
    login and token renewal)."""

    async def send(consultation: str, content_type: str, body: bytes) -> StowAnswer:
        path = f"/api/consultations/{consultation}/dicomweb/studies"
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        try:
            # The client's authenticated request (the record's uploader has its own API
            # call; a multipart body needs the raw one).
            response = await client._request("POST", path, content=body, headers=headers)
        except SignalingError as exc:
            code = exc.code if isinstance(exc.code, int) else 0
            if code >= 500 or code in _TRY_AGAIN or code == 0:
                raise StowUnreachable(str(exc)) from exc
            raise StowRefused(code, exc.reason) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise StowUnreachable(repr(exc)) from exc
        stored = parse_stored_header(response.headers.get("X-Telemed-Stored-SHA256"))
        return StowAnswer(response.status_code, stored)

    return send
