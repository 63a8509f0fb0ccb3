"""What the routes share: built once in the app's lifespan, reached through ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from starlette.requests import HTTPConnection

from runtime.clock import SYSTEM_CLOCK, Clock
from signaling.auth import (
    LoginAttempts,
    LoginLimiter,
    LoginLimits,
    Principal,
    SecretHasher,
    TokenService,
)
from signaling.config import ServerConfig
from signaling.consultation_fsm import FINAL_STATES
from signaling.errors import SessionEnded
from signaling.schema import ConsultationSummary, PrincipalKind
from signaling.server.activity import ActivityRecorder
from signaling.server.hub import Hub
from signaling.server.read_audit import ReadAudit
from signaling.server.refusals import RefusalAudit
from signaling.server.session_watch import SessionWatcher
from signaling.storage import consultations as store
from signaling.storage.accounts import SessionChecks, touch_session
from signaling.storage.audit import AuditEvent, AuditLog, DetailValue
from signaling.storage.database import Database
from signaling.storage.login_attempts import DatabaseLoginAttempts
from signaling.storage.models import ConsultationRow, utcnow


@dataclass
class Services:
    config: ServerConfig
    db: Database
    tokens: TokenService
    #: Unused: the in-memory limiter of before (the login rate limit is ``attempts``).
    limiter: LoginLimiter
    audit: AuditLog
    hub: Hub
    activity: ActivityRecorder
    #: Hashes and checks passwords and gateway keys at the configured cost.
    hasher: SecretHasher
    #: Monotonic time for timeouts and rate limits, wall time for stamps (tests inject one).
    clock: Clock = SYSTEM_CLOCK
    #: The login rate limit shared by every server process (default: in the database).
    login_attempts: LoginAttempts | None = None
    #: Audits refusals at a bounded rate (default: on ``audit``, on ``clock``).
    refusal_audit: RefusalAudit | None = None
    #: Audits repeated reads of one image (a cine's rendered frames) as a row and a count.
    read_audit: ReadAudit | None = None
    #: Closes this process's sockets of sessions ended by another process (default: looks
    #: every ``activity_flush_s``).
    session_watch: SessionWatcher | None = None
    #: Checks the session of each hello, many in one query (default: on ``db``).
    session_checks: SessionChecks | None = None

    def __post_init__(self) -> None:
        if self.session_checks is None:
            self.session_checks = SessionChecks(self.db)
        if self.login_attempts is None:
            limits = LoginLimits.of(self.config.login_max_failures, self.config.login_window_s)
            self.login_attempts = DatabaseLoginAttempts(self.db, limits)
        if self.refusal_audit is None:
            self.refusal_audit = RefusalAudit(self.audit, clock=self.clock.monotonic)
        if self.read_audit is None:
            self.read_audit = ReadAudit(self.audit, clock=self.clock.monotonic)
        if self.session_watch is None:
            self.session_watch = SessionWatcher(self.db, self.hub, self.config.activity_flush_s)

    def start(self) -> None:
        """Start the tasks the services own: the session watch and the refusal summaries.
        Called by the app's lifespan once the services are built; starting again does
        nothing. :meth:`stop` must follow."""
        assert self.session_watch is not None  # set by __post_init__
        self.session_watch.start()
        self.refusals.start()
        self.reads.start()

    async def stop(self) -> None:
        """Stop those tasks (pending refusal summaries are written)."""
        assert self.session_watch is not None  # set by __post_init__
        await self.session_watch.stop()
        await self.refusals.stop()
        await self.reads.stop()

    @property
    def reads(self) -> ReadAudit:
        assert self.read_audit is not None  # set by __post_init__
        return self.read_audit

    @property
    def refusals(self) -> RefusalAudit:
        assert self.refusal_audit is not None  # set by __post_init__
        return self.refusal_audit

    async def refused(
        self,
        action: str,
        source_addr: str,
        reason: str,
        *,
        principal: Principal | None = None,
        account: str = "",
        consultation_id: str | None = None,
        detail: dict[str, DetailValue] | None = None,
    ) -> bool:
        """Audit a refusal (``outcome`` ``denied``, ``detail.reason``), summarised under a
        flood: see :class:`signaling.server.refusals.RefusalAudit`. For every refusal that
        is not an ordinary failed attempt of a user (those: :meth:`record`)."""
        return await self.refusals.refused(
            action,
            source_addr,
            reason,
            principal=principal,
            account=account,
            consultation_id=consultation_id,
            detail=detail,
        )

    @property
    def attempts(self) -> LoginAttempts:
        assert self.login_attempts is not None  # set by __post_init__
        return self.login_attempts

    def idle_timeout(self, principal: Principal) -> timedelta | None:
        """Clinicians are logged out when idle; a gateway is a machine and stays connected."""
        if principal.kind is PrincipalKind.GATEWAY:
            return None
        return timedelta(seconds=self.config.inactivity_timeout_s)

    async def check_session(self, principal: Principal) -> None:
        """Raise :class:`SessionEnded` unless ``principal``'s session is open and has not been
        idle past its timeout (an idle one is then ended, as :func:`touch_session` does).
        Read with the checks of other sockets saying hello at the same time."""
        assert self.session_checks is not None  # set by __post_init__
        state = await self.session_checks.state(principal.session_id)
        if state is None:
            raise SessionEnded("unknown session")
        if state.end_reason is not None:
            raise SessionEnded(state.end_reason)
        idle = self.idle_timeout(principal)
        if idle is not None and utcnow() - state.last_active_at > idle:
            await touch_session(self.db, principal.session_id, idle, activity=False)

    def now(self) -> datetime:
        """Wall time on the injected clock, for stamps (chat, snapshots, durations)."""
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def consultation_changed(self, row: ConsultationRow) -> None:
        """``row`` was created or changed state: its room is told (``consultation-state``;
        a final state empties it) and every clinician socket of its two sites gets a
        ``consultation`` message rendered for its principal."""
        info = store.info(row)
        self.hub.state_changed(info, final=info.state in FINAL_STATES)

        def render(principal: Principal) -> ConsultationSummary | None:
            return store.describe(principal, row) if store.may_view(principal, row) else None

        self.hub.publish(frozenset({row.requesting_site, row.consulting_site}), render, row.id)

    async def record(
        self,
        action: str,
        principal: Principal | None,
        source_addr: str,
        *,
        consultation_id: str | None = None,
        outcome: str = "ok",
        detail: dict[str, DetailValue] | None = None,
        account: str = "",
    ) -> None:
        """Append one audit event. ``account`` names an unauthenticated actor (failed login)."""
        await self.audit.append(
            AuditEvent(
                action=action,
                actor_kind=str(principal.kind) if principal else "anonymous",
                actor_id=principal.id if principal else None,
                actor_name=principal.name if principal else account[:128],
                role=str(principal.role) if principal else "",
                site=principal.site if principal else "",
                source_addr=source_addr,
                consultation_id=consultation_id,
                outcome=outcome,
                detail=detail or {},
            )
        )


def services_of(conn: HTTPConnection) -> Services:
    return cast(Services, conn.app.state.services)


def source_addr(conn: HTTPConnection) -> str:
    client = conn.client
    return f"{client.host}:{client.port}" if client else "unknown"
