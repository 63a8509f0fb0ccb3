"""Candidate peaks in a streamed feature signal, found without state beyond the signal itself.

A sample is a candidate when it rises from the sample before, does not fall to the one after,
is positive, and is the largest within +-``radius`` samples. That needs ``radius`` samples
on each side, so a sample is judged once ``radius`` later samples exist, and the result never
depends on how the stream was chunked.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import maximum_filter1d


def new_candidates(
    feature: NDArray[np.float64], start: int, scanned: int, radius: int
) -> tuple[list[int], int]:
    """Candidates among the samples not yet scanned.

    ``feature`` holds the recent signal, its first sample at stream index ``start``;
    ``scanned`` is the first stream index not yet judged. Returns the candidates' stream
    indices and the new ``scanned``.
    """
    last = start + len(feature) - 1 - radius  # needs radius samples after it
    first = max(scanned, start + radius + 1)
    if last < first:
        return [], scanned
    lo, hi = first - start, last - start
    window = feature[lo - radius : hi + radius + 1]
    largest = maximum_filter1d(window, 2 * radius + 1, mode="nearest")[radius:-radius]
    segment = feature[lo : hi + 1]
    is_peak = (
        (segment > feature[lo - 1 : hi])
        & (segment >= feature[lo + 1 : hi + 2])
        & (segment >= largest)
        & (segment > 0)
    )
    return (np.flatnonzero(is_peak) + first).tolist(), last + 1
