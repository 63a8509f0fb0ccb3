"""TURN REST credentials (draft-uberti-behave-turn-rest; coturn ``use-auth-secret``).

username = ``"<expiry unix time>:<user>"``, password = ``base64(HMAC-SHA1(secret, username))``.
coturn accepts them until the expiry time, checking nothing but the HMAC, so no state is shared
between this server and the TURN server beyond the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int


def turn_credential(secret: str, user: str, now: float, ttl_s: int) -> TurnCredential:
    """Credentials for ``user`` valid for ``ttl_s`` seconds from ``now`` (unix time)."""
    if ":" in user:
        raise ValueError("the TURN user part must not contain ':'")
    expires = int(now) + ttl_s
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode(), expires)
