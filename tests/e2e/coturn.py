"""coturn for the tests: :class:`benchmarks.coturn.Coturn`, skipping the test where coturn is
not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.coturn import TURN_SECRET, Coturn, CoturnMissing

__all__ = ["TURN_SECRET", "Coturn", "coturn"]


def coturn(workdir: Path) -> Coturn:
    """A coturn not yet started (skips the test when coturn is not installed)."""
    try:
        return Coturn(workdir)
    except CoturnMissing as exc:
        pytest.skip(str(exc))
