"""The ``telemed`` command. Settings are read here, once, and passed down."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import getpass
import os
import runpy
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from telemed import __version__, devices_cli, export_cli, gateway_cli, logs, waveform_cli
from telemed.settings import Settings, SettingsError, load_settings

# The server, the demo and the admin commands are imported by the command that needs them: a
# command starts in a fraction of the time it takes to import the whole stack.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemed", description="Koriyama–Wonju remote-care pilot")
    parser.add_argument("--version", action="version", version=f"telemed {__version__}")
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (default: $TELEMED_CONFIG, if set)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v info and every request, -vv debug and the WebRTC stack's chatter",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=logs.LEVELS,
        help="log at this level (default: setting log_level, else warning)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, help_text in (
        ("serve", "run the signaling server (API, WebSocket, audit log)"),
        ("demo", "run the server with demo accounts in data_dir/demo"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--host", help="address to listen on (setting: host)")
        p.add_argument("--port", type=int, help="port to listen on (setting: port)")
    sub.choices["serve"].add_argument(
        "--fd",
        type=int,
        help="serve on this already listening socket (inherited file descriptor; a process "
        "manager or a test binds the port once and hands it over)",
    )
    sub.choices["serve"].add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N server processes on the one port (they share rooms through the Redis of "
        "the hub_url setting, required when N > 1, and the database)",
    )
    sub.choices["serve"].add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="serve HTTPS and WSS (TLS 1.2+) with this PEM certificate, the server's first, "
        "then any intermediate ones (setting: tls_cert)",
    )
    sub.choices["serve"].add_argument(
        "--tls-key",
        type=Path,
        metavar="FILE",
        help="the certificate's private key, PEM, unencrypted (setting: tls_key)",
    )
    sub.choices["demo"].add_argument(
        "--lan",
        action="store_true",
        help="serve HTTPS on every address (0.0.0.0) with a self-signed certificate it makes "
        "(kept in data_dir/demo/tls), so another machine on the network can join",
    )

    users = sub.add_parser("users", help="clinician accounts").add_subparsers(
        dest="action", required=True
    )
    add = users.add_parser("add", help="create a clinician account")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["doctor", "technician", "engineer", "admin"])
    add.add_argument("--site", required=True, help="site code, e.g. koriyama or wonju")
    add.add_argument("--name", default="", help="display name (default: the username)")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    users.add_parser("list", help="list the clinician accounts")
    for action, help_text in (
        ("disable", "disable an account: its sessions and sockets end at once"),
        ("enable", "enable a disabled account again (the user logs in anew)"),
    ):
        users.add_parser(action, help=help_text, description=help_text).add_argument("username")
    reset = users.add_parser(
        "reset-password", help="give an account a new password and end its sessions"
    )
    reset.add_argument("username")
    reset.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )

    gateways = sub.add_parser("gateways", help="device gateway accounts").add_subparsers(
        dest="action", required=True
    )
    gadd = gateways.add_parser("add", help="create a gateway and print its key once")
    gadd.add_argument("name")
    gadd.add_argument("--site", required=True)

    audit = sub.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="action", required=True
    )
    verify = audit.add_parser("verify", help="check the hash chain; exit 1 if it is broken")
    verify.add_argument(
        "--anchor",
        type=Path,
        metavar="FILE",
        help="also check every head recorded in this file by 'audit anchor' is still in the "
        "chain (finds a tail cut off with the head rewound)",
    )
    anchor = audit.add_parser(
        "anchor",
        help="print the chain's head and append it to an anchor file outside the database "
        "(run it periodically)",
    )
    anchor.add_argument(
        "--file",
        type=Path,
        help="the anchor file (default: data_dir/audit-anchors.txt; keep it where the "
        "database's host cannot rewrite it)",
    )

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply schema migrations")

    sub.add_parser("sites", help="list the configured sites")
    devices_cli.add_parser(sub)
    gateway_cli.add_parser(sub)
    waveform_cli.add_parser(sub)
    export_cli.add_parser(sub)
    bench = sub.add_parser("bench", help="latency and throughput benchmarks")
    bench.add_argument("suite", choices=list(BENCH_SUITES))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="passed to the suite (--help)")
    return parser


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SettingsError("the passwords differ")
    return first


#: ``telemed bench SUITE``: the module each suite runs. Benchmarks load only when asked for:
#: they pull in the whole media stack.
BENCH_SUITES = {
    "latency": "benchmarks.latency",
    "audio": "benchmarks.audio_latency",
    "call": "benchmarks.call_latency",
    "waveforms": "benchmarks.waveforms",
    "relay": "benchmarks.signaling_relay",
    "connect": "benchmarks.connect_burst",
    "decode": "benchmarks.device_decode",
    "qrs": "benchmarks.qrs_accuracy",
    "bedside": "benchmarks.bedside_load",
    "wan": "benchmarks.wan",
    "dicom": "benchmarks.dicom_scp",
    "render": "benchmarks.imaging_render",
    "imaging": "benchmarks.imaging_to_screen",
    "browser": "benchmarks.browser_latency",
}


def _bench(suite: str, options: list[str]) -> int:
    module = BENCH_SUITES[suite]
    sys.argv = [f"telemed bench {suite}", *options]
    runpy.run_module(module, run_name="__main__")
    return 0


def _tls_context(cert: Path | None, key: Path | None, settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from the flags, else the settings; None: plain HTTP. Raises
    SettingsError (a missing, unreadable or mismatched file) before anything is served."""
    cert = cert or settings.tls_cert
    key = key or settings.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SettingsError("TLS needs both a certificate and its key: --tls-cert and --tls-key")
    import datetime as dt

    from telemed import tls

    context = tls.server_context(cert, key)
    end = tls.certificate_end(cert)
    if end <= dt.datetime.now(dt.UTC):
        print(
            f"telemed: warning: the TLS certificate {cert} expired on {end:%Y-%m-%d}; "
            "browsers and gateways will refuse it",
            file=sys.stderr,
        )
    return context


