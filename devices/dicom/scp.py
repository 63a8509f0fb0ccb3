"""The bedside Storage SCP with Verification (pynetdicom).

pynetdicom is thread-based: :meth:`StorageScp.start` starts its server, which listens in a
thread of its own and runs each association in another. A C-STORE is handled in its
association's thread: the instance is checked there (:func:`devices.dicom.check.check_instance`:
parsing and hashing stay off the event loop); a refused one is answered at once with its
status and reason (logged). An accepted one is handed to asyncio as an :class:`Arrival`
through :attr:`StorageScp.arrivals`, a bounded ``asyncio.Queue`` fed with
``loop.call_soon_threadsafe``, and the association thread waits for the consumer's answer
(:meth:`Arrival.answer`), so the status the modality gets says what really happened: stored
for forwarding (0x0000), or why not. A full queue, or no answer within
``ScpSettings.answer_timeout_s``, is answered 0xA700 (out of resources): the modality may
send again.

A half-received association forwards nothing: pynetdicom calls the C-STORE handler only
once a complete DIMSE message (command and every data set fragment, the last one flagged
as such) has arrived. An association aborted (A-ABORT) or cut (TCP reset, close) in the
middle of a P-DATA exchange drops what it had received; the instances it completed before
are kept (each was answered with its own status).

An association may send at most ``ScpSettings.max_instance_bytes`` towards one instance
(512 MiB by default): pynetdicom holds an instance in memory until it is whole, so past
that bound the connection is closed and the partial instance dropped, which bounds what 16
associations can make the gateway hold.

Associations from a calling AE title not in ``ScpSettings.allowed_calling`` are rejected
(rejected-permanent, calling AE title not recognised).

The 40 ms stall per small file (issue 13: 22 vs 270 files/s) is the *sender's* Nagle
algorithm: a modality (dcmtk's storescu by default) writes a PDU in pieces, and the last
small piece waits for the ACK of the ones before, which the receiver delays by up to 40 ms.
TCP_NODELAY on the SCP's own socket (``tcp_nodelay``, set) keeps its responses from waiting
the same way, but cannot change what the sender does; so the SCP also acknowledges at once
(``tcp_quickack``: TCP_QUICKACK re-armed around every read, Linux only), which releases
the sender's held piece. Measured here with storescu, CT_small (39 kB), one run side by
side: see ``benchmarks/dicom_scp.py``.

:meth:`StorageScp.stop` shuts the server down and waits for it (in a worker thread);
associations still open are aborted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from devices.dicom.check import Accepted, Refused, check_instance
from devices.dicom.contexts import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    STORAGE_CLASSES,
    SUCCESS,
    TRANSFER_SYNTAXES,
)
from devices.errors import DicomListenError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScpSettings:
    """The SCP's settings: its AE title, where it listens, who may call it."""

    ae_title: str = "TELEMED"
    port: int = 11112
    host: str = "0.0.0.0"  # noqa: S104 - modalities on the site's network call in
    #: Calling AE titles allowed to associate; every other one is rejected.
    allowed_calling: tuple[str, ...] = ()
    tcp_nodelay: bool = True
    #: Acknowledge every read at once (TCP_QUICKACK), so a sender using Nagle's algorithm
    #: does not wait out the delayed ACK on each small file (Linux; ignored elsewhere).
    tcp_quickack: bool = True
    #: Accepted instances waiting for the consumer at most (then 0xA700).
    queue_size: int = 16
    #: How long an association thread waits for the consumer's answer (then 0xA700).
    answer_timeout_s: float = 30.0
    #: Largest PDU received (bytes); 0: no limit.
    max_pdu: int = 262_144
    #: An association idle this long is aborted.
    idle_timeout_s: float = 60.0
    #: The most bytes an association may send towards one instance (from the end of the
    #: previous C-STORE, PDU headers included); past it the connection is closed and what it
    #: had sent dropped. pynetdicom holds an instance in memory until it is whole, and a
    #: PDU header may announce up to 4 GiB: this bounds each association's memory.
    max_instance_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title.strip()) <= 16:
            raise ValueError(f"AE title {self.ae_title!r}: 1 to 16 characters")
        if not self.allowed_calling:
            raise ValueError("the SCP needs at least one allowed calling AE title")
        for title in self.allowed_calling:
            if not 1 <= len(title.strip()) <= 16:
                raise ValueError(f"calling AE title {title!r}: 1 to 16 characters")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.max_instance_bytes < 64 * 1024:
            raise ValueError(f"max_instance_bytes {self.max_instance_bytes}: at least 64 KiB")


