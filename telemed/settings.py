"""Typed settings, read once by the entry point and passed down.

Sources, strongest first: environment variables ``TELEMED_*`` (nested with ``__``, e.g.
``TELEMED_SERVER__TOKEN_TTL_S=600``), then a TOML file (``--config FILE`` or
``TELEMED_CONFIG``), then the defaults here.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from signaling.config import DEFAULT_SITES, ServerConfig, ServerOptions, SiteConfig
from signaling.storage.database import sqlite_url


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "telemed"


class SettingsError(Exception):
    """The configuration cannot be used; the message says why."""


class GatewayOptions(BaseModel):
    """``telemed gateway``: the bedside process (command-line flags override these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The server's base URL; default: this machine's ``host`` and ``port``.
    server_url: str | None = None
    name: str | None = None
    #: The key ``telemed gateways add`` printed. Prefer the environment
    #: (``TELEMED_GATEWAY__KEY``) or a file to the command line, which others can read.
    key: SecretStr | None = None
    #: The bedside's site: its mains frequency sets the ECG notch.
    site: str | None = None
    #: ``PROTOCOL:PORT`` each, e.g. ``cms50:/dev/ttyUSB0``, ``hl7:2575``.
    devices: tuple[str, ...] = ()
    #: The room camera: ``synthetic``, a camera index, a device path, a file or a URL;
    #: unset: none.
    camera: str | None = None
    #: More cameras, ``NAME=SPEC`` each (``ultrasound=/dev/video2``): a name other than
    #: ``room`` is a diagnostic camera (an imaging modality's video: sent unenhanced, its
    #: frames keepable as DICOM); ``:room`` or ``:diagnostic`` after SPEC says so outright.
    cameras: tuple[str, ...] = ()
    width: int = Field(default=640, ge=16, le=3840)
    height: int = Field(default=480, ge=16, le=2160)
    #: The bedside's sound: ``alsa:DEVICE``, a WAV file, ``synthetic``; unset: no sound.
    audio: str | None = None
    #: ``voice`` (a room microphone) or ``stethoscope`` (heart and lung sounds, unfiltered).
    audio_mode: Literal["voice", "stethoscope"] = "voice"
    #: Where clinicians' talk-back is played: ``alsa:DEVICE`` or a WAV file; unset: none.
    speaker: str | None = None
    #: Join this consultation; unset: follow the site's newest active consultation.
    consultation: str | None = None
    #: Trust the server's certificate when it (or its CA) is in this PEM file: a
    #: self-signed certificate; unset: the system's CAs only. The certificate is always
    #: verified.
    ca_file: Path | None = None
    #: Connect to viewers through the TURN relay only: a site whose firewall allows nothing
    #: but the relay, or one that must not reveal its addresses to the other site.
    relay_only: bool = False
    #: The bedside's DICOM Storage SCP (modalities send to it): its port (unset: none),
    #: its AE title, and the calling AE titles allowed to associate (every other refused).
    dicom_port: int | None = Field(default=None, ge=0, le=65535)
    dicom_ae: str = "TELEMED"
    dicom_allow: tuple[str, ...] = ()
    #: The site's PACS, which clinicians of the site search and pull studies from in the
    #: room (C-FIND, C-GET): ``HOST:PORT`` (unset: none; needs ``dicom_port``), its AE
    #: title (required with it), the AE title we call it with (unset: ``dicom_ae``), and
    #: how long it may take to answer.
    pacs: str | None = None
    pacs_ae: str | None = None
    pacs_calling_ae: str | None = None
    pacs_timeout_s: float = Field(default=30.0, gt=0, le=600)
    #: Seconds of each waveform the gateway keeps, so a doctor can review what the live
    #: trace lost in a link's gap (600 s of a 500 Hz ECG is 1.2 MB).
    waveform_history_s: float = Field(default=600.0, gt=0, le=86400)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELEMED_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    #: Where the SQLite database, the generated token key and later DICOM files live.
    data_dir: Path = Field(default_factory=default_data_dir)
    #: SQLAlchemy URL; default SQLite under ``data_dir``. PostgreSQL:
    #: ``postgresql+asyncpg://user:password@host/db``.
    database_url: str | None = None
    #: Key signing access tokens (>= 32 characters). Default: generated into
    #: ``data_dir/secret.key`` on first use. Servers sharing a database must share it.
    secret_key: SecretStr | None = None
    #: Live rooms and presence: unset, in the server process's memory (one process);
    #: ``redis://host:port/db``, in that Redis, shared by every ``telemed serve`` process
    #: given the same URL, database and ``secret_key`` (``TELEMED_HUB_URL``). Required by
    #: ``serve --workers N`` with N > 1.
    hub_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Serve HTTPS and WSS (TLS 1.2 or newer) with this certificate (PEM: the server's
    #: first, then any intermediate ones) and its unencrypted key; ``--tls-cert`` and
    #: ``--tls-key`` override. Unset: plain HTTP (behind a TLS proxy, or on localhost only).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Log level when no ``-v``/``--log-level`` flag is given: ``debug``, ``info``,
    #: ``warning``, ``error``; unset: warnings and errors only (``telemed.logs``).
    log_level: Literal["debug", "info", "warning", "error", "critical"] | None = None
    #: ``json``: one JSON object per log line (for a server's log collector); ``text``: for
    #: people.
    log_format: Literal["text", "json"] = "text"
    sites: tuple[SiteConfig, ...] = DEFAULT_SITES
    server: ServerOptions = ServerOptions()
    gateway: GatewayOptions = GatewayOptions()

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def local_server_url(self) -> str:
        """This machine's server as the settings describe it (``host``, ``port``, HTTPS when
        ``tls_cert`` is set): where a gateway or ``telemed export`` goes when not told."""
        scheme = "https" if self.tls_cert is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return sqlite_url(self.ensure_data_dir() / "telemed.sqlite3")

    def resolved_secret_key(self) -> str:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.ensure_data_dir() / "secret.key"
        if not path.exists():
            # O_EXCL: two processes starting together must not both write a key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def server_config(self) -> ServerConfig:
        return ServerConfig(
            **self.server.model_dump(),
            database_url=self.resolved_database_url(),
            secret_key=SecretStr(self.resolved_secret_key()),
            sites=self.sites,
            data_dir=self.ensure_data_dir(),
            hub_url=self.hub_url,
        )

    def site(self, code: str) -> SiteConfig:
        for site in self.sites:
            if site.code == code:
                return site
        raise SettingsError(f"unknown site {code!r}; configured: {[s.code for s in self.sites]}")


def load_settings(config_file: Path | None = None) -> Settings:
    """Read the settings. ``config_file`` (or ``TELEMED_CONFIG``) names an optional TOML file."""
    path_text = str(config_file) if config_file else os.environ.get("TELEMED_CONFIG")
    try:
        if not path_text:
            return Settings()
        path = Path(path_text)
        if not path.is_file():
            raise SettingsError(f"config file {path} does not exist")

        class FileSettings(Settings):
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                toml = TomlConfigSettingsSource(settings_cls, toml_file=path)
                return (init_settings, env_settings, toml)

        return FileSettings()
    except ValueError as exc:  # pydantic's ValidationError and TOML syntax errors
        raise SettingsError(f"invalid settings: {exc}") from None
