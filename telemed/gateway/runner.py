"""The bedside gateway: devices -> media -> the other site, through signaling.

:class:`Gateway` owns everything it starts: one reader task per device, a pump per reader,
each camera's capture thread and frame worker (telemed.gateway.cameras), the keeping of
frames a doctor freezes (telemed.gateway.keep), the sound's capture thread and feed, the
talk-back sink thread, the vitals worker thread, the signaling client, the consultation
follower and the peer set. :meth:`Gateway.run` runs until cancelled and then stops all of
it, in that task.

Which consultation: the one named in the configuration, or else ("follow") the newest active
consultation requested by the gateway's own site, joined when it starts or when it becomes
active and left when it ends (the bedside requests; the other site consults). The gateway
follows them through the server's ``consultation`` pushes, listing them over HTTP only when
its signaling link (re)connects (telemed.gateway.follow).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiortc import RTCIceServer

from devices.drivers import DRIVERS
from devices.model import DeviceAlarms, DeviceEvent
from devices.reader import DeviceReader
from devices.transports.mllp_tcp import Hl7Listener
from media.audio import AudioMode
from media.audio.capture import AudioCaptureThread, AudioMailbox
from media.audio.errors import AudioDeviceError
from media.audio.feed import AudioFeed
from media.audio.sinks import SinkThread, open_audio_sink
from media.audio.sources import open_audio_source, reopener
from media.audio.talkback import TalkBack
from media.rtc.events import (
    EventMessage,
    Hello,
    HoldFrameRequest,
    KeepFrameRequest,
    LatencyReport,
    LatencySummary,
    Numeric,
    PacsFind,
    PacsPull,
    PlayoutDelayRequest,
    SourceChoice,
    WaveformHistoryRequest,
    encode_event,
)
from media.rtc.ice import Fetched, IceServerCache
from media.rtc.peer import MediaPeer
from media.rtc.tracks import ProcessedFrames
from media.rtc.wire import WirePacket
from media.video.processing import ProcessingSettings
from media.waveform.history import HistorySettings
from runtime.ratelimit import TokenBuckets
from signaling.client import GatewayCredentials, SignalingClient, SignalingError, UntrustedServer
from signaling.journal import Journal, JournalLimits, JournalStore
from signaling.schema import (
    AlarmAck,
    AlarmLimitsChange,
    Answer,
    Candidate,
    ConsultationState,
    ConsultationStateChanged,
    ConsultationUpdated,
    Error,
    ErrorCode,
    Joined,
    Offer,
    Peer,
    PeerJoined,
    PeerLeft,
    Role,
    ServerMessage,
    Welcome,
)
from signaling.uploader import Uploader, client_post
from telemed.gateway.alarms import GatewayAlarms
from telemed.gateway.cameras import CameraSpec, LiveCamera, check_cameras
from telemed.gateway.follow import Following
from telemed.gateway.history import GatewayHistory
from telemed.gateway.imaging import GatewayImaging, ImagingConfig, client_send
from telemed.gateway.keep import GatewayKeep, KeepSource
from telemed.gateway.pacs_room import PacsRoom
from telemed.gateway.peers import OPEN_TIMEOUT_S, PeerSet
from telemed.gateway.playout import GatewayPlayout
from telemed.gateway.sources import PrimarySources
from telemed.gateway.vitals import VitalsProcessor

log = logging.getLogger(__name__)

#: How long a following gateway waits before trying again after a list or a join failed
#: for a reason that may pass (the server unreachable, overloaded, not answering in time).
FOLLOW_RETRY_S = 2.0
#: Latency reports logged per viewer per second (the overlay sends one every few seconds).
LATENCY_REPORTS_PER_S = 0.5
#: The first login's retries while the server cannot be reached: the first delay, doubling
#: up to the cap.
FIRST_LOGIN_RETRY_S = 1.0
FIRST_LOGIN_RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class DeviceSpec:
    """A device to read: ``protocol`` (a name in DRIVERS, or ``hl7``) and ``port`` (a serial
    port path, or for hl7 the TCP port to listen on)."""

    protocol: str
    port: str
    device_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> DeviceSpec:
        """``PROTOCOL:PORT`` (e.g. ``cms50:/dev/ttyUSB0``, ``hl7:2575``)."""
        protocol, sep, port = text.partition(":")
        if not sep or not port:
            raise ValueError(f"{text!r}: a device is PROTOCOL:PORT")
        if protocol != "hl7" and protocol not in DRIVERS:
            known = ", ".join(sorted([*DRIVERS, "hl7"]))
            raise ValueError(f"{text!r}: unknown protocol {protocol!r} (known: {known})")
        return cls(protocol, port)


@dataclass(frozen=True)
class GatewayConfig:
    server_url: str
    name: str
    key: str
    #: The site's mains frequency: the ECG notch.
    mains_hz: float
    devices: tuple[DeviceSpec, ...] = ()
    #: The room camera: ``synthetic``, a camera index (``0``), a device path, a file or a
    #: URL; None: none (or only those in ``cameras``).
    camera: str | None = None
    #: More cameras, each named (an ultrasound's video output: telemed.gateway.cameras).
    cameras: tuple[CameraSpec, ...] = ()
    #: Every camera's processing (a diagnostic camera's without its enhancements).
    video: ProcessingSettings = field(default_factory=ProcessingSettings)
    #: Join this consultation; None: follow the site's newest active consultation.
    consultation_id: str | None = None
    #: Where the HL7 listener binds (monitors connect in).
    hl7_host: str = "0.0.0.0"  # noqa: S104
    #: An offer not connected by then is made again (see telemed.gateway.peers).
    peer_open_timeout_s: float = OPEN_TIMEOUT_S
    #: The bedside's sound: ``synthetic``, ``synthetic:clicks``, ``alsa:DEVICE`` or a WAV
    #: file (see media.audio.sources.open_audio_source); None: no sound.
    audio: str | None = None
    #: ``voice`` (a room microphone) or ``stethoscope`` (heart and lung sounds, unfiltered).
    audio_mode: AudioMode = AudioMode.VOICE
    #: Where clinicians' talk-back is played: ``alsa:DEVICE`` or a WAV file; None: none
    #: (the connections then do not ask for the clinicians' sound).
    speaker: str | None = None
    #: Where the gateway keeps what the server has not taken yet (``journal.sqlite3``, see
    #: signaling.journal); None: in memory only (lost when the gateway stops).
    data_dir: Path | None = None
    journal: JournalLimits = field(default_factory=JournalLimits)
    #: Connect through the TURN relay only (a site whose network allows nothing else).
    relay_only: bool = False
    #: Trust an ``https://`` server whose certificate (or CA) is in this PEM file; None:
    #: the system's CAs. The certificate is verified either way.
    ca_file: Path | None = None
    #: The bedside's DICOM Storage SCP and the forwarding of its images; None: none.
    imaging: ImagingConfig | None = None
    #: How much of each waveform is kept for a clinician's review after a link's gap.
    waveform_history: HistorySettings = field(default_factory=HistorySettings)

    def all_cameras(self) -> tuple[CameraSpec, ...]:
        """``camera`` (as the camera named room) and ``cameras``; raises ValueError for two
        of one name."""
        room = () if self.camera is None else (CameraSpec("room", self.camera, "room"),)
        return check_cameras((*room, *self.cameras))


Source = DeviceReader | Hl7Listener


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.client = SignalingClient(
            config.server_url,
            GatewayCredentials(config.name, config.key),
            client_name="telemed-gateway",
            ca_file=config.ca_file,
        )
        self.vitals = VitalsProcessor(config.mains_hz)
        #: When this gateway started: its numerics' sequence numbers count from then.
        self.started = time.time()
        self.sources: list[Source] = [self._source(spec) for spec in config.devices]
        #: Which device is primary for a parameter two of them measure.
        devices = zip(self.sources, config.devices, strict=True)
        self.primary = PrimarySources([(s.device_id, spec.protocol) for s, spec in devices])
        self.consultation_id: str | None = None
        #: Which consultation to join, from the server's pushes (and a list per link).
        self.following = Following(config.consultation_id)
        #: Set when the follower has something to look at: a link came up, a consultation
        #: changed, the gateway left one.
        self._follow_wake = asyncio.Event()
        #: A list of the site's active consultations is due (set by each welcome).
        self._relist = False
        #: Lists taken over HTTP (one per link, and again only after a failed one).
        self.lists_taken = 0
        #: What was measured, kept for the consultation's record until the server has it.
        path = None if config.data_dir is None else config.data_dir / "journal.sqlite3"
        self.journal = Journal(
            JournalStore.open(path, config.journal), lambda: self.consultation_id
        )
        self.uploader = Uploader(self.journal, client_post(self.client))
        #: The bedside's alarms: device alarms and limit alarms, to viewers and the journal.
        self.alarms = GatewayAlarms(lambda text: self._broadcast(text, None), self.journal)
        #: Messages a newly connected clinician gets first: channel metadata, the latest
        #: value of each numeric, each device's state. Touched on the event loop only.
        self._retained: dict[tuple[str, ...], str] = {}
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vitals")
        #: The bedside's cameras (started by run), the room camera first.
        self.cameras = [LiveCamera(spec, config.video) for spec in config.all_cameras()]
        self._audio_capture: AudioCaptureThread | None = None
        self.audio: AudioFeed | None = None
        self.talkback: TalkBack | None = None
        self.peers: PeerSet | None = None
        #: ICE servers for new connections, fetched once and refreshed before they expire.
        self.ice_servers = IceServerCache(self._fetch_ice_servers)
        self.packets_sent = 0
        self.events_sent = 0
        #: Device events the vitals processing failed on (logged and skipped).
        self.events_failed = 0
        self.imaging = self._imaging()
        #: Every waveform packet sent, kept for review after an outage (on the event loop).
        self.history = GatewayHistory(config.waveform_history, self._media_of)
        # A viewer's latency overlay reports every few seconds; more than that is not logged.
        self._latency_reports = TokenBuckets(LATENCY_REPORTS_PER_S, 3)
        #: The site's PACS, searched and pulled from by the site's clinicians in the room
        #: (answers "no PACS is configured" when the imaging config names none).
        self.pacs = PacsRoom(
            self.imaging,
            lambda: None if self.client.welcome is None else self.client.welcome.site,
            self._media_of,
        )
        #: Frames a doctor keeps from a diagnostic camera.
        self.keep = GatewayKeep(
            self.imaging,
            {
                camera.spec.name: KeepSource(camera.recent, camera.spec.source, camera.lossy_method)
                for camera in self.cameras
                if camera.recent is not None
            },
            self._media_of,
        )
        #: The playout delay each viewer's path asks for (its own connection's video only).
        self.playout = GatewayPlayout([camera.spec.name for camera in self.cameras], self._media_of)

    def _imaging(self) -> GatewayImaging | None:
        """The DICOM path (telemed.gateway.imaging); its spool and key live under the data
        directory (a temporary one when the gateway keeps nothing: the demo)."""
        config = self.config.imaging
        if config is None:
            return None
        data_dir = self.config.data_dir or Path(tempfile.mkdtemp(prefix="telemed-gateway-"))
        return GatewayImaging(
            config,
            data_dir,
            lambda: self.consultation_id,
            self._imaging_consent,
            client_send(self.client),
        )

    async def _imaging_consent(self, consultation_id: str) -> bool:
        consultation = await self.client.get_consultation(consultation_id)
        return consultation.imaging_consent

    def _source(self, spec: DeviceSpec) -> Source:
        if spec.protocol == "hl7":
            return Hl7Listener(self.config.hl7_host, int(spec.port), spec.device_id or "hl7")
        return DeviceReader(DRIVERS[spec.protocol], spec.port, spec.device_id)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (a server not reachable at start is waited for); raises
        SignalingError when the gateway's key is refused, UntrustedServer for a certificate
        that is not trusted, AudioDeviceError or VideoSourceError when a configured device
        cannot be opened, and DicomListenError when the DICOM port cannot be listened on."""
        try:
            pipelines = self._start_video()
            audio = self._start_audio()
            self.talkback = self._start_talkback()
            if self.imaging is not None:
                self.imaging.start()  # a taken DICOM port stops the gateway here
            await self._first_login()
            await self.client.start()
            self.peers = PeerSet(
                self.client.send,
                self.ice_servers.get,
                [camera.feed() for camera in self.cameras],
                self.greeting,
                self.config.peer_open_timeout_s,
                audio=audio.track if audio is not None else None,
                talkback=self.talkback,
                on_message=self._viewer_message,
                relay_only=self.config.relay_only,
            )
            async with asyncio.TaskGroup() as tasks:
                for name, pipeline in pipelines:
                    tasks.create_task(pipeline.run(), name=f"video-pipeline-{name}")
                if audio is not None:
                    tasks.create_task(audio.run(), name="audio-pipeline")
                for source in self.sources:
                    tasks.create_task(source.run(), name=f"device-{_name(source)}")
                    tasks.create_task(self._pump(source), name=f"pump-{_name(source)}")
                tasks.create_task(self._signaling(), name="signaling")
                tasks.create_task(self._follow(), name="consultation")
                tasks.create_task(self.uploader.run(), name="journal-uploader")
                tasks.create_task(self.alarms.run(), name="alarms")
                tasks.create_task(self.history.run(), name="waveform-history")
                tasks.create_task(self.pacs.run(), name="pacs-room")
                tasks.create_task(self.keep.run(), name="keep-frames")
                if self.imaging is not None:
                    tasks.create_task(self.imaging.run(), name="imaging")
        finally:
            await self._stop()

    async def _first_login(self) -> None:
        """Log in, waiting for the server as long as it takes: a bedside box may start
        before its network or the server is up, and must not need a process manager to try
        again. Only the server's refusal of the gateway's key (a 4xx but 429) and an
        untrusted certificate end it (raised: the technician has to act)."""
        delay = FIRST_LOGIN_RETRY_S
        warned = False
        while True:
            try:
                await self.client.login()
                if warned:
                    log.warning(
                        "server %s reached; the gateway is logged in", self.config.server_url
                    )
                return
            except UntrustedServer:
                raise
            except SignalingError as exc:
                status = exc.code if isinstance(exc.code, int) else 0
                if status < 500 and status != 429:
                    raise
                reason = str(exc)
            except (httpx.HTTPError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            level = logging.INFO if warned else logging.WARNING
            log.log(
                level,
                "server %s not reachable (%s); trying again in %.0f s",
                self.config.server_url,
                reason,
                delay,
            )
            warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, FIRST_LOGIN_RETRY_MAX_S)

    async def _stop(self) -> None:
        if self.peers is not None:
            await self.peers.close()
        await self.ice_servers.close()
        await self.client.leave()
        await self.client.close()
        for camera in self.cameras:
            await camera.stop()
        if self._audio_capture is not None:
            await self._audio_capture.stop()
        if self.talkback is not None:
            await asyncio.to_thread(self.talkback.close)
        if self.imaging is not None:
            await self.imaging.stop()
        self._worker.shutdown(wait=True, cancel_futures=True)
        await self.journal.close()

    def _start_video(self) -> list[tuple[str, ProcessedFrames]]:
        """Open every camera and start its capture (a source that cannot be opened raises
        VideoSourceError: the gateway stops at start with its name); each camera's pipeline
        is for run() to own."""
        loop = asyncio.get_running_loop()
        started = [(camera.spec.name, camera.start(loop)) for camera in self.cameras]
        for camera in self.cameras:
            log.info(
                "camera %s (%s) from %s", camera.spec.name, camera.spec.purpose, camera.spec.source
            )
        return started

    def _start_audio(self) -> AudioFeed | None:
        """The sound's capture thread and feed; the device is opened here, so a missing one
        stops the gateway at start with its name (later losses are reopened)."""
        spec = self.config.audio
        if spec is None:
            return None
        try:
            source = open_audio_source(spec)
        except ValueError as exc:  # a spec that names nothing known
            raise AudioDeviceError(str(exc)) from None
        mailbox = AudioMailbox(asyncio.get_running_loop())
        self._audio_capture = AudioCaptureThread(source, mailbox, reopener(spec), name=spec)
        self._audio_capture.start()
        self.audio = AudioFeed(mailbox, self.config.audio_mode)
        log.info("bedside sound from %s (%s)", spec, self.config.audio_mode)
        return self.audio

    def _start_talkback(self) -> TalkBack | None:
        if self.config.speaker is None:
            return None
        try:
            sink = SinkThread(open_audio_sink(self.config.speaker))
        except ValueError as exc:
            raise AudioDeviceError(str(exc)) from None
        sink.start()
        log.info("talk-back plays on %s", self.config.speaker)
        return TalkBack(sink)

    async def _fetch_ice_servers(self) -> Fetched:
        """The server's STUN/TURN servers and when their credentials expire (raises when
        the server cannot be asked: the cache keeps what it has)."""
        body = await self.client.ice_servers()
        servers = [
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in body.ice_servers
        ]
        return servers, None if body.expires_at is None else body.expires_at.timestamp()

    def greeting(self) -> list[str]:
        """What a newly opened connection is told first: who we are (the events version,
        what the bedside's sound is, whether talk-back is played), then the retained
        messages."""
        config = self.config
        audio = None if config.audio is None else config.audio_mode.value
        hello = encode_event(
            Hello(
                source=config.name,
                audio=audio,
                talkback=config.speaker is not None,
                started=self.started,
            )
        )
        return [hello, *self._retained.values(), *self.alarms.greeting()]

    # -- devices -> peers --------------------------------------------------------------------

    async def _pump(self, source: Source) -> None:
        """Device events -> the worker thread -> every viewer, in arrival order. An event the
        processing fails on is logged and skipped: the next one goes through."""
        loop = asyncio.get_running_loop()
        while True:
            event: DeviceEvent = await source.events.get()
            try:
                self.alarms.handle(event, link_states=isinstance(source, DeviceReader))
            except Exception:  # the alarms must not stop the vitals, nor end the gateway
                self.events_failed += 1
                log.exception(
                    "alarm handling of %s from %s failed", type(event).__name__, _name(source)
                )
            if isinstance(event, DeviceAlarms):
                continue  # alarms only: nothing for the vitals
            # Filtering and beat detection run in the worker thread, in arrival order.
            try:
                outgoing = await loop.run_in_executor(self._worker, self.vitals.handle, event)
            except Exception:
                self.events_failed += 1
                log.exception("processing %s from %s failed", type(event).__name__, _name(source))
                continue
            for item in outgoing:
                if isinstance(item, WirePacket):
                    self.packets_sent += 1
                    self.history.record(item)
                    if self.peers is not None:
                        self.peers.send_waveform(item)
                    continue
                self._broadcast(item.text, item.retain)
                if isinstance(item.message, Numeric):
                    self._journal_numeric(item.message)
                if isinstance(item.message, Numeric) and not item.message.derived:
                    sources = self.primary.observe(item.message.code, item.message.device)
                    if sources is not None:
                        self._broadcast(encode_event(sources), ("sources",))

    def _journal_numeric(self, numeric: Numeric) -> None:
        try:
            self.journal.add_numeric(numeric)
        except ValueError as exc:  # the server would refuse it: not kept, the rest goes on
            log.warning("%s of %s: %s", numeric.code, numeric.device, exc)

    def _broadcast(self, text: str, retain: tuple[str, ...] | None) -> None:
        """An events-channel message to every viewer; a retained one is also what a viewer
        connecting later is told first."""
        if retain is not None:
            self._retained[retain] = text
        self.events_sent += 1
        if self.peers is not None:
            self.peers.send_event(text)

    def _viewer_message(self, peer: Peer, message: EventMessage) -> None:
        """What a clinician's browser sends on the events channel."""
        if isinstance(message, SourceChoice):
            if peer.role is not Role.TECHNICIAN:
                log.warning(
                    "source choice from %s (%s) refused: technicians choose", peer.name, peer.role
                )
                return
            sources = self.primary.choose(message.code, message.device, peer.name)
            if sources is None:
                log.warning(
                    "source choice %s refused: %s never measured it", message, message.device
                )
                return
            log.info("%s chose %s for %s", peer.name, message.device, message.code)
            self._broadcast(encode_event(sources), ("sources",))
        elif isinstance(message, WaveformHistoryRequest):
            self.history.request(peer, message)
        elif isinstance(message, (PacsFind, PacsPull)):
            self.pacs.request(peer, message)
        elif isinstance(message, KeepFrameRequest):
            self.keep.request(peer, message)
        elif isinstance(message, HoldFrameRequest):
            self.keep.hold(peer, message)
        elif isinstance(message, PlayoutDelayRequest):
            self.playout.request(peer, message)
        elif isinstance(message, LatencyReport):
            if self._latency_reports.take(peer.peer_id):
                log.info("latency seen by %s (%s): %s", peer.name, peer.site, _latency(message))
        else:
            log.info("message from %s ignored: %s", peer.name, message.type)

    def _media_of(self, peer_id: str) -> MediaPeer | None:
        return None if self.peers is None else self.peers.media_of(peer_id)

    # -- signaling -------------------------------------------------------------------------

    async def _signaling(self) -> None:
        """Act on each signaling message. One that fails (a peer connection refusing what it
        was given) is logged; the gateway goes on with the next."""
        while True:
            message = await self.client.recv()
            try:
                await self._on_message(message)
            except Exception:
                log.exception("handling %s failed", message.type)

    async def _on_message(self, message: ServerMessage) -> None:
        peers = self.peers
        assert peers is not None
        match message:
            case Welcome():
                # A link came up: what changed while it was down was pushed to nobody.
                self.following.connected(message.site)
                self._relist = self.following.lists
                self._follow_wake.set()
            case ConsultationUpdated():
                self.following.changed(message.consultation)
                self._follow_wake.set()
            case Joined():
                self.consultation_id = message.consultation.id
                self.alarms.joined()
                own = self.client.peer_id
                await peers.sync([p for p in message.peers if p.peer_id != own])
            case PeerJoined():
                await peers.peer_joined(message.peer)
            case PeerLeft():
                await peers.peer_left(message.peer_id, message.reason)
            case Answer():
                await peers.answer(message)
            case Candidate():
                await peers.candidate(message)
            case Offer():
                await peers.offer(message)
            case AlarmAck():
                self.alarms.acknowledge(message)
            case AlarmLimitsChange():
                self.alarms.change_limits(message)
            case ConsultationStateChanged():
                if message.consultation.state in (
                    ConsultationState.CLOSED,
                    ConsultationState.CANCELLED,
                ):
                    log.info("consultation %s ended", message.consultation.id)
                    self.following.ended(message.consultation.id)
                    await self._left()
            case Error():
                log.warning("server error %s: %s", message.code, message.reason)
                if message.ref == "join":
                    await self._left()

    async def _left(self) -> None:
        self.consultation_id = None
        self._follow_wake.set()  # another active consultation of the site may be joined
        if self.peers is not None:
            await self.peers.left_consultation()
        await self.client.leave()

    async def _follow(self) -> None:
        """Join the configured consultation, or the site's newest active one, whenever the
        gateway is in none and there is one: woken by each welcome, ``consultation`` push
        and leaving (telemed.gateway.follow; no polling). A round that fails for a reason
        that may pass is tried again after FOLLOW_RETRY_S; any other failure is logged and
        the next wake tries again."""
        while True:
            await self._follow_wake.wait()
            self._follow_wake.clear()
            try:
                again = await self._follow_round()
            except Exception:
                log.exception("following the consultation failed; trying again")
                again = True
            if again:
                await asyncio.sleep(FOLLOW_RETRY_S)
                self._follow_wake.set()

    async def _follow_round(self) -> bool:
        """List if a link came up since the last list, then join the target if the gateway
        is in no consultation. True: something failed that may succeed if tried again."""
        if self._relist:
            self._relist = False
            if not await self._list_active():
                self._relist = True
                return True
        if self.consultation_id is not None:
            return False
        target = self.following.target()
        if target is None:
            return False
        try:
            joined = await self.client.join(target)
        except SignalingError as exc:
            log.warning("cannot join %s: %s", target, exc)
            if exc.code in (ErrorCode.INTERNAL, ErrorCode.RATE_LIMITED):
                return True
            self.following.refused(target)  # until a push says it is active again
            return False
        except (TimeoutError, OSError) as exc:
            # OSError: the link dropped meanwhile (its return lists again).
            log.warning("cannot join %s: %r", target, exc)
            return True
        self.consultation_id = joined.consultation.id
        log.info("joined consultation %s", target)
        return False

    async def _list_active(self) -> bool:
        """The site's active consultations, listed once per link; False if the list failed."""
        try:
            rows = await self.client.list_consultations(ConsultationState.ACTIVE)
        except (SignalingError, OSError, httpx.HTTPError) as exc:
            log.info("cannot list consultations: %s", exc)
            return False
        self.lists_taken += 1
        self.following.listed(rows)
        return True


def _latency(report: LatencyReport) -> str:
    """One log line's worth of a viewer's :class:`LatencyReport`."""

    def figures(s: LatencySummary | None) -> str:
        if s is None:
            return "-"
        return f"median {s.median_ms:.1f} p95 {s.p95_ms:.1f} max {s.max_ms:.1f} ms (n={s.count})"

    parts = [
        f"video {report.camera or '-'} capture→presentation {figures(report.video)}",
        f"waveform sample→draw {figures(report.waveform)}",
    ]
    if report.jitter_buffer_ms is not None:
        parts.append(f"jitter buffer {report.jitter_buffer_ms:.1f} ms")
    if report.decode_ms is not None:
        parts.append(f"decode {report.decode_ms:.1f} ms")
    return "; ".join(parts)


def _name(source: Source) -> str:
    return source.device_id if isinstance(source, DeviceReader) else f"hl7:{source.port}"
