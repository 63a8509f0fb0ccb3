"""A doctor's freeze-and-keep: a frame of a diagnostic camera (an ultrasound's video output)
kept as a DICOM Secondary Capture in the consultation, on the imaging path a modality's
instance takes (telemed.gateway.imaging: checked, de-identified unless the patient consented,
spooled, sent to the server).

A clinician's ``keep-frame`` names the camera and, when the viewer read it from the frozen
picture's stamp, the frame's id; the camera's last seconds of captured frames
(media.video.recent) give that frame as captured, else the newest. Freezing the picture
sends ``hold-frame`` with that id, which holds the frame beyond those seconds, so a doctor
may take their time before choosing to keep it. The answer, ``kept-frame``,
goes to the asking connection only: ``kept`` with the SOP Instance UID it is sent under,
``refused`` with the reason to show (no active consultation, burned-in annotation without
consent, asked too often, no such camera), ``failed`` when the bedside could not build or
store it.

A captured screen of a modality is taken to carry burned-in text (its header names the
patient): without consent such a frame is refused, as the SCP refuses a modality's, rather
than sent across the border with a name in its pixels.

A browser must not be able to keep the bedside busy: each clinician (by identity, across
reconnections) has a token bucket of requests, at most :data:`QUEUE_SIZE` wait in all, and
one frame is kept at a time (its encoding and checks in worker threads, by
:meth:`~telemed.gateway.imaging.GatewayImaging.keep_frame`). :meth:`GatewayKeep.run` owns the
keeping; its owner cancels and awaits it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from media.rtc.events import FrameKept, HoldFrameRequest, KeepFrameRequest, encode_event
from media.rtc.peer import MediaPeer
from media.video.recent import RecentFrames
from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.ratelimit import TokenBuckets
from signaling.schema import Peer, PrincipalKind, Role
from telemed.gateway.imaging import GatewayImaging, NoConsultation
from telemed.gateway.peers import identity

log = logging.getLogger(__name__)
#: Each keep, its asker and outcome: the record of what left the bedside (the server audits
#: the instance again when it is stored).
audit = logging.getLogger("telemed.audit.keep")

#: Requests waiting to be kept, for all clinicians together.
QUEUE_SIZE = 8
#: A clinician may keep this many frames at once ...
BURST = 4
#: ... and then one every 2 s.
REQUESTS_PER_S = 0.5
#: Holds (a doctor froze the picture) a clinician may ask at once, then one a second: each
#: hold can push another's out of the few held (MAX_HELD), so a client asking without end
#: must not evict what a colleague froze.
HOLD_BURST = 4
HOLDS_PER_S = 1.0

TOO_OFTEN = "asked too often: wait a moment, then keep the frame again"
BUSY = "the bedside is busy keeping other frames: keep it again in a moment"
NO_IMAGING = "the bedside keeps no images: its imaging path is not set up (--dicom-port)"
NOT_CLINICIAN = "only doctors and technicians keep frames"
NO_FRAME = "no frame captured yet"
FAILED = "the bedside could not keep it: see its log"


@dataclass(frozen=True)
class KeepSource:
    """A diagnostic camera frames can be kept from: its last seconds, and the capture
    device's name for the Secondary Capture."""

    recent: RecentFrames
    device: str
    #: How the device delivers frames when lossy (``ISO_10918_1`` for MJPEG), read when a
    #: frame is kept (the device is opened after this is made); None: as captured.
    lossy_method: Callable[[], str | None] = lambda: None


