"""The authorization server's decisions: client authentication and the token, revocation and
introspection endpoints (RFC 6749 §4.4, RFC 7523 §2.2, RFC 8707, RFC 7009, RFC 7662).

Takes parsed form fields and returns JSON-ready dicts; the HTTP layer lives in the gateway.
Imports nothing from the gateway or the adapters.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol, cast
from urllib.parse import unquote, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from identity.agents import Agent, check_secret
from identity.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    InvalidToken,
    UnsupportedGrantType,
)
from identity.tokens import LEEWAY_S, TokenIssuer, TokenVerifier

CLIENT_CREDENTIALS: Final = "client_credentials"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES: Final = (ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt")
JWT_BEARER_ASSERTION: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS: Final = ("ES256", "EdDSA", "RS256", "PS256")
"""Algorithms accepted on an agent's `private_key_jwt` assertion (never `none` or HMAC)."""
MAX_ASSERTION_LIFETIME_S: Final = 300
"""An assertion whose `exp` lies further ahead is refused (it would be replayable for longer)."""

Form = Mapping[str, Sequence[str]]


class AgentDirectory(Protocol):
    async def agent(self, client_id: str) -> Agent | None: ...


class ReplayCache(Protocol):
    """Remembers assertion `jti`s until they expire; `add` is False when one was already seen."""

    async def add(self, key: str, expires_at: int) -> bool: ...


