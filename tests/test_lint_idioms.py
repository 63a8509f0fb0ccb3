"""scripts/lint-idioms: the forbidden cancellation idioms are found in code, and only there."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lint-idioms"

FORBIDDEN = """\
import asyncio
import asyncio as aio
import contextlib
from asyncio import wait_for
from asyncio import sleep, wait_for as wf
from contextlib import suppress


async def f(task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(task, 1)  # line 10
    await aio.wait_for(task, 1)
    await wait_for(task, 1)
    await wf(task, 1)
    with contextlib.suppress(asyncio.CancelledError, OSError):  # line 14
        await task
    with suppress((OSError, asyncio.CancelledError)):  # line 16
        await task
    with suppress(
        asyncio.CancelledError  # the finding is reported on the line of suppress( (18)
    ):
        await task
"""

ALLOWED = '''\
"""Never asyncio.wait_for(task, 1) nor suppress(asyncio.CancelledError) here."""

import asyncio
import contextlib


async def f(task: asyncio.Task[None], cond: asyncio.Condition) -> None:
    # asyncio.wait_for( in a comment, and contextlib.suppress(asyncio.CancelledError)
    async with cond:
        await cond.wait_for(lambda: True)  # Condition.wait_for is another API
    with contextlib.suppress(OSError):
        await task
    text = "with suppress(CancelledError): asyncio.wait_for(x)"
    print(text)
'''


def _lint(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sample.py"
    path.write_text(source)
    return subprocess.run(
        [str(SCRIPT), str(path)], capture_output=True, text=True, check=False, timeout=60
    )


def test_every_forbidden_form_is_reported_with_its_line(tmp_path: Path) -> None:
    result = _lint(tmp_path, FORBIDDEN)
    assert result.returncode == 1
    lines = [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in result.stdout.splitlines()]
    assert lines == ["10", "11", "12", "13", "14", "16", "18"]
    assert "wait_for" in result.stdout and "suppress(CancelledError)" in result.stdout


def test_comments_docstrings_strings_and_condition_wait_for_pass(tmp_path: Path) -> None:
    result = _lint(tmp_path, ALLOWED)
    assert (result.returncode, result.stdout) == (0, "")
