"""Access tokens: what we issue (RFC 9068) and every way a presented token is refused
(identity-research §9, cases 2-7, 9 and 12), each with 401 invalid_token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jwt

from identity.errors import InvalidToken
from identity.keys import KeyRing, generate_key
from identity.tokens import TokenIssuer, TokenVerifier

ISSUER = "http://127.0.0.1:8080"
AUD = "http://127.0.0.1:8080/mcp/payments"
NOW = 1_800_000_000
TTL = 300


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


RING = KeyRing([generate_key(NOW - 10)])
OTHER_RING = KeyRing([generate_key(NOW - 10)])


def issuer(clock: Clock | None = None, ring: KeyRing = RING, iss: str = ISSUER) -> TokenIssuer:
    return TokenIssuer(iss, lambda: ring, TTL, clock or Clock())


def verifier(clock: Clock | None = None, revoked: frozenset[str] = frozenset()) -> TokenVerifier:
    return TokenVerifier(
        ISSUER, lambda: RING, max_ttl_s=TTL, is_revoked=revoked.__contains__, clock=clock or Clock()
    )


def token(**overrides: Any) -> str:
    return (
        issuer()
        .issue(
            subject=overrides.get("sub", "agent-1"),
            client_id="agent-1",
            audience=overrides.get("aud", AUD),
            scopes=["mcp:tools"],
            tenant="acme",
        )
        .token
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(signature)


def signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
    key = RING.keys[0]
    return jwt.encode({"alg": "ES256", "kid": key.kid, **header}, claims, key.private_key())


def good_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "agent-1",
        "client_id": "agent-1",
        "aud": AUD,
        "scope": "mcp:tools",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + TTL,
        "jti": "j1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def refused(tok: str, clock: Clock | None = None, revoked: frozenset[str] = frozenset()) -> str:
    with pytest.raises(InvalidToken) as err:
        verifier(clock, revoked).verify(tok, AUD)
    assert (err.value.error, err.value.status_code) == ("invalid_token", 401)
    return err.value.description


def test_issued_token_has_rfc9068_shape_and_verifies() -> None:
    """Header typ at+jwt, ES256, kid; claims iss sub client_id aud scope iat nbf exp jti tenant; 5 min."""
    issued = issuer().issue(
        subject="agent-1", client_id="agent-1", audience=AUD, scopes=["a", "b"], tenant="acme"
    )
    header = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header == {"typ": "at+jwt", "alg": "ES256", "kid": RING.keys[0].kid}
    assert set(issued.claims) == {
        "iss",
        "sub",
        "client_id",
        "aud",
        "scope",
        "iat",
        "nbf",
        "exp",
        "jti",
        "tenant",
    }
    assert issued.claims["exp"] - issued.claims["iat"] == issued.expires_in == TTL
    principal = verifier().verify(issued.token, AUD)
    assert (principal.client_id, principal.tenant, principal.scopes) == (
        "agent-1",
        "acme",
        frozenset({"a", "b"}),
    )


def test_expiry_never_outlives_not_after() -> None:
    issued = issuer().issue(
        subject="s", client_id="c", audience=AUD, scopes=[], tenant=None, not_after=NOW + 60
    )
    assert issued.claims["exp"] == NOW + 60


@pytest.mark.parametrize(
    "other",
    [
        "http://127.0.0.1:8080/mcp",  # parent path: no prefix matching
        "http://127.0.0.1:8080/mcp/payments/",  # trailing slash
        "http://127.0.0.1:8080/mcp/hr",  # sibling virtual server
        "HTTP://127.0.0.1:8080/mcp/payments",  # different spelling is a different string
    ],
)
def test_token_for_another_audience_is_refused(other: str) -> None:
    """Case 2: `aud` must equal this resource's canonical URI exactly."""
    assert "audience" in refused(token(aud=other))


@pytest.mark.parametrize("iss", ["http://127.0.0.1:8080/", "http://evil.example", "http://127.0.0.1:8081"])
def test_token_from_another_issuer_is_refused(iss: str) -> None:
    """Case 3: `iss` is compared exactly, so even a trailing slash differs."""
    tok = issuer(iss=iss).issue(subject="s", client_id="c", audience=AUD, scopes=[], tenant=None).token
    assert "issuer" in refused(tok)


def test_alg_none_is_refused() -> None:
    """Case 4: an unsigned token."""
    refused(forge({"alg": "none", "typ": "at+jwt"}, good_claims()))


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """Case 4: key confusion, HMAC keyed with our public JWK."""
    public = json.dumps(RING.keys[0].public_jwk()).encode()
    head = {"alg": "HS256", "typ": "at+jwt", "kid": RING.keys[0].kid}
    unsigned = forge(head, good_claims()).rsplit(".", 1)[0]
    mac = hmac.new(public, unsigned.encode(), hashlib.sha256).digest()
    refused(unsigned + "." + b64(mac))


