"""The WAN bed's fixture: a :class:`~tests.wan.netns.WanBed` per test, skipped with the
reason where it cannot be built (not root, no ``ip``, ``iptables`` or coturn). The tests
here are marked ``wan`` (``make wan``) and ``slow``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.wan.netns import WanBed, missing


@pytest_asyncio.fixture
async def bed(tmp_path: Path) -> AsyncIterator[WanBed]:
    """The bed with its services (server, coturn, relay) up; the processes' output is
    printed at teardown (pytest shows it when the test failed)."""
    why = missing()
    if why is not None:
        pytest.skip(why)
    async with WanBed(tmp_path) as wan:
        try:
            yield wan
        finally:
            print(wan.logs())
