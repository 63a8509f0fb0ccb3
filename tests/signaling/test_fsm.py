"""One test per (state, event) pair of the consultation state machine."""

from __future__ import annotations

import itertools

import pytest

from signaling.consultation_fsm import (
    FINAL_STATES,
    TRANSITIONS,
    ConsultationEvent,
    next_state,
)
from signaling.errors import IllegalTransition
from signaling.schema import ConsultationState as S

EXPECTED = {
    (S.REQUESTED, ConsultationEvent.ACCEPT): S.ACTIVE,
    (S.REQUESTED, ConsultationEvent.CANCEL): S.CANCELLED,
    (S.REQUESTED, ConsultationEvent.CLOSE): S.CANCELLED,
    (S.ACTIVE, ConsultationEvent.CLOSE): S.CLOSED,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, ConsultationEvent)), ids=str)
def test_every_state_event_pair(state: S, event: ConsultationEvent) -> None:
    if (state, event) in EXPECTED:
        assert next_state(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=f"cannot {event}"):
            next_state(state, event)


def test_final_states_have_no_way_out() -> None:
    assert TRANSITIONS == EXPECTED
    assert not any(state in FINAL_STATES for state, _ in TRANSITIONS)
