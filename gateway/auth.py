"""Identity at the edge: Interlink's authorization server endpoints, and the resource-server check
in front of every protected virtual server (RFC 6750, RFC 8414, RFC 9728, MCP "Authorization").

The decisions live in `identity/`; this module does the HTTP and the database."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final, cast

import anyio
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope, Send

from adapters.mcp.credentials import TokenSource
from gateway.audit import Actor, AuditLog, AuditUnavailable, DecisionInfo, Event, Outcome, Target
from gateway.fetch import FetchError, fetch_json
from gateway.settings import AgentSettings, GatewaySettings, TrustedIssuerSettings
from gateway.store import Store
from gateway.upstreams import resolve_values
from identity.agents import Agent, hash_secret
from identity.authorization import ASSERTION_ALGORITHMS, TOKEN_EXCHANGE, AuthorizationServer
from identity.errors import IdentityError, InsufficientScope, InvalidRequest, InvalidToken
from identity.keys import ALGORITHM, KeyRing, generate_key
from identity.tokens import Principal, TokenIssuer, TokenVerifier

log = structlog.get_logger(__name__)

PRINCIPAL: Final = "interlink.principal"
"""ASGI scope key under which the authenticated caller (a `Principal`) reaches the forwarding code."""

GATEWAY_CLIENT_ID: Final = "interlink"
"""The gateway's own identity in tokens it mints for upstreams."""

TOKEN_PATH: Final = "/oauth2/token"
JWKS_PATH: Final = "/oauth2/jwks.json"
REVOKE_PATH: Final = "/oauth2/revoke"
INTROSPECT_PATH: Final = "/oauth2/introspect"
AS_METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
PRM_PREFIX: Final = "/.well-known/oauth-protected-resource"
EMPTY_KEYS: Final = KeySet([])
NO_STORE: Final = {"cache-control": "no-store", "pragma": "no-cache"}
REFRESH_S: Final = 2.0
"""How often keys and revocations are re-read from the database, so a revocation or key rotation
made by another replica or by the `interlink` CLI takes effect within this many seconds."""