class AuthorizationServer:
    """Issues one agent a token for one audience, after authenticating it (RFC 6749 §3.2.1)."""

    def __init__(
        self,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        agents: AgentDirectory,
        replay: ReplayCache,
        *,
        token_endpoint: str,
        resources: Callable[[], Mapping[str, str]],
        revoke: Callable[[str, int], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._verifier = verifier
        self._agents = agents
        self._replay = replay
        self._token_endpoint = token_endpoint
        self._resources = resources
        self._revoke = revoke
        self._clock = clock

    async def token(self, form: Form, authorization: str | None) -> tuple[Agent, dict[str, Any]]:
        """RFC 6749 §4.4.2 + §5.1: a bearer token, 5 minutes by default, never a refresh token.
        Returns the authenticated agent (for the audit) and the response body."""
        grant = _one(form, "grant_type", required=True)
        if grant == TOKEN_EXCHANGE:
            return await self._exchange(form, authorization)
        if grant != CLIENT_CREDENTIALS:
            raise UnsupportedGrantType(f"grant_type {grant!r} is not supported; use client_credentials")
        agent = await self.authenticate(form, authorization)
        resource = self._resource(form, agent)
        scopes = self._scopes(form, agent)
        issued = self._issuer.issue(
            subject=agent.client_id,
            client_id=agent.client_id,
            audience=resource,
            scopes=scopes,
            tenant=agent.tenant,
            not_after=agent.expires_at,
            groups=agent.groups,
        )
        return agent, {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(scopes),
        }

    async def _exchange(self, form: Form, authorization: str | None) -> tuple[Agent, dict[str, Any]]:
        """RFC 8693 §2: the authenticated agent acts for the subject of `subject_token`. The new
        token keeps the subject, records the chain in `act` (§4.1, current actor outermost), is
        for one downstream resource the actor is registered for, carries only scopes both the
        subject token and the actor hold, and never outlives the subject token."""
        actor = await self.authenticate(form, authorization)
        if _one(form, "subject_token_type", required=True) not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequest("subject_token_type must be an access token or a JWT")
        if "actor_token" in form:
            raise InvalidRequest("actor_token is not supported: the authenticated client is the actor")
        try:
            subject = self._verifier.verify(_one(form, "subject_token", required=True) or "", None)
        except InvalidToken as exc:
            raise InvalidGrant(f"subject_token is not acceptable: {exc.description}") from None
        if subject.client_id not in actor.may_act_for:
            raise InvalidGrant("this client may not act for the subject token's client")
        resource = self._resource(form, actor)
        allowed = [s for s in actor.scopes if s in subject.scopes]
        requested = (_one(form, "scope") or "").split() or allowed
        if not requested or any(s not in allowed for s in requested):
            raise InvalidScope(
                "scopes may only narrow: request scopes both the subject token and this client hold"
            )
        scopes = list(dict.fromkeys(requested))
        previous = subject.actors or ((subject.client_id,) if subject.client_id != subject.subject else ())
        chain: dict[str, Any] = {"sub": actor.client_id}
        inner = chain
        for earlier in previous:
            inner["act"] = {"sub": earlier}
            inner = inner["act"]
        issued = self._issuer.issue(
            subject=subject.subject,
            client_id=actor.client_id,
            audience=resource,
            scopes=scopes,
            tenant=subject.tenant,
            not_after=min(subject.expires_at, actor.expires_at or subject.expires_at),
            act=chain,
            groups=sorted(subject.groups),
        )
        return actor, {
            "access_token": issued.token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(scopes),
        }

    async def revoke(self, form: Form, authorization: str | None) -> None:
        """RFC 7009 §2: an agent revokes one of its own tokens; anything else is silently ignored."""
        agent = await self.authenticate(form, authorization)
        token = _one(form, "token", required=True) or ""
        try:
            principal = self._verifier.verify(token, None)
        except InvalidToken:
            return  # §2.2: invalid tokens do not cause an error response
        if principal.client_id == agent.client_id:
            await self._revoke(principal.token_id, principal.expires_at)

    async def introspect(self, form: Form, authorization: str | None) -> dict[str, Any]:
        """RFC 7662 §2.2, limited to the calling agent's own tokens (others read as inactive)."""
        agent = await self.authenticate(form, authorization)
        token = _one(form, "token", required=True) or ""
        try:
            p = self._verifier.verify(token, None)
        except InvalidToken:
            return {"active": False}
        if p.client_id != agent.client_id:
            return {"active": False}
        return {
            "active": True,
            "client_id": p.client_id,
            "sub": p.subject,
            "aud": p.audience,
            "iss": p.issuer,
            "scope": " ".join(sorted(p.scopes)),
            "exp": p.expires_at,
            "jti": p.token_id,
            "token_type": "Bearer",
            **({"tenant": p.tenant} if p.tenant else {}),
            **({"groups": sorted(p.groups)} if p.groups else {}),
        }

    async def authenticate(self, form: Form, authorization: str | None) -> Agent:
        """Exactly one client authentication method: HTTP Basic or form secret (development agents),
        or a `private_key_jwt` assertion (RFC 7523 §2.2, §3)."""
        basic = _basic(authorization)
        has_post = "client_secret" in form
        has_jwt = "client_assertion" in form or "client_assertion_type" in form
        if sum((basic is not None, has_post, has_jwt)) != 1:
            raise InvalidClient("authenticate the client with exactly one method")
        if has_jwt:
            return await self._assertion(form)
        client_id, secret = (
            basic if basic is not None else (_one(form, "client_id"), _one(form, "client_secret"))
        )
        form_id = _one(form, "client_id")
        if basic is not None and form_id is not None and form_id != client_id:
            raise InvalidRequest("client_id differs from the authenticated client")
        agent = await self._usable_agent(client_id or "")
        if agent.auth_method != "client_secret" or not check_secret(secret or "", agent.secret_hash):
            raise InvalidClient("client authentication failed")
        return agent

    async def _assertion(self, form: Form) -> Agent:
        if _one(form, "client_assertion_type") != JWT_BEARER_ASSERTION:
            raise InvalidClient(f"client_assertion_type must be {JWT_BEARER_ASSERTION}")
        assertion = _one(form, "client_assertion", required=True) or ""
        # The claimed issuer only picks whose keys to try; nothing is trusted before the signature.
        agent = await self._usable_agent(_unverified_issuer(assertion) or "")
        if agent.auth_method != "private_key_jwt" or agent.jwks is None:
            raise InvalidClient("client authentication failed")
        claims = self._verified_assertion(assertion, agent)
        if not await self._replay.add(f"{agent.client_id}:{claims['jti']}", int(claims["exp"]) + LEEWAY_S):
            raise InvalidClient("client assertion was already used")
        return agent

    def _verified_assertion(self, assertion: str, agent: Agent) -> dict[str, Any]:
        now = int(self._clock())
        try:
            token = jwt.decode(
                assertion,
                KeySet.import_key_set(cast(Any, dict(agent.jwks or {}))),
                list(ASSERTION_ALGORITHMS),
            )
            JWTClaimsRegistry(
                now=now,
                leeway=LEEWAY_S,
                iss={"essential": True, "value": agent.client_id},
                sub={"essential": True, "value": agent.client_id},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError, KeyError, TypeError):
            raise InvalidClient("client assertion is invalid") from None
        claims = dict(token.claims)
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if not ({self._token_endpoint, self._issuer.issuer} & set(audiences)):
            raise InvalidClient("client assertion is not addressed to this authorization server")
        if claims["exp"] > now + MAX_ASSERTION_LIFETIME_S + LEEWAY_S:
            raise InvalidClient("client assertion lives too long")
        return claims

    async def _usable_agent(self, client_id: str) -> Agent:
        agent = await self._agents.agent(client_id) if client_id else None
        if agent is None or not agent.usable(self._clock()):
            raise InvalidClient("client authentication failed")
        return agent

    def _resource(self, form: Form, agent: Agent) -> str:
        """RFC 8707 §2: exactly one absolute `resource` without fragment, registered for this agent."""
        values = form.get("resource", [])
        if len(values) != 1:
            raise InvalidTarget("give exactly one resource (the canonical URI of the server to call)")
        resource = values[0]
        parts = urlsplit(resource)
        if not parts.scheme or not parts.netloc or parts.fragment or "#" in resource:
            raise InvalidTarget("resource must be an absolute URI without a fragment")
        name = self._resources().get(resource)
        if name is None or name not in agent.audiences:
            raise InvalidTarget("this client may not obtain tokens for that resource")
        return resource

    def _scopes(self, form: Form, agent: Agent) -> list[str]:
        requested = (_one(form, "scope") or "").split()
        if not requested:
            raise InvalidScope("request at least one scope")
        extra = [s for s in requested if s not in agent.scopes]
        if extra:
            raise InvalidScope(f"scope not registered for this client: {' '.join(sorted(extra))}")
        return list(dict.fromkeys(requested))


def _unverified_issuer(assertion: str) -> str | None:
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) else None


def _one(form: Form, name: str, *, required: bool = False) -> str | None:
    """RFC 6749 §3.2: parameters must not be included more than once."""
    values = form.get(name, [])
    if len(values) > 1:
        raise InvalidRequest(f"parameter {name} is repeated")
    if not values or values[0] == "":
        if required:
            raise InvalidRequest(f"parameter {name} is missing")
        return None
    return values[0]


def _basic(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: Basic credentials, each part form-urlencoded."""
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("only Basic client authentication is accepted in the Authorization header")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
