"""JWT access tokens (RFC 9068): issuing them, and validating every claim of one presented to us.

Pure apart from the clock and the revocation lookup, both constructor parameters.
Imports nothing from the gateway or the adapters.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from identity.errors import InvalidToken
from identity.keys import ALGORITHM, KeyRing

TOKEN_TYPE: Final = "at+jwt"
"""RFC 9068 §2.1: the `typ` header of an access token (`application/at+jwt` is the same type)."""

LEEWAY_S: Final = 30
"""Clock skew tolerated on `exp`, `nbf` and `iat` (bounded: the security cases allow at most 60 s)."""

VERIFIED_CACHE_SIZE: Final = 4096
"""Most tokens remembered as correctly signed (oldest forgotten first)."""

MAX_TOKEN_BYTES: Final = 8192
"""Longer bearer strings are rejected before any parsing."""

FORBIDDEN_HEADERS: Final = frozenset({"jku", "jwk", "x5u", "x5c"})
"""Headers that would let a token name its own key; we only ever use our published keys."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by a validated token: what policy and audit need."""

    subject: str
    client_id: str
    tenant: str | None
    scopes: frozenset[str]
    audience: str
    issuer: str
    token_id: str
    expires_at: int
    actors: tuple[str, ...] = ()
    """RFC 8693 §4.1 delegation chain, outermost (current) actor first; empty when acting for itself."""
    groups: frozenset[str] = frozenset()
    """The token's `groups` claim (strings only), for policy."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: Mapping[str, Any]
    expires_in: int


class TokenIssuer:
    """Signs RFC 9068 access tokens for exactly one audience."""

    def __init__(
        self, issuer: str, keys: Callable[[], KeyRing], ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.issuer = issuer
        self._keys = keys
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(
        self,
        *,
        subject: str,
        client_id: str,
        audience: str,
        scopes: Sequence[str],
        tenant: str | None,
        not_after: int | None = None,
        act: Mapping[str, Any] | None = None,
        groups: Sequence[str] = (),
    ) -> IssuedToken:
        """RFC 9068 §2.2 claims plus `tenant` (and `act`, RFC 8693 §4.1); `exp` never passes `not_after`."""
        now = int(self._clock())
        key = self._keys().signing_key(now)
        if key is None:
            raise RuntimeError("no signing key is active")
        exp = now + self.ttl_s if not_after is None else min(now + self.ttl_s, not_after)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "client_id": client_id,
            "aud": audience,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": secrets.token_urlsafe(16),
        }
        if tenant is not None:
            claims["tenant"] = tenant
        if act is not None:
            claims["act"] = dict(act)
        if groups:
            claims["groups"] = sorted(groups)
        header = {"typ": TOKEN_TYPE, "alg": ALGORITHM, "kid": key.kid}
        return IssuedToken(jwt.encode(header, claims, key.private_key()), claims, exp - now)


class TokenVerifier:
    """Validates a bearer token for one audience: signature, `alg`, `typ`, `iss`, exact `aud`, times,
    lifetime, revocation (RFC 9068 §4; MCP authorization "Token Handling")."""

    def __init__(
        self,
        issuer: str,
        keys: Callable[[], KeyRing | KeySet],
        *,
        max_ttl_s: int,
        is_revoked: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
        leeway_s: int = LEEWAY_S,
        algorithms: Sequence[str] = (ALGORITHM,),
        require_at_jwt: bool = True,
        client_id_claim: str = "client_id",
    ) -> None:
        """`keys` gives our ring, or (for a trusted external issuer) its fetched JWKS; such issuers may
        use other algorithms, may not label tokens `at+jwt`, and may name the client in `azp`."""
        self.issuer = issuer
        self._keys = keys
        self._algorithms = list(algorithms)
        self._require_at_jwt = require_at_jwt
        self._client_id_claim = client_id_claim
        self._verified: dict[str, tuple[KeySet, dict[str, Any]]] = {}
        """Tokens whose signature and header already checked out against this exact key set. An
        agent presents the same token on every call of its lifetime, so only the first pays for the
        signature (~0.1 ms); every claim (times, issuer, audience, revocation) is still checked on
        every call, and a changed key set (rotation, refetched JWKS) empties the cache in effect."""
        self._max_ttl_s = max_ttl_s
        self._is_revoked = is_revoked
        self._clock = clock
        self._leeway_s = leeway_s

    def verify(self, token: str, audience: str | None) -> Principal:
        """The caller's Principal, or InvalidToken saying (safely) what was wrong.

        `audience=None` skips only the audience check: for revocation and introspection at the
        authorization server, never for a resource."""
        claims = self._decode(token)
        now = int(self._clock())
        options: dict[str, ClaimsOption] = {
            "iss": {"essential": True, "value": self.issuer},
            "sub": {"essential": True},
            self._client_id_claim: {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "jti": {"essential": True},
        }
        registry = JWTClaimsRegistry(now=now, leeway=self._leeway_s, **options)
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(_claim_problem(exc)) from None
        aud = claims.get("aud")
        if audience is None and isinstance(aud, str):
            audience = aud
        if not (aud == audience or (isinstance(aud, list) and aud == [audience])):
            raise InvalidToken("token is not for this resource (audience mismatch)")
        assert audience is not None
        if not isinstance(claims["iat"], int) or claims["iat"] > now + self._leeway_s:
            raise InvalidToken("token is issued in the future")
        if claims["exp"] - claims["iat"] > self._max_ttl_s:
            raise InvalidToken("token lifetime exceeds the maximum")
        if self._is_revoked(str(claims["jti"])):
            raise InvalidToken("token has been revoked")
        claims["client_id"] = claims[self._client_id_claim]
        return _principal(claims, audience)

    def _decode(self, token: str) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise InvalidToken("token is malformed")
        keys = self._keys()
        key_set = keys.verification_keys() if isinstance(keys, KeyRing) else keys
        cached = self._verified.get(token)
        if cached is not None and cached[0] is key_set:
            return dict(cached[1])
        try:
            decoded = jwt.decode(token, key_set, algorithms=self._algorithms)
        except (JoseError, ValueError, KeyError, TypeError):
            raise InvalidToken("token signature or format is invalid") from None
        header = decoded.header
        if FORBIDDEN_HEADERS & header.keys():
            raise InvalidToken("token header names its own key")
        typ = str(header.get("typ", "")).lower()
        if self._require_at_jwt and typ not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
            raise InvalidToken("token is not an access token (typ must be at+jwt)")
        claims = dict(decoded.claims)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (key_set, claims)
        return dict(claims)


def _claim_problem(exc: JoseError) -> str:
    claim = getattr(exc, "claim", None)
    problems = {
        "exp": "token has expired",
        "nbf": "token is not yet valid",
        "iat": "token is issued in the future",
        "iss": "token is from another issuer",
    }
    if type(exc).__name__ == "MissingClaimError":
        return "token lacks a required claim"
    if type(exc).__name__ == "ExpiredTokenError":
        return problems["exp"]
    return problems.get(str(claim), "token has an invalid claim")


def _principal(claims: Mapping[str, Any], audience: str) -> Principal:
    scope = claims.get("scope", "")
    actors: list[str] = []
    act = claims.get("act")
    while isinstance(act, Mapping) and isinstance(act.get("sub"), str):
        actors.append(act["sub"])
        act = act.get("act")
    tenant = claims.get("tenant")
    groups = claims.get("groups")
    return Principal(
        subject=str(claims["sub"]),
        client_id=str(claims["client_id"]),
        tenant=tenant if isinstance(tenant, str) else None,
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        audience=audience,
        issuer=str(claims["iss"]),
        token_id=str(claims["jti"]),
        expires_at=int(claims["exp"]),
        actors=tuple(actors),
        groups=frozenset(g for g in groups if isinstance(g, str))
        if isinstance(groups, list)
        else frozenset(),
    )
