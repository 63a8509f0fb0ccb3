"""Refusals as audit events, summarised under a flood.

Every refusal (a login refused by the rate limit, a forged or expired token, a route the
principal may not use, a WebSocket protocol error) is an audit event with who, from where
and why (``outcome`` ``denied``, ``detail.reason``). An attack makes refusals by the
thousand, and each audit row costs a write to the one hash chain, so per (source address,
action) and window of ``window_s`` seconds only the first ``rows_per_window`` are written
as rows of their own. The next is written as a notice (``detail.suppressing``: true); the
rest are counted, and their number written as one summary row (``detail.summary``: true,
``suppressed``, ``window_s``, the last ``reason``) when the window ends: at the next
refusal of any key after that, at :meth:`RefusalAudit.flush`, or when the key is pushed out
of the bounded table. Every refusal is thus in the chain, as a row or in a count.

The source address is the host without the port (an attacker's connections differ only in
the port). The table of keys holds at most ``max_keys`` (oldest window first out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from runtime.tasks import cancel_and_wait, spawn
from signaling.auth import Principal
from signaling.errors import AuthError
from signaling.storage.audit import AuditEvent, AuditLog, DetailValue

log = logging.getLogger(__name__)


def address_of(source_addr: str) -> str:
    """``host:port`` (as :func:`signaling.server.services.source_addr` makes it) to host."""
    host, sep, port = source_addr.rpartition(":")
    return host if sep and port.isdigit() else source_addr


@dataclass
class _Window:
    started: float
    written: int = 0
    suppressed: int = 0
    reason: str = ""


class RefusalAudit:
    """Appends refusal events to ``audit`` at a bounded rate. One per process (the limit is
    per process: N processes write at most N times as many rows). ``clock`` is monotonic
    seconds; tests inject one they drive."""

    def __init__(
        self,
        audit: AuditLog,
        rows_per_window: int = 10,
        window_s: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rows_per_window < 1:
            raise ValueError("rows_per_window must be at least 1")
        self._audit = audit
        self.rows_per_window = rows_per_window
        self.window_s = window_s
        self._max_keys = max_keys
        self._now = clock
        # Oldest window first: a window restarts at the end of the order.
        self._buckets: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    async def refused(
        self,
        action: str,
        source_addr: str,
        reason: str,
        *,
        principal: Principal | None = None,
        account: str = "",
        consultation_id: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> bool:
        """Audit one refusal of ``action`` for ``reason``; ``principal`` is who was refused
        when known (a valid token's), else ``account`` names whom an anonymous actor claimed
        to be. True when it got a row of its own (False: counted in a summary)."""
        now = self._now()
        key = (address_of(source_addr), action)
        # Decide synchronously (no await in between): concurrent refusals count exactly.
        due = self._take_ended(now)
        window = self._buckets.get(key)
        if window is None:
            window = self._buckets[key] = _Window(now)
            due.extend(self._evict())
        window.reason = reason
        own_row = window.written < self.rows_per_window
        notice = not own_row and window.suppressed == 0
        if own_row:
            window.written += 1
        else:
            window.suppressed += 1
        for ended_key, ended in due:
            await self._summary(ended_key, ended)
        if own_row or notice:
            extra: dict[str, DetailValue] = {"reason": reason[:200], **(detail or {})}
            if notice:
                extra["suppressing"] = True
            await self._audit.append(
                AuditEvent(
                    action=action,
                    actor_kind=str(principal.kind) if principal else "anonymous",
                    actor_id=principal.id if principal else None,
                    actor_name=principal.name if principal else account[:128],
                    role=str(principal.role) if principal else "",
                    site=principal.site if principal else "",
                    source_addr=source_addr[:64],
                    consultation_id=consultation_id,
                    outcome="denied",
                    detail=extra,
                )
            )
        return own_row

    async def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of ended windows (``everything``: of all windows, as at
        shutdown); returns how many summary rows were written."""
        due = self._take_ended(self._now(), everything=everything)
        written = 0
        for key, window in due:
            written += await self._summary(key, window)
        return written

    def start(self, interval_s: float | None = None) -> None:
        """Write the summaries of ended windows every ``interval_s`` (default: a quarter of
        the window), so that the count of a flood that stopped is not left waiting for the
        next refusal. Owned by the app's lifespan, which calls :meth:`stop`."""
        if self._task is None:
            self._task = spawn(self._run(interval_s or self.window_s / 4), "refusal-summaries")

    async def stop(self) -> None:
        """Stop the task and write every pending summary."""
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait([task])
        await self.flush(everything=True)

    async def _run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except Exception:  # an outage must not end the summaries for good
                log.exception("writing refusal summaries failed; will try again")

    def _take_ended(
        self, now: float, everything: bool = False
    ) -> list[tuple[tuple[str, str], _Window]]:
        due = []
        while self._buckets:
            key, window = next(iter(self._buckets.items()))
            if not everything and now - window.started < self.window_s:
                break
            del self._buckets[key]
            due.append((key, window))
        return due

    def _evict(self) -> list[tuple[tuple[str, str], _Window]]:
        due = []
        while len(self._buckets) > self._max_keys:
            due.append(self._buckets.popitem(last=False))
        return due

    async def _summary(self, key: tuple[str, str], window: _Window) -> int:
        if window.suppressed == 0:
            return 0
        address, action = key
        await self._audit.append(
            AuditEvent(
                action=action,
                actor_kind="anonymous",
                actor_id=None,
                actor_name="",
                role="",
                site="",
                source_addr=address[:64],
                outcome="denied",
                detail={
                    "summary": True,
                    "suppressed": window.suppressed,
                    "window_s": self.window_s,
                    "reason": window.reason[:200],
                },
            )
        )
        return 1


_HTTP_ACTIONS = {401: "http.unauthorized", 403: "http.forbidden"}


async def audit_http_refusal(conn: HTTPConnection, status_code: int, reason: str) -> None:
    """Audit an API request refused with 401 or 403 (other statuses are ignored), unless its
    route audited the refusal itself (``request.state.refusal_audited``). Called by the
    app's ``HTTPException`` handler, before it answers. A 403's actor is named from its
    (valid) token; a 401's is anonymous. Never raises: an audit that fails is logged, and
    the refusal is answered all the same."""
    action = _HTTP_ACTIONS.get(status_code)
    if action is None or getattr(conn.state, "refusal_audited", False):
        return
    from signaling.server.services import services_of, source_addr

    try:
        svc = services_of(conn)
        principal = None
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if status_code == 403 and scheme.lower() == "bearer":
            try:
                principal = svc.tokens.decode(token.strip())
            except AuthError:
                principal = None
        await svc.refusals.refused(
            action,
            source_addr(conn),
            reason,
            principal=principal,
            detail={"method": conn.scope.get("method", "GET"), "path": conn.url.path[:200]}
            | {"status": status_code},
        )
    except Exception:  # the refusal must still be answered
        log.exception("auditing a refused request failed")
