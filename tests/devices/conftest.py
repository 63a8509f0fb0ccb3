from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED


@pytest.fixture
def captures() -> Path:
    """The real device captures in ../shared (absent from a user's clone: skip there)."""
    path = SHARED / "device-captures"
    if not path.is_dir():
        pytest.skip("../shared/device-captures is not here (only CI and developers have it)")
    return path
