"""The ``/ws`` endpoint: authenticate with ``hello``, join one consultation, relay within it.

An authenticated socket is in its site's lobby and receives ``consultation`` messages
(:meth:`~signaling.server.hub.Hub.publish`) whether it has joined a room or not. Chat is
stored with the consultation before it is relayed, and replayed in every ``joined``.

The rule for what a room relays: chat, offers, answers, candidates and alarm messages only
while the consultation is *active*; before it is accepted and after it ends each is refused
with ``not_active`` and nothing is kept. Before acceptance the consulting site has not taken
the patient on and sees nothing of them; the requesting site's staff talk on their own
ward. The README's protocol section says the same. An
``alarm-ack`` (a doctor of the room) or ``alarm-limits`` (a doctor of the consulting site)
is audited and relayed to the room's gateways only; anyone else gets ``not_permitted``.

Per connection there are two tasks, both owned here: the reader (this handler) and a writer
draining the connection's bounded outbox. Every protocol fault gets an ``error`` reply and is
counted; past ``ws_max_errors`` the socket is closed with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runtime.ratelimit import TokenBucket
from signaling.auth import Principal
from signaling.consultation_fsm import FINAL_STATES
from signaling.errors import (
    AuthError,
    ConsultationNotFound,
    NotActive,
    ProtocolError,
    SessionEnded,
    TokenExpired,
)
from signaling.schema import (
    PROTOCOL_VERSION,
    AlarmAck,
    AlarmLimitsChange,
    Answer,
    Candidate,
    Chat,
    ClientMessage,
    CloseCode,
    ConsultationState,
    Error,
    ErrorCode,
    Hello,
    ImagingView,
    Join,
    Joined,
    Leave,
    Left,
    Offer,
    Ping,
    Pong,
    PrincipalKind,
    Role,
    Welcome,
    encode,
    parse_client_message,
    relay_text,
)
from signaling.server.hub import CloseRequest, Connection, HubUnavailable
from signaling.server.services import Services, services_of, source_addr
from signaling.storage import consultations as store
from signaling.storage import record
from signaling.storage.accounts import touch_session
from signaling.storage.audit import DetailValue

log = logging.getLogger(__name__)


#: Seconds a send may still wait once the connection is to be closed (a send queue that
#: overflowed, a logout): a client that stopped reading is then cut off, without the close
#: frame it would never read, instead of holding its socket until TCP gives up.
CLOSE_GRACE_S = 2.0
#: Refused sockets from one address audited one by one; the rest are counted, and written as
#: one row when one of that address's sockets closes.
REFUSALS_AUDITED = 5
#: Protocol faults of one connection audited one by one (``ws.protocol_error``); the rest are
#: counted by code and written as one row when the connection ends.
FAULTS_AUDITED = 5
#: Faults whose refusal is audited under the action refused (a join, an alarm message).
_AUDITED_BY_ACTION = frozenset({ErrorCode.NOT_FOUND, ErrorCode.NOT_MEMBER, ErrorCode.NOT_PERMITTED})
#: Where :class:`TransportAbort` leaves the function that cuts a connection off.
ABORT_SCOPE_KEY = "telemed.abort"
#: A socket's activity is noted for its session at most this often (seconds), and at most a
#: twentieth of the session's idle timeout: the timeout is minutes, the record is written
#: every few seconds, and noting it cost a datetime on every relayed message.
ACTIVITY_MARK_S = 1.0


class TransportAbort:
    """ASGI middleware that puts ``scope[ABORT_SCOPE_KEY]``, a function dropping the TCP
    connection at once (unsent data discarded), into each WebSocket's scope.

    ASGI has no such event: ``websocket.close`` waits, like every send, for the client to
    read. Under uvicorn the server's ``send`` is a method of the connection's protocol, which
    holds the asyncio transport; this middleware must be outside any that wraps ``send``.
    Under a server where that is not so, no function is set and a client that stopped
    reading keeps its socket until the server's keepalive ends it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if isinstance(transport, asyncio.Transport):
                scope = {**scope, ABORT_SCOPE_KEY: transport.abort}
        await self.app(scope, receive, send)