class Identity:
    """Keys, registrations, revocations and the token machinery, for one gateway process."""

    def __init__(self, settings: GatewaySettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings.identity
        self.issuer_url = settings.public_url
        self.resources = {
            f"mcp/{v.name}": f"{self.issuer_url}/mcp/{v.name}" for v in settings.virtual_servers
        } | {
            f"a2a/{name}": f"{self.issuer_url}/a2a/{name}"
            for name in [a.name for a in settings.a2a_agents] + [p.name for p in settings.a2a_published]
        }
        if settings.a2a_agents:
            self.resources["a2a"] = f"{self.issuer_url}/a2a"  # the aggregate, routing endpoint
        """Resource name (`mcp/<virtual>`) -> canonical URI."""
        self._by_uri = {uri: name for name, uri in self.resources.items()}
        self._clock = clock
        self.audit: AuditLog | None = None
        """Where token issuance and refusals are recorded (set by the app)."""
        self._ring = KeyRing([])
        self._revoked: set[str] = set()
        self._store: Store | None = None
        self._external_keys: dict[str, KeySet] = {}
        self._external = {t.issuer: self._external_verifier(t) for t in self.settings.trusted_issuers}
        self.issuer = TokenIssuer(self.issuer_url, lambda: self._ring, self.settings.token_ttl_s, clock)
        self.verifier = TokenVerifier(
            self.issuer_url,
            lambda: self._ring,
            max_ttl_s=self.settings.token_ttl_s,
            is_revoked=lambda jti: jti in self._revoked,
            clock=clock,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("identity store is not open")
        return self._store

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Identity]:
        """Open the database, make sure a signing key exists, apply the config's agents."""
        async with Store.open(self.settings.database_url) as store:
            self._store = store
            now = int(self._clock())
            if not await store.signing_keys():
                await store.add_signing_key(generate_key(now))
                log.info("signing_key_created")
            await self.reload_keys()
            self._revoked |= await store.revoked_ids(now)
            for agent in self.settings.agents:
                await store.put_agent(_agent(agent), source="config")
            self.server = AuthorizationServer(
                self.issuer,
                self.verifier,
                store,
                store,
                token_endpoint=self.issuer_url + TOKEN_PATH,
                resources=lambda: self._by_uri,
                revoke=self.revoke,
                clock=self._clock,
            )
            for trusted in self.settings.trusted_issuers:
                await self._refresh_issuer(trusted)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._refresh_forever)
                if self.settings.trusted_issuers:
                    tg.start_soon(self._refresh_issuers_forever)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
                    self._store = None

    async def _refresh_forever(self) -> None:
        while True:
            await anyio.sleep(REFRESH_S)
            try:
                await self.reload_keys()
                self._revoked = await self.store.revoked_ids(int(self._clock()))
            except Exception:  # noqa: BLE001 - a database hiccup must not stop future refreshes
                log.exception("identity_refresh_failed")

    def _external_verifier(self, trusted: TrustedIssuerSettings) -> TokenVerifier:
        return TokenVerifier(
            trusted.issuer,
            lambda: self._external_keys.get(trusted.issuer, EMPTY_KEYS),
            max_ttl_s=trusted.max_token_ttl_s,
            is_revoked=lambda jti: jti in self._revoked,
            clock=self._clock,
            algorithms=trusted.algorithms,
            require_at_jwt=trusted.require_at_jwt,
            client_id_claim=trusted.client_id_claim,
        )

    async def _refresh_issuer(self, trusted: TrustedIssuerSettings) -> None:
        """Fetch one trusted issuer's JWKS; until a fetch succeeds its tokens are refused."""
        try:
            document = await fetch_json(trusted.jwks_url, allow_private=trusted.allow_private_network)
            self._external_keys[trusted.issuer] = KeySet.import_key_set(cast(Any, document))
            log.info("trusted_issuer_keys_loaded", issuer=trusted.issuer, keys=len(document.get("keys", [])))
        except (FetchError, ValueError, TypeError, KeyError, JoseError) as exc:
            log.warning("trusted_issuer_keys_unavailable", issuer=trusted.issuer, cause=str(exc))

    async def _refresh_issuers_forever(self) -> None:
        while True:
            for trusted in self.settings.trusted_issuers:
                await self._refresh_issuer(trusted)
            await anyio.sleep(min((t.jwks_refresh_s for t in self.settings.trusted_issuers), default=3600))

    async def reload_keys(self) -> None:
        """Re-read the signing keys; the ring (and so the verifier's cache) changes only when they do."""
        keys = await self.store.signing_keys()
        if {(k.kid, k.active_from) for k in keys} != {(k.kid, k.active_from) for k in self._ring.keys}:
            self._ring = KeyRing(keys)

    async def revoke(self, jti: str, expires_at: int) -> None:
        await self.store.revoke(jti, expires_at)
        self._revoked.add(jti)
        log.info("token_revoked", jti=jti)

    def upstream_tokens(self, audience: str, scopes: list[str]) -> TokenSource:
        """Tokens Interlink signs for an upstream that trusts its JWKS: `sub` is the gateway itself
        (`interlink`), `aud` the upstream; a fresh one shortly before the previous expires."""

        async def source() -> tuple[str, float]:
            issued = self.issuer.issue(
                subject=GATEWAY_CLIENT_ID,
                client_id=GATEWAY_CLIENT_ID,
                audience=audience,
                scopes=scopes,
                tenant=None,
            )
            return issued.token, float(issued.claims["exp"])

        return source

    def add_resource(self, name: str) -> None:
        """A resource registered at run time (`a2a/<agent>`, or `a2a`): tokens may name it now."""
        uri = f"{self.issuer_url}/{name}"
        self.resources[name] = uri
        self._by_uri[uri] = name

    def remove_resource(self, name: str) -> None:
        """No new token for it (live ones are refused by the endpoint, which no longer exists)."""
        uri = self.resources.pop(name, None)
        if uri is not None:
            self._by_uri.pop(uri, None)

    def resource_uri(self, virtual: str, kind: str = "mcp") -> str:
        return self.resources[f"{kind}/{virtual}" if virtual else kind]

    def metadata_url(self, virtual: str, kind: str = "mcp") -> str:
        return (
            f"{self.issuer_url}{PRM_PREFIX}/{kind}/{virtual}"
            if virtual
            else f"{self.issuer_url}{PRM_PREFIX}/{kind}"
        )

    # -- resource server ------------------------------------------------------------------------

    def authenticate(
        self, scope: Scope, virtual: str, required: Sequence[str], face: str = "mcp"
    ) -> Principal:
        """RFC 6750 §2.1: exactly one `Authorization: Bearer` header; never the query string or body."""
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        if any(
            p.startswith(b"access_token=") or b"&access_token=" in p for p in [scope.get("query_string", b"")]
        ):
            raise InvalidRequest("send the access token in the Authorization header, not the URL")
        if len(values) > 1:
            raise InvalidRequest("more than one Authorization header")
        if not values:
            raise InvalidToken("authentication required")
        kind, _, token = values[0].decode("latin-1").partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise InvalidToken("use an Authorization: Bearer token")
        verifier = self._external.get(_unverified_issuer(token.strip()) or "", self.verifier)
        principal = verifier.verify(token.strip(), self.resource_uri(virtual, face))
        missing = [s for s in required if s not in principal.scopes]
        if missing:
            raise InsufficientScope(f"this resource needs scope {' '.join(required)}", tuple(required))
        return principal

    async def send_challenge(self, send: Send, virtual: str, error: IdentityError, kind: str = "mcp") -> None:
        """401/403/400 with `WWW-Authenticate: Bearer` naming the resource metadata (RFC 9728 §5.1)."""
        params = [f'resource_metadata="{self.metadata_url(virtual, kind)}"']
        if not (isinstance(error, InvalidToken) and error.description == "authentication required"):
            params.append(f'error="{error.error}"')
            params.append(f'error_description="{error.description}"')
        if isinstance(error, InsufficientScope):
            params.append(f'scope="{" ".join(error.required)}"')
        response = JSONResponse(
            {"error": error.error, "error_description": error.description},
            status_code=error.status_code,
            headers={"www-authenticate": "Bearer " + ", ".join(params), **NO_STORE},
        )
        await response({"type": "http"}, _no_receive, send)

    # -- routes ---------------------------------------------------------------------------------

    def routes(
        self, scopes: Mapping[str, Sequence[str]], a2a_scopes: Mapping[str, Sequence[str]] | None = None
    ) -> list[Route]:
        """Authorization-server endpoints plus one RFC 9728 document per protected virtual server
        (`/mcp/<name>`) and per protected A2A agent (`/a2a/<name>`)."""
        by_kind = {"mcp": scopes, "a2a": a2a_scopes if a2a_scopes is not None else {}}  # live: may grow

        async def as_metadata(request: Request) -> JSONResponse:
            return JSONResponse(self._as_metadata())

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse(self._ring.jwks(), headers={"cache-control": "max-age=60"})

        async def token(request: Request) -> Response:
            return await self._oauth_call(request, "token")

        async def revoke(request: Request) -> Response:
            return await self._oauth_call(request, "revoke")

        async def introspect(request: Request) -> Response:
            return await self._oauth_call(request, "introspect")

        async def protected_resource(request: Request) -> JSONResponse:
            virtual = request.path_params.get("virtual", "")
            kind = request.url.path.removeprefix(PRM_PREFIX + "/").split("/", 1)[0]
            known = by_kind.get(kind, {})
            if virtual not in known:
                return JSONResponse({"error": "not_found"}, status_code=404)
            what = "virtual MCP server" if kind == "mcp" else "A2A agent"
            return JSONResponse(
                {
                    "resource": self.resource_uri(virtual, kind),
                    "authorization_servers": [self.issuer_url],
                    "scopes_supported": list(known[virtual]),
                    "bearer_methods_supported": ["header"],
                    "resource_signing_alg_values_supported": [ALGORITHM],
                    "resource_name": f"Interlink {what} {virtual}",
                }
            )

        return [
            Route(AS_METADATA_PATH, as_metadata, methods=["GET"]),
            Route(JWKS_PATH, jwks, methods=["GET"]),
            Route(TOKEN_PATH, token, methods=["POST"]),
            Route(REVOKE_PATH, revoke, methods=["POST"]),
            Route(INTROSPECT_PATH, introspect, methods=["POST"]),
            Route(PRM_PREFIX + "/mcp/{virtual}", protected_resource, methods=["GET"]),
            Route(PRM_PREFIX + "/a2a/{virtual}", protected_resource, methods=["GET"]),
            Route(PRM_PREFIX + "/a2a", protected_resource, methods=["GET"]),
        ]

    async def _oauth_call(self, request: Request, endpoint: str) -> Response:
        """RFC 6749 §3.2: form-encoded POST; errors as §5.2 JSON, never cached."""
        authorization = request.headers.get("authorization")
        fields: dict[str, list[str]] = {}
        try:
            if (
                request.headers.get("content-type", "").split(";")[0].strip()
                != "application/x-www-form-urlencoded"
            ):
                raise InvalidRequest("send an application/x-www-form-urlencoded body")
            form = await request.form(max_files=0, max_fields=50)
            fields = {k: [str(v) for v in form.getlist(k)] for k in form}
            body: dict[str, Any] = {}
            if endpoint == "token":
                agent, body = await self.server.token(fields, authorization)
                claims = self.verifier.verify(body["access_token"], None)
                await self.store.record_issued(claims.token_id, agent.client_id, claims.expires_at)
                if self.audit is not None:  # durable before the token is handed out
                    await self.audit.append(oauth_event(request, endpoint, fields, claims=claims))
                log.info("token_issued", client_id=agent.client_id, tenant=agent.tenant, scope=body["scope"])
            elif endpoint == "revoke":
                await self.server.revoke(fields, authorization)
            else:
                body = await self.server.introspect(fields, authorization)
        except IdentityError as exc:
            log.info("oauth_request_refused", endpoint=endpoint, error=exc.error)
            if self.audit is not None:
                self.audit.append_nowait(oauth_event(request, endpoint, fields, error=exc))
            headers = dict(NO_STORE)
            if exc.status_code == 401 and authorization is not None:
                headers["www-authenticate"] = 'Basic realm="interlink"'
            return JSONResponse(
                {"error": exc.error, "error_description": exc.description},
                status_code=exc.status_code,
                headers=headers,
            )
        except AuditUnavailable:
            return JSONResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "the audit trail cannot record this request; try again shortly",
                },
                status_code=503,
                headers={**NO_STORE, "retry-after": "1"},
            )
        return JSONResponse(body, headers=NO_STORE)

    def _as_metadata(self) -> dict[str, Any]:
        """RFC 8414 §2. `code_challenge_methods_supported` is listed because MCP clients refuse an
        authorization server without it, although only client_credentials is offered today."""
        base = self.issuer_url
        return {
            "issuer": base,
            "token_endpoint": base + TOKEN_PATH,
            "jwks_uri": base + JWKS_PATH,
            "revocation_endpoint": base + REVOKE_PATH,
            "introspection_endpoint": base + INTROSPECT_PATH,
            "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
            ],
            "introspection_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
            ],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": sorted({s for a in self.settings.agents for s in a.scopes}),
        }


