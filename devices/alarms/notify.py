"""Typed notification events: many handlers each, a handler's failure logged and never
passed on (the others still run, and so does the alarm engine).

An alarm change has several readers that must not depend on one another: the viewers at both
sites, the server's store, the log. Each binds a handler to the event it reads::

    engine.notifier.bind(EVT_ALARM, lambda record: ...)

The payload type is part of the event (``NotificationEvent[AlarmRecord]``), so a handler of
the wrong type is a type error, not a surprise at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass(frozen=True, eq=False)
class NotificationEvent(Generic[P]):
    """An event with a payload of type ``P``; compared by identity."""

    name: str
    description: str


class Notifier:
    """Handlers by event. Handlers run in the order they were bound, on the caller's
    thread, when :meth:`notify` is called."""

    def __init__(self) -> None:
        self._handlers: dict[NotificationEvent[Any], list[Callable[[Any], None]]] = {}
        #: Handler calls that raised (each logged with its traceback).
        self.failures = 0

    def bind(self, event: NotificationEvent[P], handler: Callable[[P], None]) -> None:
        self._handlers.setdefault(event, []).append(handler)

    def unbind(self, event: NotificationEvent[P], handler: Callable[[P], None]) -> None:
        """Remove ``handler`` (bound earlier) from ``event``; raises ValueError if it was not."""
        self._handlers.get(event, []).remove(handler)

    def handlers(self, event: NotificationEvent[P]) -> list[Callable[[P], None]]:
        return list(self._handlers.get(event, []))

    def notify(self, event: NotificationEvent[P], payload: P) -> None:
        for handler in self.handlers(event):
            try:
                handler(payload)
            except Exception:
                self.failures += 1
                log.exception("%s handler %r failed", event.name, handler)
