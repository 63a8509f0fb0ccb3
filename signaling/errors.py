"""The signaling package's exceptions: one tree, rooted at :class:`SignalingException`.

Catch the root to handle anything this package raises on purpose; programming errors stay
built-in exceptions. Protocol outcomes that travel to a client are data (an ``error``
message with an :class:`~signaling.schema.ErrorCode`, an HTTP status chosen by a route), not
exceptions: these classes carry what a route or the WebSocket needs to choose them.

    SignalingException
    ├── AuthError                the credentials or the token are not accepted
    │   ├── TokenExpired         a well-formed token past its expiry
    │   └── SessionEnded         the token's session was logged out or timed out
    ├── ProtocolError            a WebSocket message that cannot be accepted
    ├── AccountError             an account operation that cannot be done
    ├── ConsultationError        a request about a consultation that cannot be granted
    │   ├── ConsultationNotFound     no such consultation, or not visible to the caller
    │   ├── NotPermitted             visible, but the caller's role or site may not do it
    │   ├── InvalidRequest           the request itself is wrong (unknown site, ...)
    │   ├── IllegalTransition        the consultation's state does not allow it
    │   └── NotActive                chat or a snapshot for a consultation not (or no longer) active
    ├── InvalidImage             a snapshot's bytes are not an image of the declared type
    ├── InvalidMultipart         an upload's multipart body breaks its framing or bounds
    ├── InvalidInstance          a DICOM part that cannot be stored (not Part 10, no UIDs...)
    ├── SignalingError           (client side) the server refused a request
    └── UntrustedServer          (client side) the server's TLS certificate is not trusted
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signaling.schema import ConsultationState, Error, ErrorCode


class SignalingException(Exception):
    """The root of every exception this package raises on purpose."""


class AuthError(SignalingException):
    """Authentication failed; the message is safe to show to the client."""


class TokenExpired(AuthError):
    """The token was valid but has expired: the holder must refresh or sign in again."""


class SessionEnded(AuthError):
    """The session was logged out or timed out; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(SignalingException):
    """A message that cannot be accepted; ``code`` and ``reason`` go back in an ``error``."""

    def __init__(self, code: ErrorCode, reason: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.ref = ref

    def to_message(self) -> Error:
        from signaling.schema import Error

        return Error(code=self.code, reason=self.reason, ref=self.ref)


class AccountError(SignalingException):
    """An account operation that cannot be done (duplicate name, unknown site...)."""


class ConsultationError(SignalingException):
    """A request about a consultation that cannot be granted; the message says why."""


class ConsultationNotFound(ConsultationError):
    """No such consultation, or one the caller may not see (the two are not told apart)."""


class NotPermitted(ConsultationError):
    """The caller may see the consultation but its role or site may not do this."""


class InvalidRequest(ConsultationError):
    """The request is wrong in itself (the consulting site unknown or the caller's own)."""


class IllegalTransition(ConsultationError):
    """The consultation's state does not allow the event."""

    def __init__(self, state: ConsultationState, event: str) -> None:
        super().__init__(f"cannot {event} a consultation that is {state}")
        self.state = state
        self.event = event


class NotActive(ConsultationError):
    """The consultation is not active, so nothing can be added to its record: it has ended
    (closed or cancelled) or was never accepted. The message says which, for a person."""


class InvalidImage(SignalingException):
    """Bytes offered as a snapshot that are not a whole image of the declared type; the
    message says what is wrong with them."""


class InvalidMultipart(SignalingException):
    """A multipart body (a STOW-RS upload) that breaks its framing or the server's bounds
    (parts, header sizes); the message says where, for a person."""


class InvalidInstance(SignalingException):
    """One part of a STOW-RS upload that cannot be stored: not a DICOM Part 10 file, UIDs
    missing or malformed, a digest that does not match. ``status`` is the DICOM failure
    reason (PS3.18 and PS3.4: 0xC000 cannot understand, 0xA900 does not match the SOP class,
    0x0124 not authorised, 0x0111 duplicate); the message says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SignalingError(SignalingException):
    """The server refused a request of the client; ``code`` is the server's
    :class:`~signaling.schema.ErrorCode` (over the WebSocket) or the HTTP status."""

    def __init__(self, code: ErrorCode | int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class UntrustedServer(SignalingException):
    """(Client side) the server's TLS certificate failed verification: not signed by a
    trusted CA (a self-signed one needs its file given as the client's ``ca_file``), expired,
    or not naming the address used. Nothing was sent to the server."""

    def __init__(self, url: str, error: ssl.SSLCertVerificationError) -> None:
        self.url = url
        self.verify_message = str(error.verify_message or error.reason or error)
        super().__init__(
            f"the TLS certificate of {url} is not trusted ({self.verify_message}); to trust "
            "a self-signed certificate, give its file (or its CA's) as the CA file"
        )
