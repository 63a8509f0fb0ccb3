"""STOW-RS (PS3.18 10.5) from the bedside to the server, one instance per request, and the
forwarder that empties the spool into it.

The request (:func:`encode_stow`): ``multipart/related; type="application/dicom"`` with one
part, the Part-10 file, its headers ``Content-Type: application/dicom`` and
``Content-Digest: sha-256=:<base64>:`` (RFC 9530). The answer: 200 when stored; the server
names the stored file's SHA-256 in ``X-Telemed-Stored-SHA256: <uid>=<hex>,...``, which must
be the one sent.

:class:`Forwarder` (one task, owned by the gateway): the spool's oldest instance is sent;
stored with the same hash, it is removed. The server unreachable (no answer, a 5xx): the
instance stays, and is sent again after a backoff (1 s doubling to 30 s); the first failure
of an outage is logged, and the return. Refused for good (a 4xx, a failure in the answer,
a hash that is not the one sent): moved aside in the spool (``refused/``) and logged; the
next instance goes on. The task survives every failure but its own cancellation.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from devices.dicom.spool import Spool, Spooled

log = logging.getLogger(__name__)


class StowUnreachable(Exception):
    """The server could not be asked, or answered 5xx: try again later."""


class StowRefused(Exception):
    """The server refused the request for good (a 4xx): ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class StowAnswer:
    status: int
    #: SOP Instance UID -> the stored file's SHA-256 (hex), from X-Telemed-Stored-SHA256.
    stored: dict[str, str] = field(default_factory=dict)


#: Sends one STOW-RS request: (consultation id, content type, body) -> the answer.
#: Raises StowRefused or StowUnreachable.
StowSend = Callable[[str, str, bytes], Awaitable[StowAnswer]]


def content_digest(part10: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(part10).digest()).decode() + ":"


def encode_stow(part10: bytes) -> tuple[str, bytes]:
    """The content type and body of a STOW-RS request carrying one instance."""
    boundary = "telemed-" + secrets.token_hex(12)
    head = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n"
        f"Content-Digest: {content_digest(part10)}\r\n\r\n"
    ).encode()
    body = head + part10 + f"\r\n--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


def parse_stored_header(value: str | None) -> dict[str, str]:
    """``<uid>=<hex>,...`` -> {uid: hex}; malformed items are skipped."""
    stored: dict[str, str] = {}
    for item in (value or "").split(","):
        uid, sep, digest = item.strip().partition("=")
        if sep and uid and digest:
            stored[uid.strip()] = digest.strip().lower()
    return stored


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        send: StowSend,
        *,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        idle_s: float = 5.0,
    ) -> None:
        self.spool = spool
        self._send = send
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.idle_s = idle_s
        self._wake = asyncio.Event()
        self._failing = False
        self.sent = 0
        self.refused = 0
        self.failures = 0

    def wake(self) -> None:
        """A new instance is in the spool: send it now rather than after the idle wait."""
        self._wake.set()

    async def run(self) -> None:
        delay = self.backoff_s
        while True:
            # Cleared before the spool is looked at, not after it was found empty: an instance
            # spooled (and woken for) between the two would otherwise wait out the idle time.
            self._wake.clear()
            try:
                outcome = await self.step()
            except Exception:  # unforeseen: logged; the spool is tried again later
                log.exception("forwarding a DICOM instance failed")
                outcome = None
            if outcome is None:  # the server is away
                await asyncio.sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            delay = self.backoff_s
            if not outcome:  # the spool is empty: wait for the next instance
                try:
                    async with asyncio.timeout(self.idle_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def step(self) -> bool | None:
        """Send the oldest instance. True: one went (or was set aside); False: the spool is
        empty; None: the server could not take it."""
        item = await asyncio.to_thread(self.spool.oldest)
        if item is None:
            return False
        part10 = await asyncio.to_thread(self.spool.read, item)
        digest = await asyncio.to_thread(lambda: hashlib.sha256(part10).hexdigest())
        content_type, body = encode_stow(part10)
        try:
            answer = await self._send(item.consultation_id, content_type, body)
        except StowUnreachable as exc:
            self.failures += 1
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot send DICOM instances to the server (%s); keeping them (%d waiting)",
                    exc,
                    self.spool.pending,
                )
            return None
        except StowRefused as exc:
            await self._set_aside(item, f"refused by the server: {exc}")
            return True
        if self._failing:
            self._failing = False
            log.warning("the server takes DICOM instances again; sending what waited")
        stored = answer.stored.get(item.sop_instance_uid)
        if answer.status != 200 or stored != digest:
            await self._set_aside(
                item, f"answer {answer.status}, stored sha256 {stored} for sent {digest}"
            )
            return True
        await asyncio.to_thread(self.spool.remove, item)
        self.sent += 1
        log.info(
            "DICOM instance %s sent to consultation %s (%s, sha256 %s)",
            item.sop_instance_uid,
            item.consultation_id,
            "de-identified" if item.deidentified else "with consent, as received",
            digest,
        )
        return True

    async def _set_aside(self, item: Spooled, why: str) -> None:
        target = await asyncio.to_thread(self.spool.set_aside, item)
        self.refused += 1
        log.error(
            "DICOM instance %s not stored (%s); kept in %s", item.sop_instance_uid, why, target
        )
