"""Every HTTP route of the app, fuzzed: no input may produce a 5xx or an unhandled exception.

The routes are read from the app's router, so a new route is fuzzed without a change here.
Each request mutates one thing: the body (nesting, bytes that are not UTF-8, lone
surrogates, huge numbers, wrong types, oversized), the path's parameters, the query string,
the content type; with a valid token (an administrator's, who may reach every route), a
clinician's, or none. Every refusal must be a 4xx problem document (RFC 9457)."""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from clinic_ui import STATIC_DIR
from signaling.schema import Role
from signaling.server.app import create_app
from signaling.server.problems import has_lone_surrogate
from tests.fuzzing import budget
from tests.helpers import LiveServer, make_config, run_server
from tests.signaling.sockets import request_consultation

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


@dataclass(frozen=True)
class Route:
    path: str
    methods: frozenset[str]


def _routes() -> list[Route]:
    """Every HTTP route the app serves (the WebSocket and the static files aside)."""
    app = create_app(make_config(Path("/nonexistent")), static_dir=STATIC_DIR)
    return [
        Route(r.path, frozenset(r.methods))
        for r in iter_route_contexts(app.router.routes)
        if r.path is not None and r.methods
    ]


def test_the_router_is_read() -> None:
    paths = {r.path for r in _routes()}
    assert {"/api/auth/login", "/api/consultations", "/healthz"} <= paths


# -- what is sent -----------------------------------------------------------------------------

_NESTED = "[" * 50_000
_BAD_UTF8 = [b"\xff\xfe\xfd", b'{"username":"\xc3\x28","password":"x"}', b"\xed\xa0\x80", b"\x80"]
_STRINGS = [
    "",
    "\ud800",
    "\udfff\ud800",
    "x" * 100_000,
    "血圧 혈압",
    "../../../../etc/passwd",
    "<script>alert(1)</script>",
    "\x00",
    "' OR 1=1 --",
    "c-" + "0" * 60,
]
_VALUES: list[object] = [
    None,
    True,
    -1,
    0,
    2**63,
    -(2**64),
    1e308,
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": [1, 2, 3]}}},
    *_STRINGS,
]
_FIELDS = [
    "username",
    "password",
    "name",
    "key",
    "consulting_site",
    "consent_cross_border",
    "reason",
    "patient",
    "numerics",
    "alarms",
    "limits",
    "at",
    "samples",
    "type",
]
_PATH_VALUES = [
    "c-0",
    "..",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%00",
    "%ff%fe",
    "%ED%A0%80",
    quote("血"),
    "x" * 5000,
    "-1",
    "99999999999999999999999999",
    "1e999",
    "null",
]
_QUERIES = [
    "",
    "since=%ff",
    "since=yesterday",
    "since=9999-99-99T99:99:99",
    "step=1e999",
    "step=-1",
    "step=99999999999999999999999999",
    "limit=%00",
    "state=%ED%A0%80",
    "a=" + "x" * 8000,
    "since=2026-01-01T00:00:00%2B99:00",
]
_CONTENT_TYPES = [
    "application/json",
    "application/problem+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "image/jpeg",
    "image/png",
    "application/json; charset=latin-1",
    None,
]


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(_BAD_UTF8)
    if kind == 1:
        return _NESTED.encode()
    if kind == 2:
        # A huge number: Python refuses integers of more than 4300 digits.
        return b'{"username": ' + b"9" * 5000 + b', "password": "x"}'
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if kind == 4:
        return b'{"reason": "' + b"x" * 300_000 + b'"}'
    if kind == 5:
        text = json.dumps({rng.choice(_FIELDS): rng.choice(_VALUES) for _ in range(3)})
        return text[: rng.randrange(len(text) + 1)].encode()  # truncated
    if kind == 6:
        return rng.choice([b"NaN", b"Infinity", b"null", b"[]", b'"x"', b"", b"{}"])
    # Plausible objects with wrong, odd or hostile values (lone surrogates escaped as JSON
    # does: the text is ASCII, the decoded string is not encodable).
    fields = {rng.choice(_FIELDS): rng.choice(_VALUES) for _ in range(rng.randrange(1, 6))}
    return json.dumps(fields).encode()


def _path(rng: random.Random, route: Route, ids: list[str]) -> str:
    def value(_: re.Match[str]) -> str:
        return rng.choice(ids) if rng.random() < 0.4 else rng.choice(_PATH_VALUES)

    path = _PARAM.sub(value, route.path)
    if rng.random() < 0.1:
        path += rng.choice(["/", "/..", "//x", "/%00", "?"])
    query = rng.choice(_QUERIES) if rng.random() < 0.5 else ""
    return f"{path}?{query}" if query else path


