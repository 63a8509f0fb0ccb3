"""Sends the gateway's journal (:mod:`signaling.journal`) to the server's record.

One task (:meth:`Uploader.run`, owned by the gateway): flush the journal's buffer, take the
oldest pending batch, ``POST /api/consultations/{id}/record``, forget it once the server
answered. A full batch is followed at once by the next (a backfill goes as fast as the
server takes it); otherwise the uploader waits ``interval_s``.

- The server or the link down (no answer, a 5xx, a token that cannot be renewed): the batch
  stays in the journal and is sent again after a backoff (``interval_s`` doubling up to
  ``backoff_max_s``); the first failure of an outage is logged, and the return. The server
  stores idempotently, so a batch it took whose answer was lost is harmless to send again.
- The server refuses the batch for good (403, 404, 409: the consultation is not this
  gateway's, or was never accepted): logged and forgotten. A 413 or 422 (too large, or an
  entry the server cannot take) halves the batch until the one entry at fault is found,
  which is logged and forgotten: one bad entry never blocks those behind it.

The task survives every failure but its own cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from signaling.errors import SignalingError
from signaling.journal import Batch, Journal

log = logging.getLogger(__name__)

#: Sends one batch: (consultation id, ``record`` body) -> the server's answer. Raises
#: :class:`SignalingError` (``code`` the HTTP status) or ``httpx.HTTPError``/``OSError``.
Post = Callable[[str, dict[str, list[Any]]], Awaitable[object]]

_REFUSED = frozenset({400, 403, 404, 409})
_SPLIT = frozenset({413, 422})


def client_post(client: Any) -> Post:
    """A :data:`Post` through a :class:`~signaling.client.SignalingClient` (its login)."""

    async def post(consultation_id: str, body: dict[str, list[Any]]) -> object:
        return await client.api("POST", f"/api/consultations/{consultation_id}/record", body)

    return post


class Uploader:
    def __init__(
        self,
        journal: Journal,
        post: Post,
        *,
        batch_size: int = 1000,
        interval_s: float = 2.0,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.journal = journal
        self._post = post
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._limit = batch_size
        self._failing = False
        #: Entries the server took, and entries it refused for good (forgotten).
        self.sent = 0
        self.refused = 0
        #: Batches that could not be sent (the server or link down), to be sent again.
        self.failures = 0

    async def run(self) -> None:
        """Until cancelled."""
        delay = self.interval_s
        while True:
            try:
                full = await self.step()
            except Exception:  # unforeseen: logged, and the journal is tried again later
                log.exception("journal upload failed")
                full = None
            if full is None:  # nothing sent: the server is away
                await self._sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            delay = self.interval_s
            if not full:
                await self._sleep(self.interval_s)

    async def step(self) -> bool | None:
        """Flush, then send one batch. True: a full batch went (more may wait); False: the
        journal is empty now or a short batch went; None: the server could not take it."""
        await self.journal.flush()
        batch = await asyncio.to_thread(self.journal.store.pending, self._limit)
        if batch is None:
            return False
        try:
            await self._post(batch.consultation_id, batch.body)
        except SignalingError as exc:
            return await self._refused(batch, exc)
        except (httpx.HTTPError, OSError) as exc:
            await self._unreachable(repr(exc))
            return None
        await asyncio.to_thread(self.journal.store.remove, batch.seqs)
        self.sent += len(batch)
        if self._failing:
            self._failing = False
            log.warning("the server takes the journal again; sending what waited")
        full = len(batch) >= self._limit
        if not full:  # the journal is drained: a split that looked for a bad entry is over
            self._limit = self.batch_size
        return full

    async def _unreachable(self, why: str) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            pending = await asyncio.to_thread(self.journal.store.count)
            log.warning(
                "cannot send the journal to the server (%s); keeping it (%d pending)", why, pending
            )

    async def _refused(self, batch: Batch, exc: SignalingError) -> bool | None:
        code = exc.code if isinstance(exc.code, int) else 0
        if code in _SPLIT and len(batch) > 1:
            self._limit = max(1, len(batch) // 2)
            log.info("record refused (%s); trying %d entries at a time", exc, self._limit)
            return True
        if code in _REFUSED or code in _SPLIT:
            log.error(
                "the server refused %d journal entries of %s for good: %s",
                len(batch),
                batch.consultation_id,
                exc.reason,
            )
            await asyncio.to_thread(self.journal.store.remove, batch.seqs)
            self.refused += len(batch)
            self._limit = self.batch_size
            return True
        await self._unreachable(str(exc))
        return None
