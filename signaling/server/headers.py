"""Security headers on every HTTP response: what the clinic app needs, and nothing more.

The clinic app (``clinic_ui/static``) is plain ES modules loaded from this server, with no
inline script or style, no frames and no third-party origin; it talks to ``/api`` and
``/ws`` on the same origin, and shows the camera and plays sound from ``MediaStream``
objects (``srcObject``, which no fetch directive governs). So the policy is:

- ``Content-Security-Policy``: everything from ``'self'`` only; ``connect-src`` adds the
  WebSocket schemes (``wss:`` only, when served over HTTPS), since not every browser counts
  ``ws:`` to the same host as ``'self'``; images and media may also be ``data:`` and
  ``blob:`` (a snapshot preview); no plug-ins (``object-src 'none'``), no ``<base>``,
  forms post to ``'self'``; the app may not be framed (``frame-ancestors 'none'``).
- ``X-Frame-Options: DENY`` for browsers without ``frame-ancestors``;
  ``X-Content-Type-Options: nosniff``; ``Referrer-Policy: no-referrer`` (a consultation's
  id in a URL must not leak); ``Cross-Origin-Opener-Policy: same-origin``.
- ``Permissions-Policy``: camera, microphone and full screen for this origin only; the
  other powerful features for no one.
- ``Strict-Transport-Security`` when the server is reached over HTTPS
  (:attr:`~signaling.config.ServerOptions.https`).

The API's own pages (``/docs``, ``/redoc``: served only when ``api_docs`` is on) load their
script and style from a CDN and run inline script, so they get a policy that allows that.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_DOCS_CDN = "https://cdn.jsdelivr.net"
_HSTS = "max-age=31536000"


def content_security_policy(https: bool) -> str:
    """The clinic app's policy (see the module's docstring)."""
    websockets = "wss:" if https else "ws: wss:"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src 'self' {websockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _docs_policy() -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'unsafe-inline' {_DOCS_CDN}",
            f"style-src 'self' 'unsafe-inline' {_DOCS_CDN}",
            "img-src 'self' data: https://fastapi.tiangolo.com",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ]
    )


PERMISSIONS_POLICY = ", ".join(
    [
        "camera=(self)",
        "microphone=(self)",
        "fullscreen=(self)",
        "display-capture=()",
        "geolocation=()",
        "payment=()",
        "usb=()",
        "serial=()",
    ]
)


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response (refusals and
    static files too); a header the route set itself is left as it is."""

    def __init__(self, app: ASGIApp, *, https: bool, docs_paths: frozenset[str]) -> None:
        self.app = app
        self._docs_paths = docs_paths
        common = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Permissions-Policy": PERMISSIONS_POLICY,
        }
        if https:
            common["Strict-Transport-Security"] = _HSTS
        self._app_headers = {**common, "Content-Security-Policy": content_security_policy(https)}
        self._docs_headers = {**common, "Content-Security-Policy": _docs_policy()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path") in self._docs_paths
        extra = self._docs_headers if docs else self._app_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
