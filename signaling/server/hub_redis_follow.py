"""Consultation changes made by another process, rendered for this process's sockets.

A change is published once for every process (``c`` on the hub's ``all`` channel); each
process reads the consultation from the database and renders it, per principal, for its own
sockets of the two sites. The relay never waits for that: :meth:`Follower.later` only notes
the consultation (coalesced per consultation, at most :data:`FOLLOW_LIMIT` waiting, the
oldest dropped and logged past it), and :meth:`Follower.run`, one task the hub owns, reads
and renders them in turn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable

from signaling.auth import Principal
from signaling.schema import ConsultationSummary
from signaling.storage import consultations as store
from signaling.storage.database import Database
from signaling.storage.models import ConsultationRow

log = logging.getLogger(__name__)

#: Consultations waiting to be re-read for this process's sockets (coalesced).
FOLLOW_LIMIT = 4096

Publish = Callable[[frozenset[str], Callable[[Principal], ConsultationSummary | None]], object]


def _render(row: ConsultationRow, principal: Principal) -> ConsultationSummary | None:
    return store.describe(principal, row) if store.may_view(principal, row) else None


class Follower:
    """Renders another process's consultation changes with ``publish`` (the in-memory hub's
    :meth:`~signaling.server.hub.Hub.publish`: sites and a render per principal)."""

    def __init__(self, db: Database, publish: Publish) -> None:
        self._db = db
        self._publish = publish
        self._pending: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._work = asyncio.Event()

    def later(self, consultation_id: str, sites: frozenset[str]) -> None:
        """Render ``consultation_id`` for the sockets of ``sites`` soon (never waits)."""
        pending = self._pending
        pending[consultation_id] = pending.get(consultation_id, frozenset()) | sites
        while len(pending) > FOLLOW_LIMIT:
            dropped, _ = pending.popitem(last=False)
            log.error("hub: consultation %s's change not rendered here (too many waiting)", dropped)
        self._work.set()

    async def run(self) -> None:
        """Render what :meth:`later` noted, until cancelled; a failed read is logged and
        that change skipped."""
        while True:
            await self._work.wait()
            self._work.clear()
            while self._pending:
                cid, sites = self._pending.popitem(last=False)
                try:
                    row = await store.get(self._db, cid)
                except Exception:  # a database outage must not end the follower
                    log.exception("hub: consultation %s could not be read; not rendered", cid)
                    continue
                if row is not None:
                    self._publish(sites, functools.partial(_render, row))
