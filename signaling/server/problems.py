"""Every HTTP refusal as a problem document (RFC 9457), and no input that can make a 500.

:func:`install` puts three exception handlers on the app: one for a request that does not
validate (422, the errors listed without the offending input, which may be bytes that are
not UTF-8 or text that cannot be encoded), one for every ``HTTPException`` (its status,
detail and headers kept), and a last resort that logs the exception with its traceback and
answers a bare 500 problem, telling the client nothing of the cause. It also adds
:class:`SurrogateGuard`, which refuses a JSON body carrying a lone UTF-16 surrogate escape
(``"\\ud800"``): Python decodes it into a string no database and no UTF-8 encoder accepts.

A problem document has ``type`` (``about:blank``: the status says it all), ``title`` (the
status's phrase), ``status`` and ``detail`` (a sentence for people; clients may show it);
a 422 adds ``errors``: ``loc``, ``msg`` and ``type`` of each failed check.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signaling.server.refusals import audit_http_refusal

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: How many of a request's validation errors a 422 lists (the count is in ``detail``).
_MAX_ERRORS = 20


def problem(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> Response:
    """A problem document response. Never fails on the text it is given: a string that
    cannot be encoded as UTF-8 (a lone surrogate) is sent escaped."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": _phrase(status),
        "status": status,
        "detail": detail,
        **extra,
    }
    try:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        content = json.dumps(body, ensure_ascii=True).encode("ascii")
    return Response(content, status, headers=headers, media_type=PROBLEM_JSON)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_failed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e["type"]}
        for e in exc.errors()[:_MAX_ERRORS]
    ]
    count = len(exc.errors())
    parts = [f"{_loc(tuple(e['loc']))}: {e['msg']}" for e in errors[:5]]
    more = f" (and {count - len(parts)} more)" if count > len(parts) else ""
    log.info("%s %s: %d validation errors", request.method, request.url.path, count)
    return problem(422, "; ".join(parts) + more, errors=errors)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # A 401 (forged, expired, missing token) or 403 is audited before it is answered.
    await audit_http_refusal(request, exc.status_code, str(exc.detail))
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return problem(exc.status_code, str(exc.detail), headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not an input: logged with its traceback for whoever runs the server, and the
    # client learns nothing about its cause.
    log.error("unhandled exception in %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "the server failed to handle this request; it has been logged")


def install(app: FastAPI) -> None:
    """Answer every refusal with a problem document, and refuse lone surrogates."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(SurrogateGuard)


# One token of JSON text: an escaped backslash (skipped, so that ``\\ud800`` is the text it
# looks like), a surrogate pair (fine), or a lone surrogate escape (refused).
_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def has_lone_surrogate(body: bytes) -> bool:
    """True when the JSON text ``body`` escapes a UTF-16 surrogate that is not half of a
    pair (the escape, not the character: JSON text in UTF-8 cannot hold the character)."""
    if _MAYBE_SURROGATE.search(body) is None:
        return False  # nearly every body: one search at C speed
    return any(m.group(1) is not None for m in _ESCAPES.finditer(body))


class SurrogateGuard:
    """Refuses (400) a JSON request body that escapes a lone surrogate, before any route
    sees it. Other bodies pass untouched; a JSON body is read whole here, as the route
    would read it anyway, and handed on as one message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: let the app see that as it would have.
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if has_lone_surrogate(body):
            response = problem(400, "the body escapes a lone UTF-16 surrogate (not text)")
            await response(scope, receive, send)
            return
        await self.app(
            scope,
            _replay({"type": "http.request", "body": body, "more_body": False}, receive),
            send,
        )


def _is_json(scope: Scope) -> bool:
    """FastAPI decodes a body as JSON when it says so, or says nothing."""
    if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = bytes(value).split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


def _replay(first: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