class _Closing(Exception):
    """The connection is to be closed after what is queued has been sent."""


class WsSession:
    """One WebSocket connection from accept to close."""

    def __init__(self, ws: WebSocket, svc: Services) -> None:
        self.ws = ws
        self.svc = svc
        self.addr = source_addr(ws)
        self.errors = 0
        self.conn: Connection | None = None
        self._clock = svc.clock
        self._bucket = TokenBucket(svc.config.ws_rate_per_s, svc.config.ws_burst, svc.clock)
        self._last_activity = self._clock.monotonic()
        #: When activity was last noted for the session (see ACTIVITY_MARK_S).
        self._activity_marked: float | None = None
        # Protocol faults audited so far, and those past FAULTS_AUDITED by code.
        self._faults_seen = 0
        self._faults_unaudited: dict[str, int] = {}
        #: The deadline of the writer's send in progress (None while it waits for work).
        self._send_deadline: asyncio.Timeout | None = None
        #: The writer task, started at the welcome.
        self._writer: asyncio.Task[None] | None = None

    # -- receiving ---------------------------------------------------------------------------

    async def _receive(self, timeout: float | None) -> tuple[ClientMessage, str | bytes] | None:
        """The next valid client message and its text as received; None when the client
        has gone.

        Raises ``TimeoutError`` and :class:`ProtocolError` (which the caller answers).
        """
        async with asyncio.timeout(timeout):  # not wait_for: see devices/reader.py
            message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if len(data) > self.svc.config.ws_max_message_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"message of {len(data)} bytes exceeds {self.svc.config.ws_max_message_bytes}",
            )
        if not self._bucket.take():
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many messages; slow down")
        return parse_client_message(data, self.svc.config.ws_max_json_depth), data

    async def _fault(self, exc: ProtocolError) -> None:
        """Answer a protocol fault, audit it (the first few one by one, the rest counted for
        one row at close: see :meth:`_audit_faults`); close the socket once there have been
        too many."""
        self.errors += 1
        log.info("ws %s: %s (%d/%d)", self.addr, exc, self.errors, self.svc.config.ws_max_errors)
        if exc.code not in _AUDITED_BY_ACTION:
            self._faults_seen += 1
            if self._faults_seen <= FAULTS_AUDITED:
                await self._record_fault(
                    {"code": str(exc.code), "reason": exc.reason[:200], "ref": exc.ref or ""}
                )
            else:
                self._faults_unaudited[str(exc.code)] = (
                    self._faults_unaudited.get(str(exc.code), 0) + 1
                )
        await self._send(exc.to_message())
        if self.errors >= self.svc.config.ws_max_errors:
            await self._close(CloseCode.POLICY_VIOLATION, "too many protocol errors")
            raise _Closing

    async def _record_fault(self, detail: dict[str, DetailValue]) -> None:
        conn = self.conn
        await self.svc.record(
            "ws.protocol_error",
            conn.principal if conn else None,
            self.addr,
            consultation_id=conn.consultation_id if conn else None,
            outcome="denied",
            detail={"peer": conn.peer_id if conn else "", **detail},
        )

    async def _audit_faults(self) -> None:
        """At close: one row counting the faults not audited one by one, by code."""
        if self._faults_unaudited:
            codes = ",".join(f"{c}:{n}" for c, n in sorted(self._faults_unaudited.items()))
            await self._record_fault(
                {"suppressed": sum(self._faults_unaudited.values()), "codes": codes}
            )
            self._faults_unaudited.clear()

    async def _send(self, message: Welcome | Error | Pong | Joined | Left | Chat) -> None:
        if self.conn is None:  # before hello there is no writer yet
            await self.ws.send_text(encode(message))
        else:
            self.conn.send(message)

    async def _close(self, code: CloseCode, reason: str) -> None:
        if self.conn is None:
            await self.ws.close(code, reason)
        else:
            self.conn.request_close(code, reason)

    # -- life cycle --------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        host = self.ws.client.host if self.ws.client else "unknown"
        try:
            admission = await self.svc.hub.open_socket(host, self.svc.config.ws_max_per_address)
        except HubUnavailable:
            await self.ws.close(CloseCode.TRY_AGAIN_LATER, "the server cannot take sockets now")
            return
        refused = admission.refused
        if refused:
            limit = self.svc.config.ws_max_per_address
            await self.ws.close(
                CloseCode.TOO_MANY_CONNECTIONS, f"too many connections from this address ({limit})"
            )
            if refused <= REFUSALS_AUDITED:
                await self.svc.record(
                    "ws.connect",
                    None,
                    self.addr,
                    outcome="denied",
                    detail={"why": "too many connections from this address", "limit": limit},
                )
            return
        try:
            await self._run()
        finally:
            await self._audit_faults()
            refused = self.svc.hub.close_socket(host, admission)
            if refused > REFUSALS_AUDITED:
                # The refusals past the first few, in one row: a flood of attempts cannot
                # flood the audit chain.
                await self.svc.record(
                    "ws.connect",
                    None,
                    self.addr,
                    outcome="denied",
                    detail={
                        "why": "too many connections from this address",
                        "suppressed": refused - REFUSALS_AUDITED,
                    },
                )

    async def _run(self) -> None:
        reason = "disconnected"
        try:
            if not await self._authenticate():
                return
            await self._serve()
        except _Closing:
            reason = "closed"
        except HubUnavailable:
            # The shared hub lost its store: this socket cannot be served correctly here.
            reason = "closed"
            why = "the server's hub is unavailable"
            if self.conn is not None:
                self.conn.request_close(CloseCode.TRY_AGAIN_LATER, why)
            else:
                await self.ws.close(CloseCode.TRY_AGAIN_LATER, why)
        except WebSocketDisconnect:
            pass
        finally:
            await self._finish(self._writer, reason)

    async def _finish(self, writer: asyncio.Task[None] | None, reason: str) -> None:
        conn = self.conn
        if conn is not None:
            cid = conn.consultation_id
            self.svc.hub.unregister(conn, "disconnected")
            if cid is not None:
                await self.svc.record(
                    "consultation.leave",
                    conn.principal,
                    self.addr,
                    consultation_id=cid,
                    detail={"reason": "disconnected"},
                )
            await self.svc.record(
                "ws.disconnect", conn.principal, self.addr, detail={"how": reason}
            )
        if writer is not None:
            if reason == "closed":
                # Let the writer flush the error and the close frame, but not forever.
                await asyncio.wait([writer], timeout=5.0)
            writer.cancel()
            await asyncio.wait([writer])

    async def _write(self, conn: Connection) -> None:
        try:
            while True:
                item = await conn.outbox.get()
                # No deadline while the client keeps up: a send waits for its socket to drain.
                # Once a close is requested (see _hurry), a send still waiting gets
                # CLOSE_GRACE_S: a client that stopped reading never takes the close frame.
                async with asyncio.timeout(None) as deadline:
                    self._send_deadline = deadline
                    try:
                        if conn.closing:
                            self._hurry()
                        if isinstance(item, CloseRequest):
                            if self.ws.application_state is WebSocketState.CONNECTED:
                                await self.ws.close(item.code, item.reason)
                            return
                        await self.ws.send_text(item)
                    finally:
                        self._send_deadline = None
        except TimeoutError:
            log.warning(
                "ws %s: peer %s stopped reading; cutting the connection", self.addr, conn.peer_id
            )
            abort = self.ws.scope.get(ABORT_SCOPE_KEY)
            if callable(abort):
                abort()
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            # The client went away mid-send; the reader sees the disconnect and cleans up.
            log.debug("ws %s: writer stopped: %r", self.addr, exc)

    def _hurry(self) -> None:
        """A close was requested: what the writer is waiting to send now gets a deadline."""
        deadline = self._send_deadline
        if deadline is not None and deadline.when() is None:
            deadline.reschedule(asyncio.get_running_loop().time() + CLOSE_GRACE_S)

    async def _authenticate(self) -> bool:
        """Wait for a valid ``hello``; on success ``self.conn`` is set."""
        deadline = self._clock.monotonic() + self.svc.config.ws_hello_timeout_s
        while True:
            try:
                received = await self._receive(max(0.0, deadline - self._clock.monotonic()))
            except TimeoutError:
                await self._close(CloseCode.UNAUTHORIZED, "no hello in time")
                await self.svc.record(
                    "ws.connect", None, self.addr, outcome="denied", detail={"why": "no hello"}
                )
                return False
            except ProtocolError as exc:
                await self._fault(exc)
                continue
            if received is None:
                return False
            message = received[0]
            if not isinstance(message, Hello):
                await self._send(
                    Error(
                        code=ErrorCode.NOT_AUTHENTICATED,
                        reason="send hello with a token first",
                        ref=message.type,
                    )
                )
                await self._close(CloseCode.UNAUTHORIZED, "not authenticated")
                await self.svc.record(
                    "ws.connect",
                    None,
                    self.addr,
                    outcome="denied",
                    detail={"why": str(ErrorCode.NOT_AUTHENTICATED), "ref": message.type},
                )
                return False
            return await self._hello(message)

    async def _hello(self, hello: Hello) -> bool:
        if hello.v != PROTOCOL_VERSION:
            await self._send(
                Error(
                    code=ErrorCode.UNSUPPORTED_VERSION,
                    reason=f"protocol version {hello.v} unsupported; this server speaks "
                    f"{PROTOCOL_VERSION}",
                    ref="hello",
                )
            )
            await self._close(CloseCode.UNSUPPORTED_VERSION, "unsupported protocol version")
            return False
        try:
            principal = self.svc.tokens.decode(hello.token)
            await self.svc.check_session(principal)
        except AuthError as exc:
            expired = isinstance(exc, SessionEnded | TokenExpired)
            code = ErrorCode.SESSION_EXPIRED if expired else ErrorCode.AUTH_FAILED
            await self.svc.record(
                "ws.connect",
                None,
                self.addr,
                outcome="denied",
                detail={"why": str(code), "reason": str(exc)[:200], "client": hello.client or ""},
            )
            await self._send(Error(code=code, reason=str(exc), ref="hello"))
            await self._close(
                CloseCode.SESSION_EXPIRED if expired else CloseCode.UNAUTHORIZED, str(exc)
            )
            return False
        peer_id = self.svc.hub.new_peer_id()
        conn = Connection(peer_id, principal, self.addr, self.svc.config.ws_send_queue)
        limit = self.svc.config.ws_max_per_account
        if not await self.svc.hub.admit(conn, limit):
            why = f"too many connections for this account ({limit})"
            await self.svc.record(
                "ws.connect",
                principal,
                self.addr,
                outcome="denied",
                detail={"why": "too many connections for this account", "limit": limit},
            )
            await self._send(Error(code=ErrorCode.TOO_MANY_CONNECTIONS, reason=why, ref="hello"))
            await self._close(CloseCode.TOO_MANY_CONNECTIONS, why)
            return False
        self.conn = conn
        self.conn.on_close_requested = self._hurry
        self.conn.instance = hello.instance
        self._writer = asyncio.create_task(self._write(conn), name=f"ws-writer-{self.addr}")
        # Welcomed first, then audited: the welcome waits only for the session check, not
        # behind every other connection's audit append (500 connecting at once queue there).
        # Nothing of this connection is read before the row is written: this reader handles
        # the next message (a join) once it is.
        self.conn.send(
            Welcome(
                peer_id=peer_id,
                kind=principal.kind,
                principal_id=principal.id,
                name=principal.name,
                role=principal.role,
                site=principal.site,
            )
        )
        await self.svc.record(
            "ws.connect", principal, self.addr, detail={"client": hello.client, "peer": peer_id}
        )
        return True

    # -- authenticated ---------------------------------------------------------------------

    def _idle_remaining(self, principal: Principal) -> float | None:
        idle = self.svc.idle_timeout(principal)
        if idle is None:
            return None
        elapsed = self._clock.monotonic() - self._last_activity
        return max(0.0, idle.total_seconds() - elapsed)

    async def _check_session(self, principal: Principal) -> None:
        """Called when the socket has been idle for the timeout: the session may still have
        been active over HTTP; if not, it is ended and the socket closed."""
        try:
            last = await touch_session(
                self.svc.db, principal.session_id, self.svc.idle_timeout(principal), activity=False
            )
        except SessionEnded as exc:
            await self.svc.record("session.idle_logout", principal, self.addr)
            await self._send(
                Error(code=ErrorCode.SESSION_EXPIRED, reason=f"session ended: {exc.reason}")
            )
            await self._close(CloseCode.SESSION_EXPIRED, "session ended")
            raise _Closing from None
        # Activity over HTTP counts too: take the later of the two.
        since = (self._now() - last) / timedelta(seconds=1)
        self._last_activity = max(self._last_activity, self._clock.monotonic() - since)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    async def _serve(self) -> None:
        conn = self.conn
        assert conn is not None
        hub = self.svc.hub
        idle = self.svc.idle_timeout(conn.principal)
        mark_every = min(ACTIVITY_MARK_S, idle.total_seconds() / 20) if idle else ACTIVITY_MARK_S
        while True:
            if hub.backlogged:
                # A shared hub's link to the other processes is behind: this reader waits
                # (backpressure on this client) rather than queue without bound.
                await hub.drained()
            try:
                received = await self._receive(self._idle_remaining(conn.principal))
            except TimeoutError:
                await self._check_session(conn.principal)
                continue
            except ProtocolError as exc:
                await self._fault(exc)
                continue
            if received is None:
                return
            message, text = received
            if not isinstance(message, Ping):
                # Noted in memory now, written to the database in a batch later: the relay
                # path never waits for the database.
                self._last_activity = now = self._clock.monotonic()
                marked = self._activity_marked
                if marked is None or now - marked >= mark_every:
                    self._activity_marked = now
                    self.svc.activity.mark(conn.principal.session_id, self._now())
            try:
                await self._handle(conn, message, text)
            except ProtocolError as exc:
                await self._fault(exc)

    async def _handle(self, conn: Connection, message: ClientMessage, text: str | bytes) -> None:
        match message:
            case Ping(nonce=nonce):
                conn.send(Pong(nonce=nonce))
            case Hello():
                raise ProtocolError(ErrorCode.ALREADY_AUTHENTICATED, "hello was sent already")
            case Join():
                await self._join(conn, message)
            case Leave():
                await self._leave(conn, message)
            case Offer() | Answer() | Candidate():
                self._relay(conn, message, text)
            case Chat():
                await self._chat(conn, message)
            case AlarmAck() | AlarmLimitsChange():
                await self._alarm(conn, message)
            case ImagingView():
                self._imaging_view(conn, message)

    async def _join(self, conn: Connection, join: Join) -> None:
        cid = join.consultation_id
        if conn.consultation_id is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_JOINED, f"already in {conn.consultation_id}; leave first", "join"
            )
        row = await store.get(self.svc.db, cid)
        refusal: ProtocolError | None = None
        if row is None or not store.may_view(conn.principal, row):
            refusal = ProtocolError(ErrorCode.NOT_FOUND, "no such consultation", "join")
        elif not store.may_join(conn.principal, row):
            refusal = ProtocolError(
                ErrorCode.NOT_MEMBER, "not a member of this consultation", "join"
            )
        if refusal is not None or row is None:
            await self.svc.record(
                "consultation.join",
                conn.principal,
                self.addr,
                consultation_id=cid,
                outcome="denied",
            )
            raise refusal or ProtocolError(ErrorCode.NOT_FOUND, "no such consultation", "join")
        info = store.info(row)
        if info.state in FINAL_STATES:
            raise ProtocolError(ErrorCode.NOT_ACTIVE, f"consultation is {info.state}", "join")
        await store.record_member(self.svc.db, cid, conn.principal)
        peers = await self.svc.hub.join_room(conn, info)
        if peers is None:
            raise ProtocolError(ErrorCode.NOT_ACTIVE, "the consultation has ended", "join")
        # The room may change while the database answers: what happens meanwhile is held
        # and follows the joined, which describes the room as it was when conn entered.
        joined: Joined | None = None
        try:
            members = await store.members(
                self.svc.db, cid, {(p.kind, p.principal_id) for p in peers}
            )
            chat = await record.chat_replay(self.svc.db, cid)
            joined = Joined(consultation=info, peers=peers, members=members, chat=chat)
        finally:
            if joined is None:
                self.svc.hub.leave(conn, "left")
            conn.release(joined)
        await self.svc.record("consultation.join", conn.principal, self.addr, consultation_id=cid)

    async def _leave(self, conn: Connection, leave: Leave) -> None:
        if conn.ended_consultation_id == leave.consultation_id and conn.consultation_id is None:
            # The consultation ended under it: the room is gone already; leaving is fine.
            conn.ended_consultation_id = None
            conn.send(Left(consultation_id=leave.consultation_id))
            return
        if conn.consultation_id != leave.consultation_id:
            raise ProtocolError(ErrorCode.NOT_JOINED, "not in that consultation", "leave")
        self.svc.hub.leave(conn, "left")
        conn.send(Left(consultation_id=leave.consultation_id))
        await self.svc.record(
            "consultation.leave", conn.principal, self.addr, consultation_id=leave.consultation_id
        )

    def _relay(
        self, conn: Connection, message: Offer | Answer | Candidate, text: str | bytes
    ) -> None:
        """Forward to peers of the same active consultation only; ``from`` is ours to set.
        What is forwarded is the client's validated text with ``from`` added, not the
        message encoded anew (:func:`~signaling.schema.relay_text`)."""
        self._active_room(conn, message.type)
        outgoing = relay_text(text, message, conn.peer_id)
        if message.to is None:
            for other in self.svc.hub.others(conn):
                other.send_text(outgoing)
            return
        target = self.svc.hub.peer_in_room(conn, message.to)
        if target is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"no peer {message.to} in this consultation", message.type
            )
        target.send_text(outgoing)

    def _active_room(self, conn: Connection, ref: str) -> str:
        """The id of ``conn``'s consultation if it is active; else the refusal to send."""
        cid = conn.consultation_id
        if cid is None:
            if conn.ended_consultation_id is not None:
                raise ProtocolError(ErrorCode.NOT_ACTIVE, "the consultation has ended", ref)
            raise ProtocolError(ErrorCode.NOT_JOINED, "join a consultation first", ref)
        room = self.svc.hub.room(cid)
        if room is None or room.info.state is not ConsultationState.ACTIVE:
            state = room.info.state if room else ConsultationState.CLOSED
            raise ProtocolError(ErrorCode.NOT_ACTIVE, record.not_active_reason(state), ref)
        return cid

    async def _chat(self, conn: Connection, chat: Chat) -> None:
        """Store, then relay to the whole room (the sender too) with the stored ``id``."""
        cid = self._active_room(conn, "chat")
        try:
            stored = await record.add_chat(
                self.svc.db, cid, conn.principal, conn.peer_id, chat.text, self._now()
            )
        except (NotActive, ConsultationNotFound) as exc:
            # Ended by another server process, or between the check above and the insert.
            await self.svc.record(
                "chat.send", conn.principal, self.addr, consultation_id=cid, outcome="denied"
            )
            raise ProtocolError(ErrorCode.NOT_ACTIVE, str(exc), "chat") from None
        # The room as it is now: conn may have left while the database wrote.
        self.svc.hub.to_room(cid, encode(stored))
        await self.svc.record(
            "chat.send",
            conn.principal,
            self.addr,
            consultation_id=cid,
            detail={"chars": len(chat.text), "message": stored.id},
        )

    async def _alarm(self, conn: Connection, message: AlarmAck | AlarmLimitsChange) -> None:
        """An alarm acknowledgement (a doctor of the room) or a limit change (a doctor of
        the consulting site): audited, and relayed to the room's gateways with ``from`` and
        ``by`` set. The gateway owns the alarms: what it makes of it reaches every viewer
        on the events channel, and the server's record through its upload."""
        cid = self._active_room(conn, message.type)
        principal = conn.principal
        room = self.svc.hub.room(cid)
        assert room is not None  # _active_room checked it
        doctor = principal.kind is PrincipalKind.USER and principal.role is Role.DOCTOR
        refusal: tuple[ErrorCode, str] | None = None
        detail: dict[str, DetailValue]
        if isinstance(message, AlarmAck):
            action = "alarm.ack"
            detail = {"alarm": message.alarm_id}
            if not doctor:
                refusal = (ErrorCode.NOT_PERMITTED, "only a doctor acknowledges an alarm")
        else:
            action = "alarm.limits"
            limits = [limit.model_dump(exclude_none=True) for limit in message.limits]
            detail = {"limits": json.dumps(limits, separators=(",", ":"))}
            if not doctor or principal.site != room.info.consulting_site:
                refusal = (
                    ErrorCode.NOT_PERMITTED,
                    "only a doctor of the consulting site changes alarm limits",
                )
        gateways = [c for c in self.svc.hub.others(conn) if c.kind is PrincipalKind.GATEWAY]
        if refusal is None and not gateways:
            refusal = (ErrorCode.UNKNOWN_PEER, "no bedside gateway is in this consultation")
        if refusal is not None:
            await self.svc.record(
                action, principal, self.addr, consultation_id=cid, outcome="denied", detail=detail
            )
            raise ProtocolError(refusal[0], refusal[1], message.type)
        # Audited before it is relayed: whoever sees the gateway act on it can find the row.
        await self.svc.record(action, principal, self.addr, consultation_id=cid, detail=detail)
        outgoing = encode(message.model_copy(update={"sender": conn.peer_id, "by": principal.name}))
        for gateway in gateways:
            gateway.send_text(outgoing)

    def _imaging_view(self, conn: Connection, message: ImagingView) -> None:
        """What a clinician looks at (image, frame, window, pointer): relayed to the room's
        other clinicians with ``from`` set; a gateway has no screen to share it with."""
        self._active_room(conn, message.type)
        if not conn.principal.is_clinician or conn.principal.kind is not PrincipalKind.USER:
            raise ProtocolError(
                ErrorCode.NOT_PERMITTED, "only a clinician shares what they look at", message.type
            )
        outgoing = encode(message.model_copy(update={"sender": conn.peer_id}))
        for other in self.svc.hub.others(conn):
            if other.kind is PrincipalKind.USER:
                other.send_text(outgoing)


async def websocket_endpoint(ws: WebSocket) -> None:
    """Signaling socket. Protocol: :mod:`signaling.schema`."""
    await WsSession(ws, services_of(ws)).run()
