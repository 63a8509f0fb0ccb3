"""Running the signaling server (``telemed serve``) and the seeded demo (``telemed demo``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import uvicorn
import uvloop
from fastapi import FastAPI

from clinic_ui import STATIC_DIR
from media.imaging.render import render_frame
from runtime.tasks import cancel_and_wait
from signaling.auth import SecretHasher
from signaling.config import ServerConfig
from signaling.errors import AccountError
from signaling.schema import Role
from signaling.server.app import create_app
from signaling.storage import accounts
from signaling.storage.database import Database
from telemed.settings import Settings, SettingsError

log = logging.getLogger(__name__)
#: A worker that ended on its own is started again after this long (it would else spin).
WORKER_RESTART_S = 1.0
#: Seconds a worker has to stop after SIGTERM before it is killed.
WORKER_STOP_S = 15.0


class TlsFiles(Protocol):
    """``serve``'s TLS flags (the parsed command line)."""

    tls_cert: Path | None
    tls_key: Path | None


class ServerStartError(RuntimeError):
    """The server could not start: its address is taken, or the app's start-up failed."""


def uvicorn_config(
    app: FastAPI,
    config: ServerConfig,
    host: str,
    port: int,
    log_level: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> uvicorn.Config:
    """How the server is run, shared by ``serve``, ``demo`` and the tests.

    Logging is not uvicorn's to set up: ``telemed.logs`` (or pytest) configures it once, and
    uvicorn's loggers propagate to it. ``log_level`` only pins uvicorn's own loggers (tests
    pass ``"warning"``); ``None`` leaves them to ``telemed.logs``, which keeps the access log
    quiet unless the user asked for verbose output. ``tls``: serve HTTPS and WSS with this
    context (:func:`telemed.tls.server_context`)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        # The access logger's level decides whether lines appear (telemed.logs).
        access_log=True,
        # The protocol limit is checked by the app, which answers with an error message;
        # this transport limit only stops absurd frames (closed with 1009).
        ws_max_size=config.ws_max_message_bytes * 4,
        # Measured by benchmarks/signaling_relay.py at 500 consultations: p99 relay latency
        # 47 ms with the sans-I/O implementation against 191 ms with uvicorn's default.
        ws="websockets-sansio",
        # Signaling messages are a few kB (an SDP) on links that carry video: compressing
        # each cost 6 % of the relay's CPU for bandwidth nobody lacks.
        ws_per_message_deflate=False,
        lifespan="on",
        # At shutdown uvicorn waits for every connection to close. Over TLS a closing
        # connection waits for the peer's close_notify, which an idle keep-alive client
        # never sends: 30 s (asyncio's TLS shutdown timeout) per stop without this bound.
        timeout_graceful_shutdown=5,
        # A client's address is the peer's own, unless the peer is a proxy the settings
        # trust: then the one it names in X-Forwarded-For (the nearest untrusted hop).
        proxy_headers=bool(config.trusted_proxies),
        forwarded_allow_ips=list(config.trusted_proxies),
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: the kernel picks one), to be handed to
    :func:`start_server`. Binding here, once, means the port cannot be taken by someone else
    between choosing it and serving on it. Raises :class:`OSError` (address in use...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and accepted sockets inherit it. Without it every response whose headers
    # and body are written apart waited ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        # uvicorn exits the process when the app's start-up fails; the process is not its to
        # end here, so the owner of the task gets an exception instead (uvicorn logged why).
        raise ServerStartError("the server's start-up failed (its log says why)") from None


async def start_server(
    app: FastAPI,
    config: ServerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    log_level: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Serve ``app`` with uvicorn in this event loop; return once it accepts connections.

    Listens on ``sock`` when given (the caller bound it; uvicorn closes it at shutdown), else
    on ``host:port`` bound here (``port`` 0: a free port; the third value is the port bound).
    The caller owns the task: set ``server.should_exit = True`` and await the task to stop.
    Raises :class:`ServerStartError` when the address cannot be bound or the app cannot
    start (the task has then ended)."""
    if sock is None:
        try:
            sock = listening_socket(host, port)
        except OSError as exc:
            raise ServerStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    if sock.proto == 0:
        # The same socket, its protocol read back from the kernel (see listening_socket).
        sock = socket.socket(fileno=sock.detach())
    bound = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn_config(app, config, host, bound, log_level, tls))
    task = asyncio.create_task(_serve(server, sock), name="server")
    while not server.started:
        if task.done():
            await task  # raises what stopped it
            raise ServerStartError("the server stopped during start-up")
        # uvicorn offers no start-up event to wait on; start-up (migrations) takes a moment.
        await asyncio.sleep(0.01)
    return server, task, bound


def build_app(config: ServerConfig) -> FastAPI:
    """The server as ``telemed serve`` runs it: the clinic app at ``/`` and the DICOMweb
    rendered images made by :func:`media.imaging.render.render_frame` (the one place the
    renderer meets signaling)."""
    return create_app(config, static_dir=STATIC_DIR, renderer=render_frame)


def base_url(host: str, port: int, *, https: bool = False) -> str:
    """The address a browser on this machine opens for a server listening on ``host``."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    scheme = "https" if https else "http"
    return f"{scheme}://[{local}]:{port}" if ":" in local else f"{scheme}://{local}:{port}"


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    fd: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve until a signal. ``fd``: a listening socket inherited from the caller (then
    ``host`` and ``port`` only name it). ``tls``: serve HTTPS and WSS (responses then carry
    HSTS)."""
    # uvloop (installed with uvicorn[standard]): uvicorn pauses and resumes reading around
    # every WebSocket message, which on the default loop is a selector unregister and
    # register each time: 17 % of the relay's samples at 500 consultations
    # (benchmarks/signaling_relay.py), cheap on uvloop.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_until_stopped(settings, host or settings.host, port, fd, tls))