@dataclass
class Arrival:
    """An accepted instance handed to asyncio; :meth:`answer` it exactly once."""

    part10: bytes
    verdict: Accepted
    calling_ae: str
    _reply: concurrent.futures.Future[tuple[int, str]] = field(
        default_factory=concurrent.futures.Future, repr=False
    )

    @property
    def answered(self) -> bool:
        """Already answered (the association gave up waiting): nothing more to do."""
        return self._reply.done()

    def answer(self, status: int, comment: str = "") -> None:
        """The C-STORE status for the modality (and an Error Comment when not 0x0000)."""
        if not self._reply.done():
            self._reply.set_result((status, comment))


class StorageScp:
    def __init__(self, settings: ScpSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self._loop = loop
        self.arrivals: asyncio.Queue[Arrival] = asyncio.Queue(settings.queue_size)
        self._server: ThreadedAssociationServer | None = None
        #: Counters (written from association threads; read for reports and tests).
        self.accepted = 0
        self.refused = 0

    @property
    def port(self) -> int:
        """The port listened on (the one bound when settings said 0)."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def _ae(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        ae.require_calling_aet = list(self.settings.allowed_calling)
        ae.maximum_pdu_size = self.settings.max_pdu
        ae.network_timeout = self.settings.idle_timeout_s
        ae.acse_timeout = 30
        ae.dimse_timeout = self.settings.idle_timeout_s
        ae.maximum_associations = 16
        for sop_class in STORAGE_CLASSES:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        ae.add_supported_context(Verification)
        return ae

    def start(self) -> None:
        """Bind and listen (pynetdicom's server thread); raises DicomListenError."""
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, _on_echo)]
        if self.settings.tcp_nodelay:
            handlers.append((evt.EVT_CONN_OPEN, _no_delay))
        handlers.append((evt.EVT_CONN_OPEN, self._on_open))
        handlers.append((evt.EVT_REJECTED, _on_rejected))
        handlers.append((evt.EVT_ABORTED, _on_aborted))
        address = (self.settings.host, self.settings.port)
        try:
            self._server = self._ae().start_server(address, block=False, evt_handlers=handlers)
        except OSError as exc:
            raise DicomListenError(
                f"the DICOM SCP cannot listen on {self.settings.host}:{self.settings.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        log.info("DICOM storage SCP %s listening on port %d", self.settings.ae_title, self.port)

    async def stop(self) -> None:
        """Stop listening, abort open associations, and wait until the threads are done."""
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(_shutdown, server)
        # Arrivals nobody will take: their associations are gone; answer them anyway.
        while not self.arrivals.empty():
            self.arrivals.get_nowait().answer(OUT_OF_RESOURCES, "gateway stopping")

    # -- in association threads ------------------------------------------------------------

    def _on_open(self, event: Any) -> None:
        """Read the connection through a :class:`_ReceivingSocket` (the instance-size bound,
        and TCP_QUICKACK when set and available)."""
        transport = event.assoc.dul.socket
        sock = transport.socket
        if isinstance(sock, socket.socket) and not hasattr(sock, "pending"):  # not TLS
            quick = self.settings.tcp_quickack and hasattr(socket, "TCP_QUICKACK")
            name = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
            transport.socket = _ReceivingSocket(sock, self.settings.max_instance_bytes, quick, name)

    def _on_store(self, event: Any) -> Dataset:
        calling = event.assoc.requestor.ae_title
        receiving = getattr(event.assoc.dul.socket, "socket", None)
        if isinstance(receiving, _ReceivingSocket):
            receiving.received = 0  # the instance is whole: the next one has its own budget
        try:
            part10 = event.encoded_dataset(include_meta=True)
            request = event.request
            sop_class = str(request.AffectedSOPClassUID)
            sop_instance = str(request.AffectedSOPInstanceUID)
        except Exception as exc:  # a request pynetdicom could not give us whole
            log.warning("C-STORE from %s unreadable: %s", calling, exc)
            return _status(CANNOT_UNDERSTAND, "cannot read the request")
        return _status(*self.deliver(part10, sop_class, sop_instance, calling))

    def deliver(
        self, part10: bytes, sop_class: str | None, sop_instance: str | None, source: str
    ) -> tuple[int, str]:
        """Check one instance and hand it to asyncio; the (status, error comment) to answer.
        Called in a thread other than the event loop's (an association's: this SCP's, or a
        retrieval's, see devices.dicom.pacs); blocks until the consumer answered."""
        verdict = check_instance(part10, sop_class_uid=sop_class, sop_instance_uid=sop_instance)
        if isinstance(verdict, Refused):
            self.refused += 1
            log.warning(
                "instance from %s refused (0x%04X): %s", source, verdict.status, verdict.reason
            )
            return verdict.status, verdict.comment
        arrival = Arrival(part10, verdict, source)
        try:
            self._loop.call_soon_threadsafe(self._offer, arrival)
        except RuntimeError:  # the loop is closed: the gateway is going away
            return OUT_OF_RESOURCES, "gateway stopping"
        try:
            status, comment = arrival._reply.result(timeout=self.settings.answer_timeout_s)
        except concurrent.futures.TimeoutError:
            arrival.answer(OUT_OF_RESOURCES, "gateway busy: send again")
            status, comment = arrival._reply.result()
        if status == SUCCESS:
            self.accepted += 1
        else:
            self.refused += 1
        return status, comment

    def _offer(self, arrival: Arrival) -> None:
        """On the event loop: queue the arrival, or answer at once when the queue is full."""
        try:
            self.arrivals.put_nowait(arrival)
        except asyncio.QueueFull:
            log.warning(
                "C-STORE from %s refused: %d instances already waiting",
                arrival.calling_ae,
                self.arrivals.qsize(),
            )
            arrival.answer(OUT_OF_RESOURCES, "gateway busy: send again")


def _status(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    if status != SUCCESS and comment:
        ds.ErrorComment = comment[:64]
    return ds


def _shutdown(server: ThreadedAssociationServer) -> None:
    for assoc in list(server.active_associations):
        assoc.abort()
    server.shutdown()


def _on_echo(event: Any) -> int:
    return SUCCESS


def _no_delay(event: Any) -> None:
    sock = event.assoc.dul.socket.socket
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _ReceivingSocket:
    """An accepted socket that counts what it receives towards one instance, and re-arms
    TCP_QUICKACK around every read when ``quickack`` (the kernel drops it by itself).
    pynetdicom reads through ``recv`` and polls through ``fileno``; the rest is delegated.
    Past ``limit`` bytes since :attr:`received` was last reset, ``recv`` reports the
    connection closed: pynetdicom ends the association and drops the partial instance."""

    def __init__(self, sock: socket.socket, limit: int, quickack: bool, name: str) -> None:
        self._sock = sock
        self._limit = limit
        self._quickack = quickack
        self._name = name
        self.received = 0

    def recv(self, size: int) -> bytes:
        if self.received >= self._limit:
            log.warning(
                "association from %s closed: more than %d bytes towards one instance",
                self._name,
                self._limit,
            )
            return b""
        if self._quickack:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = self._sock.recv(min(size, self._limit - self.received))
        if self._quickack:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.received += len(data)
        return data

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _on_rejected(event: Any) -> None:
    log.warning(
        "association from %s (%s) rejected: calling AE title not allowed",
        event.assoc.requestor.ae_title,
        event.assoc.requestor.address,
    )


def _on_aborted(event: Any) -> None:
    log.info("association from %s aborted", event.assoc.requestor.ae_title)
