"""Debian's nginx in front of test servers: found (or the test skipped, and failed under CI),
configured in a test's directory with a site of the project's documentation, and started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest


def binary(test: str) -> str:
    """nginx's path; skips where it is not installed, fails ``test`` under CI."""
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the {test} test: nginx is missing (scripts/bootstrap)")
        pytest.skip("nginx is not installed (scripts/bootstrap installs it)")
    return path


def start(
    nginx: str,
    directory: Path,
    site: str,
    *,
    main: str,
    http: str,
    inherited: socket.socket | None = None,
    stderr: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """nginx in the foreground with its files in ``directory``: ``main`` and ``http`` are
    what the configuration's main and http contexts add (workers, logs), ``site`` the site's
    configuration. ``inherited``: a listening socket nginx takes over (its ``NGINX``
    variable) for a ``listen`` of the site on the same address; the caller closes it."""
    temp = directory / "nginx-temp"
    temp.mkdir()
    (directory / "telemed-site.conf").write_text(site)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
{main}
pid {directory}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    {http}
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {directory}/telemed-site.conf;
}}
"""
    )
    env = {**os.environ}
    if inherited is not None:
        env["NGINX"] = f"{inherited.fileno()};"
    return subprocess.Popen(
        [
            *(nginx, "-p", str(directory)),
            *("-e", str(directory / "nginx-error.log")),
            *("-c", str(conf)),
        ],
        env=env,
        pass_fds=(inherited.fileno(),) if inherited is not None else (),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