AUDITED_FORM_FIELDS: Final = ("grant_type", "resource", "scope", "audience", "requested_token_type")
"""OAuth form fields copied into audit records (never secrets, assertions or tokens)."""


def oauth_event(
    request: Request,
    endpoint: str,
    fields: Mapping[str, list[str]],
    *,
    claims: Principal | None = None,
    error: IdentityError | None = None,
) -> Event:
    """The audit record of a token, revocation or introspection request: who, what was asked
    (allow-listed form fields, values cut to 200 characters), and the answer."""
    args = {k: ",".join(v)[:200] for k, v in fields.items() if k in AUDITED_FORM_FIELDS and v}
    claimed = next(iter(fields.get("client_id") or []), None)
    if claims is None and claimed:
        args["claimed_client_id"] = claimed[:200]
    client = request.scope.get("client")
    actor = Actor(
        agent=claims.client_id if claims else None,
        tenant=claims.tenant if claims else None,
        act=list(claims.actors) if claims else [],
        subject=claims.subject if claims and claims.subject != claims.client_id else None,
        token_id=claims.token_id if claims else None,
        address=client[0] if client else None,
    )
    if error is None:
        decision = DecisionInfo(effect="allow", reason="issued" if endpoint == "token" else "accepted")
        outcome = Outcome(status="ok")
    else:
        decision = DecisionInfo(effect="deny", reason=error.error)
        outcome = Outcome(status="denied", reason=error.error, code=error.status_code)
    return Event(
        event=f"oauth.{endpoint}",
        actor=actor,
        target=Target(protocol="oauth", method=endpoint, name=claims.audience if claims else None),
        decision=decision,
        outcome=outcome,
        args=args,
    )


def _unverified_issuer(token: str) -> str | None:
    """The `iss` a token claims, only to pick whose keys verify it; nothing else is trusted yet."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) else None


def _agent(settings: AgentSettings) -> Agent:
    secret = None
    if settings.secret is not None:
        where = f"identity.agents.{settings.client_id}"
        secret = resolve_values({"secret": settings.secret}, where)["secret"]
    return Agent(
        client_id=settings.client_id,
        name=settings.name,
        owner=settings.owner,
        tenant=settings.tenant,
        auth_method="client_secret" if secret is not None else "private_key_jwt",
        secret_hash=hash_secret(secret) if secret is not None else None,
        jwks=settings.jwks,
        audiences=tuple(settings.audiences),
        scopes=tuple(settings.scopes),
        expires_at=_epoch(settings.expires_at),
        enabled=settings.enabled,
        may_act_for=tuple(settings.may_act_for),
        groups=tuple(settings.groups),
    )


def _epoch(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}
