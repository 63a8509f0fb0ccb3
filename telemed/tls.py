"""TLS for ``telemed serve`` and ``telemed demo --lan``.

Browsers give a page the camera and microphone only in a secure context: HTTPS, or
``localhost``. A server that other machines reach therefore serves HTTPS (and WSS), either
itself (``telemed serve --tls-cert FILE --tls-key FILE``) or behind a reverse proxy that
terminates TLS (README: "TLS and a reverse proxy").

:func:`server_context` checks the certificate and key before the server starts, so that a
missing file, a file that is not PEM, an encrypted key or a key of another certificate is one
clear line rather than a traceback from OpenSSL; the context speaks TLS 1.2 and 1.3 only.

:func:`demo_certificate` makes (and keeps, while it is valid and names this machine) a
self-signed certificate for the demo on a ward's LAN; users compare its SHA-256 fingerprint
with the one the demo prints before they accept the browser's warning.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from telemed.settings import SettingsError

#: TLS 1.2's cipher suites: forward secrecy and AEAD only (Mozilla's "intermediate"
#: configuration). TLS 1.3's suites are all of that kind and are left to OpenSSL.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    ]
)

#: How long a demo certificate is made for, and how long before its end it is made anew.
DEMO_CERT_DAYS = 365
DEMO_CERT_RENEW_DAYS = 7


class TlsSetupError(SettingsError):
    """The certificate or key cannot be used; the message says which file and why."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsSetupError(f"the TLS {what} {path} does not exist") from None
    except IsADirectoryError:
        raise TlsSetupError(f"the TLS {what} {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TlsSetupError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


def _certificates(path: Path) -> list[x509.Certificate]:
    data = _read(path, "certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TlsSetupError(f"the TLS certificate {path} holds no PEM certificate")
    return certs


def _private_key(path: Path) -> object:
    data = _read(path, "key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted, and no password given
        raise TlsSetupError(
            f"the TLS key {path} is encrypted; the server needs it unencrypted (readable by "
            "its account only: chmod 600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsSetupError(f"the TLS key {path} holds no PEM private key") from None


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 or newer, forward-secret AEAD suites. ``cert_file``
    holds the server's certificate first, then any intermediate ones (PEM). Raises
    :class:`TlsSetupError` naming the file when one is missing, unreadable or not PEM, when
    the key is encrypted or is not the certificate's."""
    leaf = _certificates(cert_file)[0]
    key = _private_key(key_file)
    public = getattr(key, "public_key", None)
    if public is None or public() != leaf.public_key():
        raise TlsSetupError(
            f"the TLS key {key_file} does not match the certificate {cert_file} (the first "
            "certificate in the file must be the server's own)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"cannot use {cert_file} with {key_file}: {exc}") from None
    return context


def check_ca_file(path: Path) -> None:
    """Raises :class:`TlsSetupError` unless ``path`` holds certificates a TLS client can
    trust (``--ca FILE`` of the gateway and of ``telemed export``)."""
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:  # before OSError, of which it is one
        raise TlsSetupError(f"the CA file {path} holds no PEM certificate") from None
    except FileNotFoundError:
        raise TlsSetupError(f"the CA file {path} does not exist") from None
    except OSError as exc:
        raise TlsSetupError(f"cannot read the CA file {path}: {exc.strerror}") from None


def certificate_end(cert_file: Path) -> dt.datetime:
    """When the (first) certificate in ``cert_file`` stops being valid (UTC)."""
    return _certificates(cert_file)[0].not_valid_after_utc


def fingerprint(cert_file: Path) -> str:
    """The SHA-256 fingerprint of the (first) certificate in ``cert_file``, as browsers show
    it: upper-case hex bytes joined by colons."""
    digest = _certificates(cert_file)[0].fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


# -- the demo's self-signed certificate -------------------------------------------------------


def lan_addresses() -> list[str]:
    """This machine's addresses another machine on its network may reach: the source address
    of its default routes (IPv4 and IPv6) and what its host name resolves to, loopback and
    link-local left out. Sending nothing: a UDP socket is only connected to learn the route."""
    found: list[str] = []
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((probe, 9))
            found.append(str(udp.getsockname()[0]))
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP):
            found.append(str(info[4][0]))
    addresses: list[str] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses


@dataclass(frozen=True)
class DemoCertificate:
    cert_file: Path
    key_file: Path
    #: SHA-256, as :func:`fingerprint` gives it.
    fingerprint: str
    #: The host names and addresses it is valid for.
    names: tuple[str, ...]
    not_after: dt.datetime
    #: Made by this call (False: an earlier one was still good).
    created: bool


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    }


def demo_certificate(
    directory: Path, names: list[str], now: dt.datetime | None = None
) -> DemoCertificate:
    """A self-signed certificate for ``names`` (host names and IP addresses) in
    ``directory`` (``cert.pem``, ``key.pem``): the one already there while it is valid for
    more than :data:`DEMO_CERT_RENEW_DAYS` and names all of ``names``, else a new one (an
    ECDSA P-256 key, valid :data:`DEMO_CERT_DAYS` days)."""
    now = now or dt.datetime.now(dt.UTC)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    wanted = list(dict.fromkeys(names))
    if cert_file.exists() and key_file.exists():
        with contextlib.suppress(TlsSetupError):
            cert = _certificates(cert_file)[0]
            key = _private_key(key_file)
            public = getattr(key, "public_key", None)
            fresh = cert.not_valid_after_utc - now > dt.timedelta(days=DEMO_CERT_RENEW_DAYS)
            if (
                fresh
                and cert.not_valid_before_utc <= now
                and public is not None
                and public() == cert.public_key()
                and set(wanted) <= _names_of(cert)
            ):
                return DemoCertificate(
                    cert_file,
                    key_file,
                    fingerprint(cert_file),
                    tuple(sorted(_names_of(cert))),
                    cert.not_valid_after_utc,
                    created=False,
                )
    directory.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    general: list[x509.GeneralName] = []
    for name in wanted:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"telemed demo {wanted[0]}")])
    public_key = private.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DEMO_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    # The key first, readable by this account only; then the certificate that names it.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return DemoCertificate(
        cert_file,
        key_file,
        fingerprint(cert_file),
        tuple(sorted(_names_of(cert))),
        cert.not_valid_after_utc,
        created=True,
    )


def demo_names(addresses: list[str]) -> list[str]:
    """What the demo's certificate names: this machine's host name (and its FQDN),
    ``localhost`` and the loopback addresses, and ``addresses``."""
    names = [socket.gethostname(), socket.getfqdn(), "localhost", *addresses]
    names += ["127.0.0.1", "::1"]
    return [n for n in dict.fromkeys(names) if n]
