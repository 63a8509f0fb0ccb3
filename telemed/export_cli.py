"""``telemed export ID --format fhir|hl7``: a consultation's numerics and alarms in the
standards (FHIR R4 Bundle, HL7 v2 ORU^R01 per IHE PCD-01).

Through the server's API (``GET /api/consultations/{id}/export``), signed in as a user, and
not from the database file: the server applies the same rules as for anyone (who may see
the consultation; the patient identified only for the requesting site or with consent),
audits the export under that user's name, and a remote server works as a local one. An
administrator of the requesting site gets the patient whole; anyone else as the consent
allows.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from telemed.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "export a consultation's numerics and alarms as FHIR R4 or HL7 v2 (IHE PCD-01)"
    p = sub.add_parser("export", help=text, description=text)
    p.add_argument("consultation", help="the consultation's id")
    p.add_argument("--format", choices=["fhir", "hl7"], default="fhir")
    p.add_argument("--user", required=True, help="sign in as this user (e.g. an administrator)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    p.add_argument("--server", help="server base URL (default: this machine's host and port)")
    p.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="trust an https:// server whose certificate (a self-signed one) or CA is in this "
        "PEM file; the certificate is always verified",
    )
    p.add_argument("--step", type=int, default=1, help="seconds per value (default 1: all)")
    p.add_argument("--since", help="start of the window, ISO 8601 (default: the consultation's)")
    p.add_argument("--until", help="end of the window, ISO 8601 (default: the consultation's)")
    p.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")


async def _export(args: argparse.Namespace, base_url: str, password: str) -> str:
    # The signaling stack loads for this command only.
    from signaling.client import SignalingClient, UserCredentials

    query: dict[str, str | int] = {"step": args.step}
    if args.since:
        query["since"] = args.since
    if args.until:
        query["until"] = args.until
    client = SignalingClient(
        base_url, UserCredentials(args.user, password), ca_file=getattr(args, "ca", None)
    )
    try:
        return await client.export(args.consultation, args.format, **query)
    finally:
        await client.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from signaling.errors import SignalingError, UntrustedServer
    from telemed.tls import check_ca_file

    if getattr(args, "ca", None) is not None:
        check_ca_file(args.ca)
    base_url = args.server or settings.gateway.server_url or settings.local_server_url()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
    try:
        text = asyncio.run(_export(args, base_url, password))
    except SignalingError as exc:
        print(f"telemed: the server refused: {exc.reason} ({exc.code})", file=sys.stderr)
        return 1
    except UntrustedServer as exc:
        print(
            f"telemed: the TLS certificate of {exc.url} is not trusted ({exc.verify_message}); "
            "for a self-signed certificate, pass its file with --ca FILE",
            file=sys.stderr,
        )
        return 1
    except (httpx.HTTPError, OSError) as exc:
        print(f"telemed: cannot reach {base_url}: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        # As the server gave it (HL7 segments end in a carriage return, as the standard says).
        sys.stdout.write(text + ("\n" if args.format == "fhir" else ""))
    else:
        args.output.write_text(text, encoding="utf-8", newline="")
        print(f"wrote {args.output} ({len(text)} characters)", file=sys.stderr)
    return 0