async def _serve_until_stopped(
    settings: Settings, host: str, port: int | None, fd: int | None, tls: ssl.SSLContext | None
) -> None:
    config = settings.server_config()
    if tls is not None:
        config = config.model_copy(update={"https": True})
    app = build_app(config)
    sock = None if fd is None else socket.socket(fileno=fd)
    _, task, bound = await start_server(
        app, config, host, settings.port if port is None else port, sock=sock, tls=tls
    )
    url = base_url(host, bound, https=tls is not None)
    print(f"telemed: serving on {url} (Ctrl-C stops)", flush=True)
    await task  # until a signal: uvicorn stops serving, then re-raises it


def worker_args(
    config_file: Path | None, verbose: int, log_level: str | None, tls: TlsFiles
) -> list[str]:
    """The command-line options ``serve --workers`` gives each worker (the rest of the
    settings reach it through the same environment and settings file)."""
    args = ["--config", str(config_file)] if config_file else []
    args += ["-v"] * verbose
    args += ["--log-level", log_level] if log_level else []
    args.append("serve")
    args += ["--tls-cert", str(tls.tls_cert)] if tls.tls_cert else []
    args += ["--tls-key", str(tls.tls_key)] if tls.tls_key else []
    return args


def serve_workers(
    settings: Settings,
    host: str | None,
    port: int | None,
    workers: int,
    args: list[str],
    *,
    fd: int | None = None,
    https: bool = False,
) -> None:
    """``telemed serve --workers N``: N server processes on one listening socket, bound here
    once (or inherited as ``fd``) and handed to each (``telemed serve --fd``; the kernel
    spreads the connections among them). They share the database and, through the Redis of
    ``hub_url`` (required: raises :class:`SettingsError` without it), the rooms. The
    database is migrated here first. A worker that ends on its own is started again; a
    signal stops them all. ``args``: :func:`worker_args`."""
    if settings.hub_url is None:
        raise SettingsError(
            f"--workers {workers} needs hub_url (a Redis the workers share rooms through, "
            'e.g. hub_url = "redis://127.0.0.1:6379/0" or TELEMED_HUB_URL)'
        )
    host = host or settings.host
    if fd is None:
        try:
            sock = listening_socket(host, settings.port if port is None else port)
        except OSError as exc:
            raise ServerStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    else:
        sock = socket.socket(fileno=fd)
    with sock:
        sock.listen(2048)
        settings.resolved_secret_key()  # written once, here, before the workers read it
        asyncio.run(_prepare_database(settings.server_config()))
        url = base_url(host, int(sock.getsockname()[1]), https=https)
        print(f"telemed: serving on {url} with {workers} workers (Ctrl-C stops)", flush=True)
        asyncio.run(_run_workers(workers, [*args, "--fd", str(sock.fileno())], sock.fileno()))


async def _prepare_database(config: ServerConfig) -> None:
    db = Database(config.database_url)
    try:
        async with db.exclusive():
            if config.auto_migrate:
                await db.migrate()
            await accounts.sync_sites(db, config.sites)
    finally:
        await db.close()


async def _run_workers(count: int, args: list[str], fd: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            for index in range(count):
                group.create_task(_worker(index, args, fd, stop), name=f"worker-{index}")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _worker(index: int, args: list[str], fd: int, stop: asyncio.Event) -> None:
    """Run worker ``index`` until ``stop``; again when it ends on its own."""
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "telemed",
            *args,
            pass_fds=(fd,),
            stdout=asyncio.subprocess.DEVNULL,
        )
        ended = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([stopping])
            if not ended.done():
                proc.terminate()
                try:
                    async with asyncio.timeout(WORKER_STOP_S):
                        await asyncio.shield(ended)
                except TimeoutError:
                    proc.kill()
                await ended
        if not stop.is_set():
            log.error(
                "worker %d (pid %d) ended with status %s; starting it again",
                index,
                proc.pid,
                proc.returncode,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WORKER_RESTART_S):
                    await stop.wait()


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: Role
    site: str


#: Demo accounts, seeded only by ``telemed demo`` into its own data directory.
DEMO_ACCOUNTS = (
    DemoAccount("doctor.koriyama", "demo-koriyama-doctor", Role.DOCTOR, "koriyama"),
    DemoAccount("tech.koriyama", "demo-koriyama-tech", Role.TECHNICIAN, "koriyama"),
    DemoAccount("doctor.wonju", "demo-wonju-doctor", Role.DOCTOR, "wonju"),
    DemoAccount("tech.wonju", "demo-wonju-tech", Role.TECHNICIAN, "wonju"),
    DemoAccount("admin", "demo-admin-password", Role.ADMIN, "koriyama"),
)
DEMO_GATEWAY = ("gateway.wonju", "wonju", "demo-gateway-key-wonju-bedside")


async def seed_demo(config: ServerConfig) -> None:
    """Create the demo accounts that do not exist yet."""
    db = Database(config.database_url)
    try:
        await db.migrate()
        await accounts.sync_sites(db, config.sites)
        hasher = SecretHasher(config.hash_cost)
        for acc in DEMO_ACCOUNTS:
            with contextlib.suppress(AccountError):  # seeded by an earlier run
                await accounts.add_user(
                    db, acc.username, acc.password, acc.role, acc.site, acc.username, hasher
                )
        name, site, key = DEMO_GATEWAY
        with contextlib.suppress(AccountError):
            await accounts.add_gateway(db, name, site, key, hasher)
    finally:
        await db.close()