@pytest.mark.parametrize("kid", ["unknown", "../../etc/passwd", "http://evil.example/jwks.json"])
def test_unknown_kid_is_refused(kid: str) -> None:
    """Case 4: a kid we never published (whatever it looks like) finds no key; nothing is fetched."""
    other = OTHER_RING.keys[0]
    refused(jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": kid}, good_claims(), other.private_key()))


def test_token_signed_by_a_foreign_key_is_refused() -> None:
    refused(
        issuer(ring=OTHER_RING).issue(subject="s", client_id="c", audience=AUD, scopes=[], tenant=None).token
    )


@pytest.mark.parametrize(
    ("header", "value"),
    [("jku", "http://evil.example/k"), ("x5u", "http://evil.example/k"), ("jwk", RING.keys[0].public_jwk())],
)
def test_self_describing_key_headers_are_refused(header: str, value: object) -> None:
    """Case 4: a token may not point at its own key."""
    assert "own key" in refused(signed({"typ": "at+jwt", header: value}, good_claims()))


@pytest.mark.parametrize("typ", ["JWT", "dpop+jwt", None])
def test_wrong_typ_is_refused(typ: str | None) -> None:
    """Case 5: an ID token or a DPoP proof presented as an access token."""
    header = {"typ": typ} if typ else {}
    assert "typ" in refused(signed(header, good_claims()))


def test_application_at_jwt_typ_is_accepted() -> None:
    verifier().verify(signed({"typ": "application/at+jwt"}, good_claims()), AUD)


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        (good_claims(exp=NOW - 31), "expired"),
        (good_claims(nbf=NOW + 120), "not yet valid"),
        (good_claims(iat=NOW + 120, nbf=None, exp=NOW + 300), "future"),
        (good_claims(exp=NOW + 3600), "lifetime"),
        (good_claims(jti=None), "required claim"),
        (good_claims(client_id=None), "required claim"),
        (good_claims(sub=None), "required claim"),
    ],
)
def test_time_and_required_claims(claims: dict[str, Any], words: str) -> None:
    """Case 6 and 12: expired, not yet valid, issued in the future, too long-lived, incomplete."""
    assert words in refused(signed({"typ": "at+jwt"}, claims))


def test_leeway_is_bounded() -> None:
    """Case 6: 30 s of skew is tolerated, 31 s is not."""
    verifier().verify(signed({"typ": "at+jwt"}, good_claims(exp=NOW - 29)), AUD)
    refused(signed({"typ": "at+jwt"}, good_claims(exp=NOW - 31)))


def test_expired_token_with_a_valid_signature_is_refused() -> None:
    """Case 7: full claim validation always runs, not only the signature check."""
    tok = token()
    refused(tok, clock=Clock(NOW + TTL + 60))


def test_revoked_jti_is_refused() -> None:
    """Case 9."""
    tok = token()
    jti = verifier().verify(tok, AUD).token_id
    assert "revoked" in refused(tok, revoked=frozenset({jti}))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c", "x" * 9000, "Bearer x.y.z"])
def test_garbage_is_refused(garbage: str) -> None:
    refused(garbage)


def test_delegation_chain_is_read() -> None:
    """RFC 8693 §4.1: nested `act`, outermost first."""
    tok = (
        issuer()
        .issue(
            subject="user-7",
            client_id="agent-1",
            audience=AUD,
            scopes=[],
            tenant=None,
            act={"sub": "agent-1", "act": {"sub": "orchestrator"}},
        )
        .token
    )
    assert verifier().verify(tok, AUD).actors == ("agent-1", "orchestrator")


def test_key_rotation_keeps_old_tokens_valid_and_publishes_ahead() -> None:
    """The next key is published before it signs; tokens of the previous key verify until retired."""
    old = generate_key(NOW - 1000)
    new = generate_key(NOW, active_from=NOW + TTL)
    ring = KeyRing([old, new])
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old.kid, new.kid}
    assert all("d" not in k for k in ring.jwks()["keys"])
    assert ring.signing_key(NOW) == old
    assert ring.signing_key(NOW + TTL) == new
    assert ring.retirable(NOW + TTL + TTL + 1, TTL) == [old]
    assert ring.retirable(NOW + TTL, TTL) == []


def test_cached_signature_still_gets_every_claim_check() -> None:
    """A token seen before skips only the signature check: expiry and revocation still apply, and a
    new key ring (rotation) is checked afresh."""
    clock = Clock()
    revoked: set[str] = set()
    ring_box = [RING]
    check = TokenVerifier(
        ISSUER, lambda: ring_box[0], max_ttl_s=TTL, is_revoked=revoked.__contains__, clock=clock
    )
    tok = token()
    principal = check.verify(tok, AUD)
    assert check.verify(tok, AUD) == principal
    with pytest.raises(InvalidToken, match="audience"):
        check.verify(tok, AUD + "/other")
    revoked.add(principal.token_id)
    with pytest.raises(InvalidToken, match="revoked"):
        check.verify(tok, AUD)
    revoked.clear()
    clock.now = NOW + TTL + 60
    with pytest.raises(InvalidToken, match="expired"):
        check.verify(tok, AUD)
    clock.now = NOW
    ring_box[0] = OTHER_RING  # our key is gone: the cached verdict must not survive
    with pytest.raises(InvalidToken, match="signature"):
        check.verify(tok, AUD)
