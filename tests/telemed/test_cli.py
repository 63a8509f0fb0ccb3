"""The `telemed` command and its settings, run as a user would run them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telemed import logs
from telemed.settings import SettingsError, load_settings
from tests.helpers import run_telemed


def _telemed(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_telemed(*args, data_dir=data_dir, stdin=stdin)


# Several `telemed` processes: seconds each (make test-fast leaves it out).
@pytest.mark.slow
@pytest.mark.cpu
def test_accounts_and_a_tampered_audit_log(tmp_path: Path) -> None:
    added = _telemed(
        tmp_path,
        "users",
        "add",
        "dw",
        "--role",
        "doctor",
        "--site",
        "wonju",
        "--password-stdin",
        stdin="cli-test-password-dw\n",
    )
    assert added.returncode == 0, added.stderr
    gateway = _telemed(tmp_path, "gateways", "add", "bedside-1", "--site", "wonju")
    assert gateway.returncode == 0
    assert "key" in gateway.stdout
    dup = _telemed(tmp_path, "gateways", "add", "bedside-1", "--site", "wonju")
    assert dup.returncode == 1
    assert "exists already" in dup.stderr
    unknown = _telemed(tmp_path, "gateways", "add", "gw", "--site", "atlantis")
    assert unknown.returncode == 2
    assert "unknown site" in unknown.stderr

    ok = _telemed(tmp_path, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "intact: 2 events" in ok.stdout

    with sqlite3.connect(tmp_path / "telemed.sqlite3") as conn:
        conn.execute('UPDATE audit_events SET detail = \'{"user": "intruder"}\' WHERE seq = 1')
    broken = _telemed(tmp_path, "audit", "verify")
    assert broken.returncode == 1
    assert "BROKEN at event 1" in broken.stderr


def test_settings_from_toml_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "telemed.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\nport = 9000\n[server]\ntoken_ttl_s = 120\n'
        '[[sites]]\ncode = "koriyama"\nname = "Koriyama"\ncountry = "JP"\nlanguage = "ja"\n'
        'timezone = "Asia/Tokyo"\nmains_hz = 50\n'
        '[[sites]]\ncode = "busan"\nname = "Busan"\ncountry = "KR"\nlanguage = "ko"\n'
        'timezone = "Asia/Seoul"\nmains_hz = 60\n'
    )
    monkeypatch.setenv("TELEMED_PORT", "9100")  # the environment wins over the file
    settings = load_settings(config)
    assert settings.port == 9100
    assert settings.server.token_ttl_s == 120
    assert [s.code for s in settings.sites] == ["koriyama", "busan"]
    assert settings.site("busan").mains_hz == 60
    server = settings.server_config()
    assert server.database_url.endswith(f"{tmp_path}/telemed.sqlite3")
    # The generated key is kept, private, and reused.
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert settings.server_config().secret_key == server.secret_key

    monkeypatch.setenv("TELEMED_SERVER__TOKEN_TTL_S", "5")
    with pytest.raises(SettingsError, match="token_ttl_s"):
        load_settings(config)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_default_sites_carry_their_mains_frequency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEMED_CONFIG", raising=False)
    settings = load_settings()
    assert {s.code: (s.language, s.timezone, s.mains_hz) for s in settings.sites} == {
        "koriyama": ("ja", "Asia/Tokyo", 50),
        "wonju": ("ko", "Asia/Seoul", 60),
    }


async def _serve_once(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """Run ``telemed [flags] serve --port 0``, make one request, stop it; its stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemed",
        *flags,
        "serve",
        "--port",
        "0",
        env={**os.environ, "TELEMED_DATA_DIR": str(tmp_path), **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r"serving on (http://\S+) ", line)
        assert match is not None, line
        async with httpx.AsyncClient(base_url=match.group(1)) as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    return err.decode()


# Several `telemed` processes: seconds each (make test-fast leaves it out).
@pytest.mark.slow
@pytest.mark.cpu
async def test_the_server_is_quiet_by_default_and_logs_requests_when_verbose(
    tmp_path: Path,
) -> None:
    quiet = await _serve_once(tmp_path)
    assert "GET /healthz" not in quiet
    assert "Application startup complete" not in quiet  # uvicorn's INFO lines

    verbose = await _serve_once(tmp_path, "-v")
    assert '"GET /healthz HTTP/1.1" 200' in verbose  # the access log, in our format
    assert re.search(r"^\S+ \S+ INFO uvicorn\.access: ", verbose, re.MULTILINE), verbose


# Several `telemed` processes: seconds each (make test-fast leaves it out).
@pytest.mark.slow
@pytest.mark.cpu
async def test_servers_can_log_one_json_object_per_line(tmp_path: Path) -> None:
    err = await _serve_once(tmp_path, "-v", env={"TELEMED_LOG_FORMAT": "json"})
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "uvicorn.access" and "GET /healthz" in r["message"] for r in records)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ["", "httpx", "uvicorn.access", *logs.CHATTY, *logs.MUTED]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    try:
        yield
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_verbosity_turns_on_requests_then_the_webrtc_chatter() -> None:
    def shown(name: str, level: int) -> bool:
        return logging.getLogger(name).isEnabledFor(level)

    stream = io.StringIO()
    logs.configure(0, None, "text", stream)
    assert not shown("telemed.gateway", logging.INFO)
    assert not shown("httpx", logging.INFO)
    assert not shown("uvicorn.access", logging.INFO)
    assert shown("telemed.gateway", logging.WARNING)
    assert shown("aioice", logging.WARNING)
    # pydicom's ERROR and traceback per failed pixel decoder: our refusal says it once.
    assert not shown("pydicom", logging.ERROR)
    assert not shown("pynetdicom", logging.INFO)
    # The bedside's record of what left it is shown at every verbosity.
    assert shown("telemed.audit.keep", logging.INFO)

    logs.configure(1, None, "text", stream)
    assert shown("telemed.gateway", logging.INFO)
    assert shown("httpx", logging.INFO) and shown("uvicorn.access", logging.INFO)
    assert not shown("aioice", logging.INFO)  # ICE checks are chatter even at -v

    logs.configure(2, None, "text", stream)
    assert shown("telemed.gateway", logging.DEBUG)
    assert shown("aioice", logging.INFO) and not shown("aioice", logging.DEBUG)
    assert shown("pydicom", logging.INFO)

    logs.configure(3, None, "text", stream)
    assert shown("aioice", logging.DEBUG)

    logs.configure(3, "error", "text", stream)  # a named level wins over -v
    assert not shown("telemed.gateway", logging.WARNING)

    # Configuring again replaces our handler: one line per record, in one format.
    logging.getLogger("telemed.test").error("once")
    assert stream.getvalue().count("once") == 1
    assert re.fullmatch(r"\S+ \S+ ERROR telemed\.test: once\n", stream.getvalue())
