"""The async Python signaling client, used by device gateways, benchmarks and tests.

    async with SignalingClient(url, UserCredentials("doctor.wonju", "...")) as client:
        joined = await client.join(consultation_id)
        await client.send(Offer(to=peer_id, sdp=...))
        message = await client.recv()

The client owns one background task (the supervisor) that keeps a WebSocket open: it logs in
over HTTP, authenticates with ``hello``, sends a ``ping`` every ``heartbeat_interval_s`` and
treats a missing ``pong`` as a dead link. After any loss it reconnects with exponential backoff
and full jitter, logs in again if the token was refused, and re-joins the consultation it was
in. Each (re)connection is announced by a ``welcome`` in :meth:`recv`, followed by a fresh
``joined`` when it re-joined: the application renegotiates WebRTC from there.

The supervisor survives every failure but its own cancellation (a refused token, the server
unreachable while logging in again, a malformed message): each is logged, and the next
attempt follows the backoff. Only :meth:`close` ends it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import random
import secrets
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import websockets
from pydantic import BaseModel, TypeAdapter, ValidationError
from websockets.asyncio.client import ClientConnection

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.tasks import spawn
from signaling.api_models import (
    ConsultationOut,
    ConsultationRequest,
    GatewayLogin,
    IceServersOut,
    PatientIn,
    SnapshotOut,
    SummaryOut,
    TokenOut,
    TrendsOut,
    UserLogin,
)
from signaling.errors import ProtocolError, SignalingError, UntrustedServer
from signaling.schema import (
    PROTOCOL_VERSION,
    Chat,
    ClientMessage,
    ConsultationAction,
    ConsultationState,
    Error,
    ErrorCode,
    Hello,
    Join,
    Joined,
    Leave,
    Ping,
    Pong,
    ServerMessage,
    Welcome,
    encode,
    parse_server_message,
)

__all__ = [
    "ClientOptions",
    "Credentials",
    "GatewayCredentials",
    "SignalingClient",
    "SignalingError",
    "UntrustedServer",
    "UserCredentials",
]

M = TypeVar("M", bound=BaseModel)
_CONSULTATIONS: TypeAdapter[list[ConsultationOut]] = TypeAdapter(list[ConsultationOut])
_CHAT: TypeAdapter[list[Chat]] = TypeAdapter(list[Chat])
_SNAPSHOTS: TypeAdapter[list[SnapshotOut]] = TypeAdapter(list[SnapshotOut])

log = logging.getLogger(__name__)


#: How long an idle connection to the server is kept for the next request: well under the
#: server's own idle limit (uvicorn's 5 s), which httpx's default equals. At equal limits the
#: server closes a connection just as a request goes out on it, and that request fails with
#: a ReadError (a POST is not retried): seen on a STOW-RS sent 5 s after the one before.
KEEPALIVE_S = 2.0


@dataclass(frozen=True)
class UserCredentials:
    username: str
    password: str


@dataclass(frozen=True)
class GatewayCredentials:
    name: str
    key: str


Credentials = UserCredentials | GatewayCredentials


@dataclass(frozen=True)
class ClientOptions:
    heartbeat_interval_s: float = 5.0
    #: No pong for this long and the link is taken as dead.
    heartbeat_timeout_s: float = 10.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 15.0
    connect_timeout_s: float = 10.0
    #: Messages received but not yet taken by :meth:`SignalingClient.recv`. When full, the
    #: reader waits (backpressure) rather than dropping signaling messages.
    inbox_size: int = 1024
    max_message_bytes: int = 1 << 20


class _LinkDead(Exception):
    pass


class SignalingClient:
    """See the module docstring. Not thread-safe: use it from one event loop."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        options: ClientOptions | None = None,
        client_name: str = "telemed-python",
        clock: Clock = SYSTEM_CLOCK,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """``clock``: its monotonic time drives the heartbeat (tests may inject one).
        ``ca_file``: for an ``https://`` server, trust the certificates in this PEM file (a
        self-signed server certificate, or a private CA) instead of the system's; the
        server's certificate and name are verified either way."""
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.options = options or ClientOptions()
        self.client_name = client_name
        #: This client's id for itself, the same on every connection (``hello``'s
        #: ``instance``): peers tell a reconnection of ours from somebody new by it.
        self.instance = secrets.token_urlsafe(12)
        self._clock = clock
        #: Verifies the server over HTTPS and WSS (unused over plain HTTP).
        self._tls = _system_tls() if ca_file is None else ssl.create_default_context(cafile=ca_file)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=30.0,
            verify=self._tls,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        )
        self._token: str | None = None
        self._ws: ClientConnection | None = None
        self._inbox: asyncio.Queue[ServerMessage] = asyncio.Queue(self.options.inbox_size)
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._consultation_id: str | None = None
        self._pending_join: asyncio.Future[Joined] | None = None
        self._nonces = itertools.count(1)
        self._last_pong = 0.0
        self._closed = False
        self.welcome: Welcome | None = None
        #: How many times a connection was (re)established; 1 after the first.
        self.connections = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SignalingClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self, wait: bool = True) -> None:
        """Log in and start the supervisor; with ``wait``, return once connected.

        Raises :class:`SignalingError` when the credentials are refused, and
        ``httpx.HTTPError`` when the server cannot be reached for the first login.
        """
        if self._token is None:
            await self.login()
        self._supervisor = spawn(self._supervise(), "signaling-supervisor")
        if wait:
            await self.wait_connected(self.options.connect_timeout_s)

    async def close(self) -> None:
        """Stop reconnecting, close the socket, and await the supervisor."""
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait([self._supervisor])
        await self._http.aclose()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once connected; raises ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    @property
    def peer_id(self) -> str | None:
        return self.welcome.peer_id if self.welcome else None

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    # -- HTTP --------------------------------------------------------------------------------

    async def login(self) -> TokenOut:
        """Log in with the credentials. Raises :class:`SignalingError` when they are refused,
        ``httpx.HTTPError`` when the server cannot be reached."""
        creds = self.credentials
        body: BaseModel
        if isinstance(creds, UserCredentials):
            path, body = (
                "/api/auth/login",
                UserLogin(username=creds.username, password=creds.password),
            )
        else:
            path, body = "/api/auth/gateway", GatewayLogin(name=creds.name, key=creds.key)
        try:
            response = await self._http.post(path, json=body.model_dump())
        except httpx.ConnectError as exc:
            untrusted = _certificate_error(exc)
            if untrusted is None:
                raise
            raise UntrustedServer(self.base_url, untrusted) from exc
        if response.status_code != 200:
            raise SignalingError(response.status_code, _detail(response))
        token = _parse(TokenOut, response)
        self._token = token.token
        return token

    async def api(self, method: str, path: str, json: Any = None) -> object:
        """An authenticated API call returning the decoded JSON body (None when empty); logs
        in again once if the token was refused. Prefer the typed methods below.

        Raises :class:`SignalingError` for a refusal (``code`` is the HTTP status) and
        ``httpx.HTTPError`` when the server cannot be reached."""
        response = await self._request(method, path, json=json)
        result: object = response.json() if response.content else None
        return result

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """An authenticated request (logging in again once if the token was refused); the
        response when it succeeded, else :class:`SignalingError` with the status."""
        for attempt in range(2):
            if self._token is None:
                await self.login()
            response = await self._http.request(
                method,
                path,
                json=json,
                content=content,
                headers={**(headers or {}), "Authorization": f"Bearer {self._token}"},
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None
                continue
            if response.status_code >= 400:
                raise SignalingError(response.status_code, _detail(response))
            return response
        raise AssertionError("unreachable")

    async def list_consultations(
        self, state: ConsultationState | None = None
    ) -> list[ConsultationOut]:
        """The consultations the caller may see, newest first."""
        path = "/api/consultations" + (f"?state={state}" if state is not None else "")
        return _CONSULTATIONS.validate_python(await self.api("GET", path))

    async def get_consultation(self, consultation_id: str) -> ConsultationOut:
        body = await self.api("GET", f"/api/consultations/{consultation_id}")
        return ConsultationOut.model_validate(body)

    async def request_consultation(
        self,
        consulting_site: str,
        consent_cross_border: bool,
        reason: str = "",
        patient: PatientIn | None = None,
    ) -> ConsultationOut:
        """Ask ``consulting_site`` for a consultation (the caller's site requests), about
        ``patient`` when given."""
        request = ConsultationRequest(
            consulting_site=consulting_site,
            consent_cross_border=consent_cross_border,
            reason=reason,
            patient=patient,
        )
        body = await self.api("POST", "/api/consultations", request.model_dump(mode="json"))
        return ConsultationOut.model_validate(body)

    async def consultation_action(
        self, consultation_id: str, action: ConsultationAction
    ) -> ConsultationOut:
        """Accept, cancel or close a consultation (``join`` happens on the WebSocket)."""
        if action is ConsultationAction.JOIN:
            raise ValueError("join with SignalingClient.join(), not over HTTP")
        body = await self.api("POST", f"/api/consultations/{consultation_id}/{action}")
        return ConsultationOut.model_validate(body)

    async def chat_history(self, consultation_id: str) -> list[Chat]:
        """The consultation's stored chat, oldest first (each with its ``id``)."""
        return _CHAT.validate_python(
            await self.api("GET", f"/api/consultations/{consultation_id}/chat")
        )

    async def consultation_summary(self, consultation_id: str) -> SummaryOut:
        """Duration, participants and how many messages and snapshots were kept."""
        body = await self.api("GET", f"/api/consultations/{consultation_id}/summary")
        return SummaryOut.model_validate(body)

    async def take_snapshot(
        self, consultation_id: str, image: bytes, content_type: str
    ) -> SnapshotOut:
        """Store a bedside still (``image/jpeg`` or ``image/png`` bytes) with an active
        consultation. Raises :class:`SignalingError` with the status and the server's reason
        (413 too large, 415 another type, 422 not a whole image, 409 not active)."""
        response = await self._request(
            "POST",
            f"/api/consultations/{consultation_id}/snapshots",
            content=image,
            headers={"Content-Type": content_type},
        )
        return _parse(SnapshotOut, response)

    async def list_snapshots(self, consultation_id: str) -> list[SnapshotOut]:
        """The consultation's snapshots, oldest first (descriptions, not the bytes)."""
        body = await self.api("GET", f"/api/consultations/{consultation_id}/snapshots")
        return _SNAPSHOTS.validate_python(body)

    async def snapshot(self, consultation_id: str, snapshot_id: int) -> tuple[str, bytes]:
        """One snapshot's content type and bytes."""
        response = await self._request(
            "GET", f"/api/consultations/{consultation_id}/snapshots/{snapshot_id}"
        )
        return response.headers.get("content-type", ""), response.content

    async def trends(self, consultation_id: str, **query: str | int) -> TrendsOut:
        """The consultation's trends (query: ``codes``, ``since``, ``until``, ``step``)."""
        path = f"/api/consultations/{consultation_id}/trends"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return TrendsOut.model_validate(await self.api("GET", path))

    async def export(self, consultation_id: str, format: str, **query: str | int) -> str:
        """The consultation's numerics and alarms as FHIR JSON (``fhir``) or an HL7 v2
        batch (``hl7``); query: ``step``, ``since``, ``until``. Raises
        :class:`SignalingError` with the server's status and reason."""
        text = urllib.parse.urlencode({"format": format, **query})
        response = await self._request("GET", f"/api/consultations/{consultation_id}/export?{text}")
        return response.text

    async def ice_servers(self) -> IceServersOut:
        """STUN/TURN servers for a peer connection, TURN credentials included."""
        return IceServersOut.model_validate(await self.api("GET", "/api/ice-servers"))

    # -- messages ----------------------------------------------------------------------------

    async def send(self, message: ClientMessage) -> None:
        """Send on the live socket. Raises :class:`ConnectionError` while disconnected."""
        ws = self._ws
        if ws is None or not self._connected.is_set():
            raise ConnectionError("signaling is not connected")
        await ws.send(encode(message))

    async def recv(self, timeout: float | None = None) -> ServerMessage:
        """The next message from the server (pongs are consumed by the heartbeat)."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation
        # that races with a message, and a caller's receive loop would then never stop.
        async with asyncio.timeout(timeout):
            return await self._inbox.get()

    async def join(self, consultation_id: str, timeout: float = 10.0) -> Joined:
        """Join a consultation and wait for the server's ``joined``.

        The client re-joins it by itself after every reconnection until :meth:`leave`.
        Raises :class:`SignalingError` when the server refuses.
        """
        loop = asyncio.get_running_loop()
        self._pending_join = loop.create_future()
        self._consultation_id = consultation_id
        try:
            await self.send(Join(consultation_id=consultation_id))
            async with asyncio.timeout(timeout):
                return await self._pending_join
        except BaseException:
            self._consultation_id = None
            raise
        finally:
            self._pending_join = None

    async def leave(self) -> None:
        """Leave the consultation (no re-join after reconnections). Best effort on the wire:
        over a lost link there is nothing to tell, and the server notices the disconnect."""
        cid, self._consultation_id = self._consultation_id, None
        if cid is None or not self.is_connected:
            return
        try:
            await self.send(Leave(consultation_id=cid))
        except (ConnectionError, websockets.ConnectionClosed) as exc:
            log.info("leave %s not sent: %r", cid, exc)

    # -- the supervisor ----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, serve, reconnect: until :meth:`close`. Every failure but cancellation is
        logged and followed by the backoff; none ends the loop."""
        attempt = 0
        while not self._closed:
            try:
                await self._connect_once()
                attempt = 0
            except SignalingError as exc:
                log.warning("signaling refused: %s", exc)
                if exc.code in (ErrorCode.SESSION_EXPIRED, ErrorCode.AUTH_FAILED, 401):
                    self._token = None  # log in again before the next attempt
            except (OSError, TimeoutError, websockets.WebSocketException, _LinkDead) as exc:
                log.info("signaling link lost: %r", exc)
            except httpx.HTTPError as exc:
                log.warning("cannot log in to %s: %r", self.base_url, exc)
            except UntrustedServer as exc:
                log.warning("%s", exc)
            except ProtocolError as exc:
                log.warning("server sent something unreadable: %s", exc)
            except Exception:
                # A fault of ours or of the server's that nobody foresaw: logged in full, and
                # the client keeps trying, for a gateway stranded by it helps nobody.
                log.exception("signaling connection failed")
            finally:
                self._connected.clear()
                self._ws = None
            if self._closed:
                return
            # Full jitter (AWS architecture blog): spreads the reconnection of many gateways
            # after a server restart instead of synchronising them.
            ceiling = min(self.options.backoff_max_s, self.options.backoff_initial_s * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(ceiling / 4, ceiling))

    async def _connect_once(self) -> None:
        """One connection: log in if needed, hello, then serve until the link ends."""
        if self._token is None:
            await self.login()
        ws_url = "ws" + self.base_url.removeprefix("http") + "/ws"
        async with websockets.connect(
            ws_url,
            ssl=self._tls if ws_url.startswith("wss:") else None,
            open_timeout=self.options.connect_timeout_s,
            ping_interval=None,  # the application heartbeat below does this job
            max_size=self.options.max_message_bytes,
            close_timeout=2,
        ) as ws:
            assert self._token is not None
            await ws.send(
                encode(
                    Hello(
                        v=PROTOCOL_VERSION,
                        token=self._token,
                        client=self.client_name,
                        instance=self.instance,
                    )
                )
            )
            async with asyncio.timeout(self.options.connect_timeout_s):
                first = parse_server_message(await ws.recv())
            if isinstance(first, Error):
                raise SignalingError(first.code, first.reason)
            if not isinstance(first, Welcome):
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE, f"expected welcome, got {first.type}"
                )
            self.welcome = first
            self._ws = ws
            self.connections += 1
            if self._consultation_id is not None and self._pending_join is None:
                await ws.send(encode(Join(consultation_id=self._consultation_id)))
            self._last_pong = self._clock.monotonic()
            self._connected.set()
            await self._inbox.put(first)
            beat = spawn(self._heartbeat(ws), "signaling-heartbeat")
            try:
                await self._read(ws)
            finally:
                beat.cancel()
                await asyncio.wait([beat])

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Ping every interval; no pong for the timeout closes the socket (the reader then
        ends, and the supervisor reconnects). A failed send means the same."""
        try:
            while True:
                await asyncio.sleep(self.options.heartbeat_interval_s)
                silent = self._clock.monotonic() - self._last_pong
                if silent > self.options.heartbeat_timeout_s:
                    log.warning("no pong for %.1f s; reconnecting", silent)
                    await ws.close(code=1001, reason="heartbeat timeout")
                    return
                await ws.send(encode(Ping(nonce=next(self._nonces))))
        except (websockets.WebSocketException, OSError) as exc:
            log.info("heartbeat stopped: %r", exc)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            message = parse_server_message(raw)
            if isinstance(message, Pong):
                self._last_pong = self._clock.monotonic()
                continue
            pending = self._pending_join
            if pending is not None and not pending.done():
                if isinstance(message, Joined):
                    pending.set_result(message)
                elif isinstance(message, Error) and message.ref == "join":
                    pending.set_exception(SignalingError(message.code, message.reason))
            elif isinstance(message, Error) and message.ref == "join":
                # A re-join after reconnection was refused (the consultation ended meanwhile).
                self._consultation_id = None
            await self._inbox.put(message)
        raise _LinkDead(f"closed by server: {ws.close_code} {ws.close_reason}")


@functools.cache
def _system_tls() -> ssl.SSLContext:
    """The system's CAs, loaded once for every client of the process (~50 ms each time: a
    benchmark's thousand clients would spend a minute on it; httpx's own default took twice
    that per client)."""
    return ssl.create_default_context()


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under ``exc`` (httpx wraps it twice), if one did."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise SignalingError(response.status_code, f"unexpected response: {exc}") from None


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text
