"""The `telemed` command and its settings, run as a user would run them."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from telemed.settings import SettingsError, load_settings
from tests.helpers import run_telemed


def _telemed(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_telemed(*args, data_dir=data_dir, stdin=stdin)


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
        stdin="password-wonju\n",
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
