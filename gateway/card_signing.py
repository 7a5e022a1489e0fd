"""Checking an agent card's signatures (A2A 1.0 `signatures`: JWS over the card's canonical JSON).

Trust comes only from the operator: the keys a card must be signed with are configured per agent
(`card_jwks`, a JWK Set). A signature's `kid` picks the key from that set; its `jku` is never
followed (a card naming where to fetch the keys that vouch for it proves nothing). With keys
configured, a card without a valid signature by one of them is refused: unsigned, tampered after
signing, signed by another key, or with an algorithm outside `algorithms`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from a2a.types import AgentCard
from a2a.utils.signing import SignatureVerificationError, create_signature_verifier
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

DEFAULT_ALGORITHMS: Final = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
"""Asymmetric only: a shared-secret (HS*) signature on a public card is meaningless."""


class CardSignatureError(Exception):
    """The card's signatures do not check out; the message is safe to show."""


def verify_card(
    card: AgentCard, jwks: Mapping[str, Any], algorithms: Sequence[str] = DEFAULT_ALGORITHMS
) -> None:
    """Raise CardSignatureError unless some signature on `card` is valid under a key of `jwks`."""
    try:
        keys = PyJWKSet.from_dict(dict(jwks))
    except (PyJWKError, PyJWKSetError, ValueError) as exc:
        raise CardSignatureError(f"the configured card_jwks is not a usable JWK Set ({exc})") from None
    allowed = [a for a in algorithms if not a.startswith("HS")]

    def key_for(kid: str | None, _jku: str | None) -> PyJWK:
        for key in keys.keys:
            if kid is not None and key.key_id == kid:
                return key
        raise PyJWKError(f"no configured key with kid {kid!r}")

    verifier = create_signature_verifier(key_for, allowed)
    try:
        verifier(card)
    except SignatureVerificationError as exc:
        what = "the card is not signed" if not card.signatures else "no valid signature by a configured key"
        raise CardSignatureError(f"{what} ({type(exc).__name__})") from None
