"""Which consultation a gateway joins: the newest active one its own site requested, or the
one its configuration names. Sans-I/O: :class:`Following` is told what the server said and
answers which consultation to join; the gateway's runner does the listing and the joining.

The server pushes a ``consultation`` message to a site's gateways at every change of a
consultation of that site (requested, accepted, cancelled, closed). A following gateway
therefore lists its site's active consultations over HTTP once per signaling link, when the
link (re)connects (a ``welcome``: what changed while it was away was pushed to nobody), and
keeps that list current from the pushes. There is no periodic list: a push is lost only
with its link (the server closes a socket whose outbox is full rather than drop a message,
and a link that dies silently is found by the client's heartbeat), and every new link
begins with a ``welcome``, hence a list.
"""

from __future__ import annotations

from collections.abc import Iterable

from signaling.schema import ConsultationState, ConsultationSummary


class Following:
    """The active consultations a gateway may join, newest wins.

    Call :meth:`connected` on every ``welcome``; in follow mode (no configured consultation,
    :attr:`lists`) list the site's active consultations then and hand them to
    :meth:`listed`. Hand every ``consultation`` push to :meth:`changed`, a consultation the
    gateway saw end to :meth:`ended`, and a join the server refused to :meth:`refused`.
    :meth:`target` is the consultation to join when the gateway is in none."""

    def __init__(self, configured: str | None = None) -> None:
        #: The consultation the configuration names (joined whoever requested it), or None:
        #: follow the site's newest active one.
        self.configured = configured
        self.site: str | None = None
        #: Active consultations the gateway may join: id -> created_at (ISO 8601, UTC).
        self._active: dict[str, str] = {}
        #: While a list is on its way: the latest push of each consultation since the
        #: link came up, applied again over the list's answer (which may predate them).
        self._pushed: dict[str, ConsultationSummary] | None = None

    @property
    def lists(self) -> bool:
        """Whether a (re)connection calls for a list over HTTP (follow mode)."""
        return self.configured is None

    def connected(self, site: str) -> None:
        """A link came up for a gateway of ``site``: what is known may be stale. In follow
        mode, :meth:`listed` is awaited; with a configured consultation, it is tried once
        (a refusal drops it until a push says it is active)."""
        self.site = site
        if self.configured is not None:
            self._active = {self.configured: ""}
        else:
            self._pushed = {}

    def listed(self, rows: Iterable[ConsultationSummary]) -> None:
        """The active consultations the server listed after the latest :meth:`connected`."""
        self._active = {
            row.id: row.created_at
            for row in rows
            if row.state is ConsultationState.ACTIVE and self._mine(row)
        }
        pushed, self._pushed = self._pushed or {}, None
        for summary in pushed.values():
            self.changed(summary)

    def changed(self, summary: ConsultationSummary) -> None:
        """A ``consultation`` push."""
        if self._pushed is not None:
            self._pushed[summary.id] = summary
        if summary.state is ConsultationState.ACTIVE and self._mine(summary):
            self._active[summary.id] = summary.created_at
        else:
            self._active.pop(summary.id, None)

    def ended(self, consultation_id: str) -> None:
        """The gateway saw ``consultation_id`` close or be cancelled (in its room)."""
        self._active.pop(consultation_id, None)

    def refused(self, consultation_id: str) -> None:
        """The server refused to let the gateway join: not joinable until pushed again."""
        self._active.pop(consultation_id, None)

    def target(self) -> str | None:
        """The consultation to join: the configured one while it may be joined, else the
        newest active one of the site; None: none to join."""
        if not self._active:
            return None
        return max(self._active, key=lambda cid: self._active[cid])

    def _mine(self, summary: ConsultationSummary) -> bool:
        if self.configured is not None:
            return summary.id == self.configured
        return self.site is not None and summary.requesting_site == self.site
