"""``telemed serve --tls-cert --tls-key``: HTTPS and WSS, TLS 1.2 or newer only, HSTS; the
Python client and the gateway verify the certificate (``--ca`` for a self-signed one);
``telemed demo --lan``'s self-signed certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets

from signaling.auth import SecretHasher
from signaling.client import SignalingClient, UntrustedServer, UserCredentials
from signaling.schema import Role
from signaling.storage import accounts
from signaling.storage.database import Database
from telemed import tls
from telemed.serve import base_url
from telemed.settings import Settings, SettingsError
from tests.helpers import SECRET, TEST_HASH_COST
from tests.processes import listening, port_of, start_serve

USER, PASSWORD = "doctor.tls", "tls-test-password-doctor"
GATEWAY, GATEWAY_KEY = "gateway.tls", "tls-test-gateway-key-0123456789"


@dataclass
class TlsServer:
    url: str
    port: int
    cert: tls.DemoCertificate
    data_dir: Path
    env: dict[str, str]

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert.cert_file)


async def _seed(settings: Settings) -> None:
    config = settings.server_config()
    db = Database(config.database_url)
    try:
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        hasher = SecretHasher(TEST_HASH_COST)
        await accounts.add_user(db, USER, PASSWORD, Role.DOCTOR, "koriyama", USER, hasher)
        await accounts.add_gateway(db, GATEWAY, "wonju", GATEWAY_KEY, hasher)
    finally:
        await db.close()


def _handshake(port: int, context: ssl.SSLContext) -> str:
    """A TLS handshake with the server on ``port``; the version agreed."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        return str(conn.version())


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """One real ``telemed serve`` with a self-signed certificate for 127.0.0.1, for the
    module."""
    root = tmp_path_factory.mktemp("tls")
    # 127.0.0.1 only: "localhost" is the name a certificate does not carry.
    cert = tls.demo_certificate(root / "tls", ["127.0.0.1"])
    data_dir = root / "data"
    asyncio.run(_seed(Settings(data_dir=data_dir, secret_key=SECRET)))
    env = {
        **os.environ,
        "TELEMED_DATA_DIR": str(data_dir),
        "TELEMED_SECRET_KEY": SECRET,
        "TELEMED_LOG_LEVEL": "warning",
    }
    sock = listening(64)
    port = port_of(sock)
    proc = start_serve(
        sock,
        *("--tls-cert", str(cert.cert_file), "--tls-key", str(cert.key_file)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # printed once it serves
        assert line.startswith(f"telemed: serving on https://127.0.0.1:{port}"), (
            line + proc.stderr.read().decode() if proc.stderr else line
        )
        yield TlsServer(f"https://127.0.0.1:{port}", port, cert, data_dir, env)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# The server process takes ~5 s to start on a busy machine (once for the module).
@pytest.mark.slow
@pytest.mark.cpu
async def test_https_login_hsts_and_wss_welcome(tls_server: TlsServer) -> None:
    async with httpx.AsyncClient(
        base_url=tls_server.url, verify=tls_server.client_context()
    ) as http:
        r = await http.post("/api/auth/login", json={"username": USER, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        assert "connect-src 'self' wss:;" in r.headers["content-security-policy"]
        token = r.json()["token"]
    ws_url = f"wss://127.0.0.1:{tls_server.port}/ws"
    async with websockets.connect(ws_url, ssl=tls_server.client_context()) as ws:
        await ws.send(json.dumps({"type": "hello", "v": 1, "token": token, "client": "tls-test"}))
        async with asyncio.timeout(10):
            welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
    # Plain HTTP on the TLS port is not served.
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"http://127.0.0.1:{tls_server.port}/healthz")


def _tls11(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context`` made to speak TLS 1.1 and nothing newer."""
    # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0 (they sign with SHA-1).
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as it should be
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


# The server process takes ~5 s to start on a busy machine (once for the module).
@pytest.mark.slow
@pytest.mark.cpu
def test_only_tls_12_and_newer(tls_server: TlsServer) -> None:
    old = _tls11(ssl.create_default_context(cafile=tls_server.cert.cert_file))
    if _local_server_accepts(old, tls_server.cert) is None:
        pytest.skip("this machine's OpenSSL cannot speak TLS 1.1 at all")
    # Refused in the handshake (asyncio closes without sending the alert OpenSSL made).
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(tls_server.port, old)
    tls12 = ssl.create_default_context(cafile=tls_server.cert.cert_file)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(tls_server.port, tls12) == "TLSv1.2"
    assert _handshake(tls_server.port, tls_server.client_context()) == "TLSv1.3"


def _local_server_accepts(client: ssl.SSLContext, cert: tls.DemoCertificate) -> str | None:
    """The control: a server that allows TLS 1.1 agrees with ``client`` (the version), so a
    refusal by ``telemed serve`` is its own doing, not this client's inability."""
    server = _tls11(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    server.load_cert_chain(cert.cert_file, cert.key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as wrapped:
                wrapped.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        return _handshake(port, client)
    except ssl.SSLError:
        return None
    finally:
        thread.join(10)
        listener.close()


# The server process takes ~5 s to start on a busy machine (once for the module).
@pytest.mark.slow
@pytest.mark.cpu
async def test_python_client_verifies_the_certificate(tls_server: TlsServer) -> None:
    """Without the CA file the client refuses the self-signed server, sending nothing (a
    clear error, not a connection error); with it, logs in and is welcomed over WSS."""
    untrusting = SignalingClient(tls_server.url, UserCredentials(USER, PASSWORD))
    try:
        with pytest.raises(UntrustedServer, match=r"self.signed certificate") as refused:
            await untrusting.start()
        assert "CA file" in str(refused.value)
    finally:
        await untrusting.close()
    trusting = SignalingClient(
        tls_server.url, UserCredentials(USER, PASSWORD), ca_file=tls_server.cert.cert_file
    )
    try:
        await trusting.start()
        assert trusting.welcome is not None and trusting.welcome.peer_id
    finally:
        await trusting.close()
    # A certificate that does not name the address used is refused as well.
    named = SignalingClient(
        f"https://localhost:{tls_server.port}",
        UserCredentials(USER, PASSWORD),
        ca_file=tls_server.cert.cert_file,
    )
    try:
        with pytest.raises(UntrustedServer, match=r"(?i)mismatch|doesn't match|IP address"):
            await named.login()
    finally:
        await named.close()


@pytest.mark.slow
@pytest.mark.cpu
def test_gateway_needs_the_ca_for_a_self_signed_server(
    tls_server: TlsServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "gateway.key"
    key_file.write_text(GATEWAY_KEY)
    env = {**tls_server.env, "TELEMED_DATA_DIR": str(tmp_path / "gateway-data")}
    base = [
        sys.executable,
        "-m",
        "telemed",
        "gateway",
        "--server",
        tls_server.url,
        "--name",
        GATEWAY,
        "--key-file",
        str(key_file),
        "--site",
        "wonju",
        "--seconds",
        "1",
    ]
    refused = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert "not trusted" in refused.stderr and "--ca FILE" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    ca = ["--ca", str(tls_server.cert.cert_file)]
    ran = subprocess.run(base + ca, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "gateway stopped" in ran.stderr, ran.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "CA file .*none.pem does not exist"),
        ("not a certificate", "holds no PEM certificate"),
    ],
)
def test_gateway_ca_file_is_checked_at_start(
    tmp_path: Path, content: str | None, message: str
) -> None:
    """What ``telemed gateway`` and ``telemed export`` check of ``--ca`` before they
    start."""
    ca = tmp_path / "none.pem"
    if content is not None:
        ca.write_text(content)
    with pytest.raises(SettingsError, match=message):
        tls.check_ca_file(ca)


# -- the certificate and key files ----------------------------------------------------------


def _other_pair(directory: Path) -> tls.DemoCertificate:
    return tls.demo_certificate(directory, ["127.0.0.1"])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-cert", "certificate .*nope.pem does not exist"),
        ("missing-key", "key .*nope.pem does not exist"),
        ("key-as-cert", "holds no PEM certificate"),
        ("cert-as-key", "holds no PEM private key"),
        ("other-key", "does not match the certificate"),
        ("encrypted-key", "is encrypted"),
        ("directory", "is a directory"),
    ],
)
def test_unusable_files_are_named_with_the_reason(tmp_path: Path, case: str, message: str) -> None:
    from cryptography.hazmat.primitives import serialization

    one, two = _other_pair(tmp_path / "one"), _other_pair(tmp_path / "two")
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(one.key_file.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    cert, key_file = {
        "missing-cert": (tmp_path / "nope.pem", one.key_file),
        "missing-key": (one.cert_file, tmp_path / "nope.pem"),
        "key-as-cert": (one.key_file, one.key_file),
        "cert-as-key": (one.cert_file, one.cert_file),
        "other-key": (one.cert_file, two.key_file),
        "encrypted-key": (one.cert_file, encrypted),
        "directory": (tmp_path, one.key_file),
    }[case]
    with pytest.raises(tls.TlsSetupError, match=message):
        tls.server_context(cert, key_file)


@pytest.mark.slow  # a process of its own: ~3 s to import on a quiet machine
@pytest.mark.cpu
def test_serve_refuses_a_mismatched_key_before_serving(tmp_path: Path) -> None:
    one, two = _other_pair(tmp_path / "one"), _other_pair(tmp_path / "two")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "telemed",
            "serve",
            "--port",
            "0",
            "--tls-cert",
            str(one.cert_file),
            "--tls-key",
            str(two.key_file),
        ],
        env={**os.environ, "TELEMED_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"telemed: the TLS key {two.key_file} does not match"), done
    assert "serving" not in done.stdout


def test_server_context_is_tls_12_or_newer(tmp_path: Path) -> None:
    pair = _other_pair(tmp_path)
    context = tls.server_context(pair.cert_file, pair.key_file)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("GCM" in n or "CHACHA20" in n for n in names), names


# -- the demo's self-signed certificate -----------------------------------------------------


def test_demo_certificate_is_kept_while_valid_and_naming_this_machine(tmp_path: Path) -> None:
    names = ["wardpc", "192.0.2.10", "127.0.0.1"]
    first = tls.demo_certificate(tmp_path, names)
    assert first.created and {"wardpc", "192.0.2.10", "127.0.0.1"} <= set(first.names)
    assert (first.key_file.stat().st_mode & 0o777) == 0o600
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(first.cert_file.read_text())).hexdigest()
    assert first.fingerprint.replace(":", "").lower() == digest
    again = tls.demo_certificate(tmp_path, ["192.0.2.10", "wardpc"])
    assert not again.created and again.fingerprint == first.fingerprint
    # A new address (DHCP gave another): a new certificate naming it.
    moved = tls.demo_certificate(tmp_path, [*names, "192.0.2.77"])
    assert moved.created and "192.0.2.77" in moved.names
    assert moved.fingerprint != first.fingerprint
    # Near its end: made anew.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=tls.DEMO_CERT_DAYS - 3)
    renewed = tls.demo_certificate(tmp_path, names, now=later)
    assert renewed.created and renewed.not_after > moved.not_after
    # The certificate verifies as its own trust anchor for each name it carries.
    context = tls.server_context(renewed.cert_file, renewed.key_file)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_lan_addresses_are_reachable_ones() -> None:
    import ipaddress

    for text in tls.lan_addresses():
        address = ipaddress.ip_address(text)
        assert not (address.is_loopback or address.is_link_local or address.is_unspecified)


@pytest.mark.slow  # the whole demo: server, bedside gateway, simulated devices
@pytest.mark.cpu
async def test_demo_lan_serves_https_with_its_certificate_and_fingerprint(tmp_path: Path) -> None:
    import re
    import signal

    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "telemed", "demo", "--lan", "--port", "0"),
        env={**os.environ, "TELEMED_DATA_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(90):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line)
                if line.strip().startswith("Ctrl-C"):  # the banner's last line
                    break
        banner = "".join(lines)
        base = re.search(r"clinic app:\s+(https://127\.0\.0\.1:\d+)/\s", banner)
        shown = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})\n", banner)
        assert base is not None and shown is not None, banner
        cert_file = tmp_path / "demo" / "tls" / "cert.pem"
        assert shown.group(1) == tls.fingerprint(cert_file)
        lan_line = next(line for line in lines if "from another machine" in line)
        urls = re.findall(r"https://[^\s/]+:\d+/", lan_line)
        port = base.group(1).rsplit(":", 1)[1]
        # 0.0.0.0: the IPv4 ones (the certificate names the IPv6 ones too).
        ipv4 = [a for a in tls.lan_addresses() if ":" not in a]
        assert urls == [base_url(a, int(port), https=True) + "/" for a in ipv4], banner
        context = ssl.create_default_context(cafile=cert_file)
        # Every address printed (and this machine's own) is served, with that certificate.
        for url in [*urls, base.group(1) + "/"]:
            async with httpx.AsyncClient(verify=context) as http:
                r = await http.get(url + "healthz")
                assert r.status_code == 200, url
                assert r.headers["strict-transport-security"] == "max-age=31536000"
        host, _, port_text = base.group(1).removeprefix("https://").rpartition(":")
        _, writer = await asyncio.open_connection(host, int(port_text), ssl=context)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        digest = hashlib.sha256(der).hexdigest().upper()
        assert ":".join(digest[i : i + 2] for i in range(0, 64, 2)) == shown.group(1)
        # The demo's own bedside gateway trusts it too: its socket is open over WSS.
        async with httpx.AsyncClient(verify=context) as http:
            for _ in range(300):
                health = (await http.get(base.group(1) + "/healthz")).json()
                if health["connections"] >= 1:
                    break
                await asyncio.sleep(0.1)
            assert health["connections"] >= 1, health
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # It stops in a second or two. Over TLS a client left idle used to hold the
            # server's shutdown for asyncio's 30 s TLS close timeout.
            async with asyncio.timeout(20):
                _, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.communicate()
            raise
    assert "Traceback" not in err.decode(), err.decode()


def test_proxy_headers_are_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    """Off by default (X-Forwarded-For from anyone would let a client pick its address for
    the login limits and the per-address caps); on for the listed proxies only."""
    from fastapi import FastAPI
    from pydantic import ValidationError

    from telemed.serve import uvicorn_config
    from tests.helpers import make_config

    default = uvicorn_config(FastAPI(), make_config(tmp_path), "127.0.0.1", 0)
    assert default.proxy_headers is False
    proxies = ("127.0.0.1", "10.1.0.0/16", "::1")
    trusting = uvicorn_config(
        FastAPI(), make_config(tmp_path, trusted_proxies=proxies), "127.0.0.1", 0
    )
    assert trusting.proxy_headers is True
    assert trusting.forwarded_allow_ips == list(proxies)
    for wrong in (["*"], ["nginx.local"], ["10.1.0.0/33"]):
        with pytest.raises(ValidationError, match="not an IP address or network"):
            make_config(tmp_path, trusted_proxies=wrong)


def test_serve_warns_of_an_expired_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from telemed.cli import _tls_context

    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=tls.DEMO_CERT_DAYS + 30)
    old = tls.demo_certificate(tmp_path, ["127.0.0.1"], now=long_ago)
    plain = Settings(data_dir=tmp_path, host="127.0.0.1", port=8000)
    settings = plain.model_copy(update={"tls_cert": old.cert_file, "tls_key": old.key_file})
    assert _tls_context(None, None, settings) is not None  # served: the operator decides
    assert f"the TLS certificate {old.cert_file} expired on" in capsys.readouterr().err
    # Both files or neither.
    with pytest.raises(SettingsError, match="both a certificate and its key"):
        _tls_context(old.cert_file, None, plain)
    # Gateways and exports default to this machine's server, over HTTPS when it is.
    assert settings.local_server_url() == "https://127.0.0.1:8000"
    assert plain.local_server_url() == "http://127.0.0.1:8000"
