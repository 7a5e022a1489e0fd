"""Token-signing keys: generation, the ring of published keys, and rotation (RFC 7517 JWKS).

Pure: the gateway persists `SigningKey.to_record()` and rebuilds the ring with `KeyRing(keys)`.
Imports nothing from the gateway or the adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from joserfc.jwk import ECKey, KeySet

ALGORITHM: Final = "ES256"
"""RFC 7518 §3.4 ECDSA P-256 SHA-256: the only algorithm Interlink signs or accepts for its tokens."""


@dataclass(frozen=True)
class SigningKey:
    """One key pair. Published in the JWKS from creation, used for signing from `active_from`."""

    kid: str
    private_jwk: dict[str, Any]
    created_at: int
    active_from: int

    def private_key(self) -> ECKey:
        return ECKey.import_key(self.private_jwk)

    def public_jwk(self) -> dict[str, Any]:
        return {k: v for k, v in self.private_jwk.items() if k != "d"}


def generate_key(now: int, *, active_from: int | None = None) -> SigningKey:
    """A fresh P-256 key; its `kid` is its RFC 7638 thumbprint, so a kid names exactly one key."""
    key = ECKey.generate_key("P-256", private=True)
    kid = key.thumbprint()
    jwk = key.as_dict(private=True) | {"kid": kid, "alg": ALGORITHM, "use": "sig"}
    return SigningKey(
        kid=kid, private_jwk=jwk, created_at=now, active_from=now if active_from is None else active_from
    )


class KeyRing:
    """The keys Interlink publishes; the newest active one signs, every one verifies."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self.keys = tuple(sorted(keys, key=lambda k: (k.active_from, k.created_at)))
        self._public = KeySet([ECKey.import_key(k.public_jwk()) for k in self.keys])

    def signing_key(self, now: float) -> SigningKey | None:
        """The newest key whose `active_from` has passed (None: no key may sign yet)."""
        active = [k for k in self.keys if k.active_from <= now]
        return active[-1] if active else None

    def verification_keys(self) -> KeySet:
        return self._public

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWKS document (RFC 7517 §5): never any private member."""
        return {"keys": [k.public_jwk() for k in self.keys]}

    def retirable(self, now: float, max_token_ttl_s: int) -> list[SigningKey]:
        """Keys no unexpired token can carry: a newer key has been signing for longer than a token lives."""
        out: list[SigningKey] = []
        for older, newer in zip(self.keys, self.keys[1:], strict=False):
            if newer.active_from + max_token_ttl_s < now:
                out.append(older)
        return out
