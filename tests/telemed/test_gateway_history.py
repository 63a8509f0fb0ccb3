"""The gateway's answers to waveform history requests, as messages (no network here)."""

from __future__ import annotations

import numpy as np

from media.rtc.events import MAX_HISTORY_SAMPLES, WaveformHistoryRequest, parse_event
from media.waveform.history import Segment


def test_a_long_range_is_answered_in_bounded_messages_in_index_order() -> None:
    from telemed.gateway.history import answer_texts

    n = 2 * MAX_HISTORY_SAMPLES + 17
    samples = (np.arange(n) % 120).astype(np.float32) + np.float32(0.3)
    samples[5] = np.nan
    request = WaveformHistoryRequest(channel=3, first=1000, count=n + 500)
    messages = [parse_event(t) for t in answer_texts(request, Segment(1200, samples, 60.0))]
    assert [m.type for m in messages] == ["waveform-history"] * 3
    firsts = [m.first for m in messages]  # type: ignore[union-attr]
    assert firsts == [1200, 1200 + MAX_HISTORY_SAMPLES, 1200 + 2 * MAX_HISTORY_SAMPLES]
    assert [m.done for m in messages] == [False, False, True]  # type: ignore[union-attr]
    values = [v for m in messages for v in m.samples]  # type: ignore[union-attr]
    assert len(values) == n and values[5] is None
    expected = [None if np.isnan(v) else float(str(v)) for v in samples]
    assert values == expected
    assert values[0] == 0.3  # the float32's shortest text, not 0.30000001192092896
    for m in messages:
        assert (m.channel, m.rate, m.request_first, m.request_count) == (3, 60.0, 1000, n + 500)  # type: ignore[union-attr]


def test_nothing_held_is_one_empty_message_marked_done() -> None:
    from telemed.gateway.history import answer_texts

    request = WaveformHistoryRequest(channel=9, first=50, count=10)
    (text,) = answer_texts(request, Segment(50, np.empty(0, np.float32), 1.0))
    message = parse_event(text)
    assert message.type == "waveform-history"
    assert (message.first, message.samples, message.done) == (50, [], True)
