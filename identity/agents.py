"""Agent registrations: who may obtain tokens, for which audiences and scopes, and how it proves itself.

Pure values and secret hashing. Imports nothing from the gateway or the adapters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

AuthMethod = Literal["client_secret", "private_key_jwt"]

SCRYPT: Final = {"n": 2**14, "r": 8, "p": 1}
"""RFC 7914 parameters for stored client secrets (about 16 MiB and tens of ms per check)."""


@dataclass(frozen=True)
class Agent:
    """One registration. `audiences` name resources (`mcp/<virtual server>`), so a registration survives
    a change of the gateway's public URL; `expires_at` is Unix seconds."""

    client_id: str
    name: str
    owner: str
    auth_method: AuthMethod
    audiences: tuple[str, ...]
    scopes: tuple[str, ...]
    tenant: str | None = None
    secret_hash: str | None = field(default=None, repr=False)
    jwks: Mapping[str, Any] | None = None
    expires_at: int | None = None
    enabled: bool = True
    may_act_for: tuple[str, ...] = ()
    """Client ids whose tokens this agent may exchange to act on their behalf (RFC 8693)."""
    groups: tuple[str, ...] = ()
    """Policy groups (`principals.groups`); carried in its tokens' `groups` claim."""

    def usable(self, now: float) -> bool:
        return self.enabled and (self.expires_at is None or now < self.expires_at)


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash`, salted per secret; the secret itself is never stored."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **SCRYPT)
    parts = (str(SCRYPT["n"]), str(SCRYPT["r"]), str(SCRYPT["p"]), _b64(salt), _b64(digest))
    return "scrypt$" + "$".join(parts)


def check_secret(secret: str, stored: str | None) -> bool:
    """Constant-time comparison with a stored hash; False for anything malformed."""
    if stored is None:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(candidate, _unb64(digest))


def new_secret() -> str:
    """A development client secret: 256 random bits."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
