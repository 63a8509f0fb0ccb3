"""How many inputs a fuzz test feeds: a short pass in ``make test``, a long one in ``make fuzz``.

Fuzz tests live in files named ``test_fuzz_*.py`` and size their runs with :func:`budget`.
``make fuzz`` sets ``TELEMED_FUZZ_SCALE`` (10 by default) to multiply every budget; the figures
of a long run go in the closing note of the work that needed it.
"""

from __future__ import annotations

import os


def scale() -> int:
    """The multiplier from ``TELEMED_FUZZ_SCALE`` (1 when unset; a bad value is an error)."""
    raw = os.environ.get("TELEMED_FUZZ_SCALE", "1")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"TELEMED_FUZZ_SCALE must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"TELEMED_FUZZ_SCALE must be a positive integer, not {raw!r}")
    return value


def budget(default: int) -> int:
    """``default`` inputs in a normal run, ``default * scale()`` under ``make fuzz``."""
    return default * scale()
