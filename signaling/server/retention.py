"""Retention of the bedside's record: numerics, alarms and alarm limits older than
``numerics_retention_days``, and DICOM instances stored longer ago than
``imaging_retention_days``, are deleted, once at start-up and then every
``retention_interval_s``.

An instance's file goes first, then its index row: a round cut short (a crash, the
database away) leaves at worst a row whose file is gone, which the next round deletes; never
a file that no row names (an identified image nobody could find to delete). Each round's
deletions are audited per consultation (``imaging.expired``, by the server).

One task, owned by the app's lifespan (:meth:`Retention.start`, :meth:`Retention.stop`). A
round that fails (the database locked or unreachable) is logged and the next one tries
again; the task ends only when stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from runtime.clock import SYSTEM_CLOCK, Clock
from runtime.tasks import cancel_and_wait, spawn
from signaling.imaging.files import InstanceFiles, InstanceKey
from signaling.storage import imaging, vitals
from signaling.storage.audit import AuditEvent, AuditLog
from signaling.storage.database import Database

log = logging.getLogger(__name__)

_DAY_S = 86_400.0
#: Instances deleted per batch (one query, one transaction).
_IMAGING_BATCH = 500


@dataclass(frozen=True)
class ImagingRetention:
    """Where the instance files are, how many days they are kept, and the audit log their
    deletion is recorded in."""

    files: InstanceFiles
    days: int
    audit: AuditLog


class Retention:
    """``sleep`` waits out the interval; tests inject one they drive."""

    def __init__(
        self,
        db: Database,
        retention_days: int,
        interval_s: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        imaging: ImagingRetention | None = None,
    ) -> None:
        """``imaging``: also delete stored DICOM instances (None: the server keeps no
        files)."""
        self._db = db
        self._imaging = imaging
        self.retention_days = retention_days
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        #: Rounds completed, and numerics deleted in all.
        self.rounds = 0
        self.deleted = 0
        #: DICOM instances deleted in all.
        self.instances_deleted = 0

    async def run_once(self) -> int:
        """Delete what is older than the retention period now; how many numerics went."""
        cutoff = self._clock.time() - self.retention_days * _DAY_S
        deleted = await vitals.delete_older_than(self._db, cutoff)
        if self._imaging is not None:
            self.instances_deleted += await self._expire_images(self._imaging)
        self.rounds += 1
        self.deleted += deleted
        if deleted:
            log.info(
                "retention: deleted %d numerics older than %d days", deleted, self.retention_days
            )
        return deleted

    async def _expire_images(self, policy: ImagingRetention) -> int:
        """Delete the instances stored before the imaging period; how many went."""
        cutoff = datetime.fromtimestamp(self._clock.time() - policy.days * _DAY_S, UTC)
        per_consultation: Counter[str] = Counter()
        while rows := await imaging.stored_before(self._db, cutoff, _IMAGING_BATCH):
            keys = [
                InstanceKey(
                    r.consultation_id,
                    r.study_instance_uid,
                    r.series_instance_uid,
                    r.sop_instance_uid,
                )
                for r in rows
            ]
            await asyncio.to_thread(_remove_all, policy.files, keys)
            await imaging.forget(self._db, [r.id for r in rows])
            per_consultation.update(r.consultation_id for r in rows)
        for consultation_id, count in sorted(per_consultation.items()):
            await policy.audit.append(
                AuditEvent(
                    action="imaging.expired",
                    actor_kind="server",
                    actor_id=None,
                    actor_name="retention",
                    role="",
                    site="",
                    source_addr="",
                    consultation_id=consultation_id,
                    detail={"instances": count, "retention_days": policy.days},
                )
            )
        total = sum(per_consultation.values())
        if total:
            log.info(
                "retention: deleted %d DICOM instances stored over %d days ago",
                total,
                policy.days,
            )
        return total

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # an outage must not end retention for good
                log.exception("retention round failed; will try again")
            await self._sleep(self.interval_s)

    def start(self) -> None:
        self._task = spawn(self._run(), "retention")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])


def _remove_all(files: InstanceFiles, keys: list[InstanceKey]) -> None:
    for key in keys:
        files.remove(key)