class GatewayKeep:
    """``imaging``: the gateway's imaging path (None: none configured: every keep is
    refused); ``sources``: the diagnostic cameras by name; ``media_of``: a clinician's open
    connection by its current peer id."""

    def __init__(
        self,
        imaging: GatewayImaging | None,
        sources: Mapping[str, KeepSource],
        media_of: Callable[[str], MediaPeer | None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._imaging = imaging
        self._sources = dict(sources)
        self._media_of = media_of
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Peer, KeepFrameRequest]] = asyncio.Queue(QUEUE_SIZE)
        self._buckets = TokenBuckets(REQUESTS_PER_S, BURST, clock)
        self._hold_buckets = TokenBuckets(HOLDS_PER_S, HOLD_BURST, clock)
        # Who is being refused holds now: logged once per spell, not once per hold.
        self._refusing_holds: set[str] = set()
        self.holds_refused = 0
        self.kept = 0
        self.refused = 0
        self.failed = 0

    def request(self, peer: Peer, message: KeepFrameRequest) -> None:
        """A clinician's ``keep-frame``: queued, or refused at once (answered, logged)."""
        if peer.kind is not PrincipalKind.USER or peer.role not in (Role.DOCTOR, Role.TECHNICIAN):
            self._answer(peer, _refused(message, NOT_CLINICIAN))
        elif not self._buckets.take(identity(peer)):
            self._answer(peer, _refused(message, TOO_OFTEN))
        else:
            try:
                self._queue.put_nowait((peer, message))
            except asyncio.QueueFull:
                self._answer(peer, _refused(message, BUSY))

    def hold(self, peer: Peer, message: HoldFrameRequest) -> None:
        """A clinician's ``hold-frame`` (they froze the picture): the frame is held for a
        later ``keep-frame``. Cheap (a scan of the recent frames' ids), so done at once;
        not answered: the keep's answer names the frame it kept."""
        source = self._sources.get(message.camera)
        who = identity(peer)
        if peer.kind is not PrincipalKind.USER or peer.role not in (Role.DOCTOR, Role.TECHNICIAN):
            log.warning("hold-frame from %s (%s) refused: %s", peer.name, peer.role, NOT_CLINICIAN)
            return
        if not self._hold_buckets.take(who):
            self.holds_refused += 1
            if who not in self._refusing_holds and len(self._refusing_holds) < 1024:
                self._refusing_holds.add(who)
                log.warning("hold-frame from %s refused: asked too often", peer.name)
            return
        self._refusing_holds.discard(who)
        if source is None:
            log.warning("hold-frame from %s: no diagnostic camera %r", peer.name, message.camera)
        elif not source.recent.hold(message.frame_id):
            log.info(
                "hold-frame from %s: frame %d of %s is no longer held",
                peer.name,
                message.frame_id,
                message.camera,
            )

    async def run(self) -> None:
        """Keep the requested frames one at a time, until cancelled."""
        while True:
            peer, message = await self._queue.get()
            try:
                answer = await self._keep(peer, message)
            except Exception:  # one keep failing must not end the keeping
                log.exception("keeping a frame of %s for %s failed", message.camera, peer.name)
                answer = FrameKept(
                    request=message.request, camera=message.camera, outcome="failed", reason=FAILED
                )
            self._answer(peer, answer)

    async def _keep(self, peer: Peer, message: KeepFrameRequest) -> FrameKept:
        source = self._sources.get(message.camera)
        if source is None:
            return _refused(message, f"no diagnostic camera named {message.camera!r}")
        if self._imaging is None:
            return _refused(message, NO_IMAGING)
        frame, exact = source.recent.find(message.frame_id)
        if frame is None:
            return _refused(message, NO_FRAME)
        if message.frame_id is not None and not exact:
            log.info(
                "frame %d of %s no longer held: the newest (%d) is kept",
                message.frame_id,
                message.camera,
                frame.frame_id,
            )
        at = datetime.fromtimestamp(frame.capture_time, UTC)
        common = {"request": message.request, "camera": message.camera}
        taken = {"frame_id": frame.frame_id, "captured": frame.capture_time}
        try:
            kept = await self._imaging.keep_frame(
                frame.image,
                source=message.camera,
                device=source.device,
                at=at,
                burned_in=True,
                lossy_method=source.lossy_method(),
            )
        except NoConsultation as exc:
            return _refused(message, str(exc))
        except ValueError as exc:  # a frame the Secondary Capture cannot hold
            log.error("frame %d of %s cannot be kept: %s", frame.frame_id, message.camera, exc)
            return FrameKept(**common, outcome="failed", reason=str(exc)[:512], **taken)
        if not kept.kept:
            return FrameKept(**common, outcome="refused", reason=kept.reason[:512], **taken)
        return FrameKept(
            **common,
            outcome="kept",
            sop_instance_uid=kept.sop_instance_uid,
            deidentified=kept.deidentified,
            **taken,
        )

    def _answer(self, peer: Peer, answer: FrameKept) -> None:
        if answer.outcome == "kept":
            self.kept += 1
        elif answer.outcome == "refused":
            self.refused += 1
        else:
            self.failed += 1
        level = logging.INFO if answer.outcome == "kept" else logging.WARNING
        log.log(
            level,
            "keep-frame %s of %s from %s (%s, %s): %s%s",
            answer.request,
            answer.camera,
            peer.name,
            peer.role,
            peer.site,
            answer.outcome,
            f" ({answer.reason})" if answer.reason else "",
        )
        audit.info(
            "keep-frame by %s (%s, %s, %s) camera=%s frame=%s outcome=%s sop=%s deidentified=%s",
            peer.name,
            peer.role,
            peer.site,
            identity(peer),
            answer.camera,
            answer.frame_id,
            answer.outcome,
            answer.sop_instance_uid or "-",
            answer.deidentified,
        )
        media = self._media_of(peer.peer_id)
        if media is None or not media.send_event(encode_event(answer)):
            log.info("keep-frame %s: %s's link is gone; answer not sent", answer.request, peer.name)


def _refused(message: KeepFrameRequest, reason: str) -> FrameKept:
    return FrameKept(
        request=message.request, camera=message.camera, outcome="refused", reason=reason
    )
