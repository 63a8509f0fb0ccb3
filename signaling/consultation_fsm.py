"""The consultation life cycle as an explicit state machine.

    requested --accept--> active --close--> closed
    requested --cancel--> cancelled
    requested --close---> cancelled   (closing a request nobody accepted cancels it)

Any other (state, event) pair raises :class:`IllegalTransition`.
"""

from __future__ import annotations

import enum

from signaling.errors import IllegalTransition
from signaling.schema import ConsultationState


class ConsultationEvent(enum.StrEnum):
    ACCEPT = "accept"
    CANCEL = "cancel"
    CLOSE = "close"


TRANSITIONS: dict[tuple[ConsultationState, ConsultationEvent], ConsultationState] = {
    (ConsultationState.REQUESTED, ConsultationEvent.ACCEPT): ConsultationState.ACTIVE,
    (ConsultationState.REQUESTED, ConsultationEvent.CANCEL): ConsultationState.CANCELLED,
    (ConsultationState.REQUESTED, ConsultationEvent.CLOSE): ConsultationState.CANCELLED,
    (ConsultationState.ACTIVE, ConsultationEvent.CLOSE): ConsultationState.CLOSED,
}

FINAL_STATES = frozenset({ConsultationState.CLOSED, ConsultationState.CANCELLED})


def next_state(state: ConsultationState, event: ConsultationEvent) -> ConsultationState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None
