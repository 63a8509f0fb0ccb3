"""Repeated reads of one image as one audit row and a count.

A doctor playing an ultrasound cine fetches a rendered frame 30 times a second, and each
audit row costs a write to the one hash chain. So per (reader, consultation, action,
instance) and window of ``window_s`` seconds, the first read is written as a row of its own
and the others are counted; their number is written as one summary row (``detail.summary``:
true, ``reads``, ``window_s``) when the window ends: at the next read of any key after that,
at :meth:`ReadAudit.flush` (every quarter window, by the task :meth:`ReadAudit.start`
starts), when the key is pushed out of the bounded table, or at shutdown. Every read is thus
in the chain, as a row or in a count, and who read which image when stays answerable to
the minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from runtime.tasks import cancel_and_wait, spawn
from signaling.auth import Principal
from signaling.storage.audit import AuditEvent, AuditLog, DetailValue

log = logging.getLogger(__name__)

#: (principal kind, principal id, consultation, action, SOP Instance UID)
_Key = tuple[str, int, str, str, str]


@dataclass
class _Window:
    started: float
    principal: Principal
    source_addr: str
    counted: int = 0


class ReadAudit:
    """Appends read events to ``audit``, repeated ones counted. One per process. ``clock``
    is monotonic seconds; tests inject one they drive."""

    def __init__(
        self,
        audit: AuditLog,
        window_s: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self.window_s = window_s
        self._max_keys = max_keys
        self._now = clock
        # Oldest window first.
        self._windows: OrderedDict[_Key, _Window] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    async def read(
        self,
        action: str,
        principal: Principal,
        source_addr: str,
        consultation_id: str,
        sop: str,
        detail: dict[str, DetailValue],
    ) -> bool:
        """Audit one read of instance ``sop``; True when it got a row of its own (False:
        counted in the window's summary)."""
        now = self._now()
        key = (str(principal.kind), principal.id, consultation_id, action, sop)
        # Decided synchronously (no await in between): concurrent reads count exactly.
        due = self._take_ended(now)
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(now, principal, source_addr)
            while len(self._windows) > self._max_keys:
                due.append(self._windows.popitem(last=False))
        else:
            window.counted += 1
            window.source_addr = source_addr
        for ended_key, ended in due:
            await self._summary(ended_key, ended)
        if window is None:
            await self._append(action, principal, source_addr, consultation_id, detail)
        return window is None

    async def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of ended windows (``everything``: of all, as at shutdown);
        how many summary rows were written."""
        written = 0
        for key, window in self._take_ended(self._now(), everything=everything):
            written += await self._summary(key, window)
        return written

    def start(self, interval_s: float | None = None) -> None:
        """Write ended windows' summaries every ``interval_s`` (default: a quarter window).
        Owned by the app's services, which call :meth:`stop`."""
        if self._task is None:
            self._task = spawn(self._run(interval_s or self.window_s / 4), "read-summaries")

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
                log.exception("writing read summaries failed; will try again")

    def _take_ended(self, now: float, everything: bool = False) -> list[tuple[_Key, _Window]]:
        due = []
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if not everything and now - window.started < self.window_s:
                break
            del self._windows[key]
            due.append((key, window))
        return due

    async def _summary(self, key: _Key, window: _Window) -> int:
        if window.counted == 0:
            return 0
        _, _, consultation_id, action, sop = key
        detail: dict[str, DetailValue] = {
            "sop": sop,
            "summary": True,
            "reads": window.counted,
            "window_s": self.window_s,
        }
        await self._append(action, window.principal, window.source_addr, consultation_id, detail)
        return 1

    async def _append(
        self,
        action: str,
        principal: Principal,
        source_addr: str,
        consultation_id: str,
        detail: dict[str, DetailValue],
    ) -> None:
        await self._audit.append(
            AuditEvent(
                action=action,
                actor_kind=str(principal.kind),
                actor_id=principal.id,
                actor_name=principal.name,
                role=str(principal.role),
                site=principal.site,
                source_addr=source_addr[:64],
                consultation_id=consultation_id,
                detail=detail,
            )
        )