def _requests(
    rng: random.Random, routes: list[Route], ids: list[str], n: int
) -> Iterator[tuple[str, str, bytes | None, str | None, str]]:
    """(method, path, body, content type, which token) for ``n`` requests: every route and
    method first, then random ones."""
    plan = [(r, m) for r in routes for m in sorted(r.methods)]
    for i in range(n):
        route, method = plan[i] if i < len(plan) else rng.choice(plan)
        if rng.random() < 0.05:
            method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"])
        body = _body(rng) if method not in ("GET", "HEAD") or rng.random() < 0.1 else None
        yield (
            method,
            _path(rng, route, ids),
            body,
            rng.choice(_CONTENT_TYPES),
            rng.choice(["admin", "doctor", "none", "forged"]),
        )


# -- the test ---------------------------------------------------------------------------------


async def _signed_in(server: LiveServer) -> tuple[dict[str, str], list[str]]:
    await server.add_user("admin", Role.ADMIN, "koriyama")
    await server.add_user("dk", Role.DOCTOR, "koriyama")
    await server.add_user("tw", Role.TECHNICIAN, "wonju")
    tokens = {name: await server.token(name) for name in ("admin", "dk", "tw")}
    cid = await request_consultation(server, tokens["tw"], "koriyama")
    return {
        "admin": tokens["admin"],
        "doctor": tokens["dk"],
        "forged": tokens["dk"][:-4] + "AAAA",
    }, [cid]


def _is_problem(response: httpx.Response) -> bool:
    if response.headers.get("content-type") != "application/problem+json":
        return False
    body = response.json()
    return body.get("status") == response.status_code and isinstance(body.get("detail"), str)


async def test_no_input_makes_a_server_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(10)
    routes = _routes()
    n = budget(600)
    assert n >= sum(len(r.methods) for r in routes)  # every route and method at least once
    statuses: dict[int, int] = {}
    async with run_server(
        make_config(tmp_path, login_max_failures=10**6, record_max_bytes=64 * 1024)
    ) as server:
        tokens, ids = await _signed_in(server)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            for method, path, body, content_type, who in _requests(rng, routes, ids, n):
                headers = {}
                if content_type is not None:
                    headers["content-type"] = content_type
                if who in tokens:
                    headers["authorization"] = f"Bearer {tokens[who]}"
                request = http.build_request(method, path, content=body, headers=headers)
                response = await http.send(request)
                what = (method, path[:80], (body or b"")[:80], content_type, who)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (what, response.text[:300])
                if response.status_code >= 400 and method != "HEAD":
                    assert _is_problem(response), (what, response.headers, response.text[:300])
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == [], [r.getMessage() for r in failures]
    # The fuzz reached the routes, not only the front door.
    assert any(200 <= s < 300 for s in statuses), statuses
    assert statuses.get(422, 0) > 0 and statuses.get(401, 0) > 0, statuses


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"username":"\xff\xfe","password":"x"}'),
        ("text/plain", b"\xff\xfe\xfd"),
        ("application/x-www-form-urlencoded", b"\xff=\xfe"),
        (None, b"\x80\x81"),
        ("application/json", b'{"username":"\\ud800"}'),
        ("application/json", b'{"username":"\\ud800","password":"correct horse battery"}'),
        ("application/json", b"[" * 60_000),
    ],
)
async def test_bad_login_bodies_are_refused_with_a_problem(
    server: LiveServer, content_type: str | None, body: bytes
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/api/auth/login", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert _is_problem(response), response.text
    assert response.json()["title"]


@pytest.mark.parametrize(
    ("body", "lone"),
    [
        (b'{"a":"\\ud800"}', True),
        (b'{"a":"\\uDFFF"}', True),
        (b'{"a":"\\ud83d\\ude00"}', False),  # a pair: an emoji
        (b'{"a":"\\\\ud800"}', False),  # an escaped backslash, then text
        (b'{"a":"\\\\\\ud800"}', True),
        (b'{"a":"\\ud83d\\u0041"}', True),
        (b'{"a":"\\u00e9"}', False),
    ],
)
def test_lone_surrogates_are_told_from_pairs_and_text(body: bytes, lone: bool) -> None:
    assert has_lone_surrogate(body) is lone