def _run(args: argparse.Namespace, settings: Settings) -> int:
    match args.command:
        case "serve" | "demo":
            # The certificate is checked before anything heavy loads; the demo's bedside (the
            # media stack) loads for the demo only.
            tls = (
                _tls_context(args.tls_cert, args.tls_key, settings)
                if args.command == "serve"
                else None
            )
            from telemed import serve

            try:
                if args.command == "serve" and args.workers > 1:
                    serve.serve_workers(
                        settings,
                        args.host,
                        args.port,
                        args.workers,
                        serve.worker_args(args.config, args.verbose, args.log_level, args),
                        fd=args.fd,
                        https=tls is not None,
                    )
                elif args.command == "serve":
                    serve.serve(settings, args.host, args.port, fd=args.fd, tls=tls)
                else:
                    from telemed import demo

                    demo.demo(settings, args.host, args.port, lan=args.lan)
            except serve.ServerStartError as exc:
                print(f"telemed: {exc}", file=sys.stderr)
                return 1
            return 0
        case "users" | "gateways" | "audit" | "db":
            return _admin(args, settings)
        case "devices":
            return devices_cli.run(args)
        case "gateway":
            return gateway_cli.run(args, settings)
        case "waveform":
            return waveform_cli.run(args)
        case "export":
            return export_cli.run(args, settings)
        case "bench":
            return _bench(args.suite, args.options)
        case "sites":
            for s in settings.sites:
                print(
                    f"{s.code:10} {s.name:12} {s.country} {s.language} {s.timezone} {s.mains_hz} Hz"
                )
            return 0
    raise AssertionError(f"unhandled command {args.command}")


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    from signaling.schema import Role
    from telemed import admin

    match args.command:
        case "users":
            match args.action:
                case "list":
                    return asyncio.run(admin.list_users(settings))
                case "disable" | "enable":
                    active = args.action == "enable"
                    return asyncio.run(admin.set_user_active(settings, args.username, active))
                case "reset-password":
                    password = _password(args.password_stdin)
                    return asyncio.run(admin.reset_password(settings, args.username, password))
            password = _password(args.password_stdin)
            return asyncio.run(
                admin.add_user(
                    settings, args.username, password, Role(args.role), args.site, args.name
                )
            )
        case "gateways":
            return asyncio.run(admin.add_gateway(settings, args.name, args.site))
        case "audit":
            if args.action == "anchor":
                return asyncio.run(admin.anchor_audit(settings, args.file))
            return asyncio.run(admin.verify_audit(settings, args.anchor))
        case "db":
            return asyncio.run(admin.upgrade_db(settings))
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how a hang is diagnosed in
    # the field without stopping the process.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        settings = load_settings(args.config)
        logs.configure(args.verbose, args.log_level or settings.log_level, settings.log_format)
        return _run(args, settings)
    except SettingsError as exc:
        print(f"telemed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stdout for the rest of the exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
