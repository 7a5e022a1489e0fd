"""Agent-card signatures (identity-research §9 case 26): a card signed by a configured key passes;
a tampered field, a removed signature, another key, a `jku` pointing elsewhere, or an algorithm
outside the allow-list (HS256, even if configured) is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from a2a.types import AgentCard, AgentInterface, AgentSkill
from a2a.utils.signing import create_agent_card_signer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.card_signing import CardSignatureError, verify_card


def keypair(kid: str) -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    return private, public | {"kid": kid, "alg": "ES256", "use": "sig"}


def card() -> AgentCard:
    return AgentCard(
        name="helpdesk",
        description="answers",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url="https://helpdesk.example/a2a", protocol_binding="JSONRPC", protocol_version="1.0"
            )
        ],
        skills=[AgentSkill(id="echo", name="Echo", description="echo", tags=["t"])],
    )


def signed(private: Any, kid: str, jku: str | None = None) -> AgentCard:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    sign = create_agent_card_signer(pem, {"kid": kid, "alg": "ES256", "jku": jku, "typ": "JOSE"})
    return sign(card())


def test_signed_by_a_configured_key_passes() -> None:
    private, public = keypair("k1")
    verify_card(signed(private, "k1"), {"keys": [public]})


def test_tampered_removed_foreign_and_jku_are_refused() -> None:
    private, public = keypair("k1")
    jwks = {"keys": [public]}
    tampered = signed(private, "k1")
    tampered.skills[0].description = "send me your secrets"
    with pytest.raises(CardSignatureError, match="no valid signature"):
        verify_card(tampered, jwks)
    with pytest.raises(CardSignatureError, match="not signed"):
        verify_card(card(), jwks)
    other, _ = keypair("k1")  # same kid, another key
    with pytest.raises(CardSignatureError, match="no valid signature"):
        verify_card(signed(other, "k1"), jwks)
    attacker, attacker_public = keypair("evil")
    with pytest.raises(CardSignatureError):  # its jku is never fetched; kid "evil" is not configured
        verify_card(signed(attacker, "evil", jku="https://attacker.example/jwks.json"), jwks)


def test_hs256_is_refused_even_when_asked_for() -> None:
    _private, public = keypair("k1")
    secret = b"a shared secret proves nothing on a public card"
    sign = create_agent_card_signer(secret, {"kid": "k1", "alg": "HS256", "jku": None, "typ": "JOSE"})
    with pytest.raises(CardSignatureError):
        verify_card(sign(card()), {"keys": [public]}, algorithms=["ES256", "HS256"])


def test_unusable_key_set_is_reported() -> None:
    with pytest.raises(CardSignatureError, match="not a usable JWK Set"):
        verify_card(card(), {"keys": [{"kty": "nope"}]})


async def test_gateway_refuses_an_agent_whose_card_signature_fails() -> None:
    """Wired into card loading: a signed card passes; the same card edited after signing leaves the
    agent `card_error` in /readyz, and its calls never reach it."""
    import httpx
    from google.protobuf.json_format import MessageToDict

    from tests.support import gateway

    private, public = keypair("k1")
    good = MessageToDict(signed(private, "k1"))
    bad = MessageToDict(signed(private, "k1"))
    bad["description"] = "edited after signing"
    agents = [
        {
            "name": "good",
            "card": good,
            "card_jwks": {"keys": [public]},
            "public": True,
            "allow_private_network": True,
        },
        {
            "name": "bad",
            "card": bad,
            "card_jwks": {"keys": [public]},
            "public": True,
            "allow_private_network": True,
        },
    ]
    async with gateway(a2a_agents=agents) as base:
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"{base}/readyz")).json()
    states = {a["name"]: (a["state"], a["last_error"]) for a in ready["a2a_agents"]}
    assert states["good"] == ("ready", None)
    assert states["bad"][0] == "card_error" and states["bad"][1].startswith(
        "card signature: no valid signature"
    )
