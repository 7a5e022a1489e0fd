"""`create_app(settings)`: the gateway's ASGI application, wired from one settings object.

Routes: `/` (an index of what is served), `/healthz`, `/readyz`, and `/mcp/<virtual>` for every virtual
MCP server. The lifespan starts the upstream pool and each virtual server's session manager.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Final

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from adapters.mcp.guard import send_error
from adapters.mcp.naming import ToolSelection
from adapters.mcp.pool import UpstreamPool
from adapters.mcp.virtual import VirtualServer
from gateway import __version__
from gateway.a2a_face import A2AFace
from gateway.a2a_publish import published_agents
from gateway.a2a_remote import RemoteAgents, RemoteAgentSync, remote_routes
from gateway.admin_api import admin_routes
from gateway.approvals import Approvals
from gateway.audit import Actor, AuditLog, AuditStore, DecisionInfo, Event, Outcome, Target, signer_for
from gateway.auth import PRINCIPAL, Identity
from gateway.bridges import build_providers
from gateway.enforce import Governor
from gateway.pins import ToolPins
from gateway.policies import PolicyManager, initial_policy
from gateway.ratelimit import LocalLimiter, RedisLimiter
from gateway.registry import Registry
from gateway.settings import (
    GatewaySettings,
    PublishedAgentSettings,
    RemoteAgentSettings,
    VirtualServerSettings,
)
from gateway.upstreams import build_spec, resolve_values
from identity.errors import IdentityError


def create_app(
    settings: GatewaySettings,
    *,
    pool: UpstreamPool | None = None,
    clock: Callable[[], float] = time.time,
    config_path: Path | None = None,
) -> Starlette:
    """Build the gateway. `pool` and `clock` are seams for tests; by default the pool is built from
    `settings.upstreams`. `config_path`: the file `settings` came from, where the policy is reloaded
    from (unless `policy_file` names another)."""
    identity = Identity(settings, clock=clock)
    pool = pool or UpstreamPool([build_spec(u, identity.upstream_tokens) for u in settings.mcp_upstreams])
    security = _transport_security(settings.listen.host)
    audit = audit_log(settings, clock)
    identity.audit = audit
    initial = initial_policy(settings)
    limiter = RedisLimiter(settings.rate_limit_store) if settings.rate_limit_store else LocalLimiter()
    approvals = Approvals(lambda: identity.store.engine, ttl_s=settings.approval_ttl_s, clock=clock)
    pins = ToolPins(settings.upstreams, audit=audit, clock=clock)
    governors = {
        v.name: Governor(
            v.name,
            policy=initial,
            audit=audit,
            public=v.public,
            argument_fields=settings.audit.argument_fields,
            limiter=limiter,
            approvals=approvals,
            pins=pins,
            clock=clock,
        )
        for v in settings.virtual_servers
    }
    served: list[RemoteAgentSettings | PublishedAgentSettings] = [
        *settings.a2a_agents,
        *settings.a2a_published,
    ]
    """The A2A agents served at `/a2a/<name>`: proxied, and published from MCP tools."""

    def a2a_governor(a: RemoteAgentSettings | PublishedAgentSettings) -> Governor:
        return Governor(
            a.name,
            policy=initial,
            audit=audit,
            public=a.public,
            limiter=limiter,
            approvals=approvals,
            clock=clock,
            protocol="a2a",
        )

    a2a_governors = {a.name: a2a_governor(a) for a in served}
    a2a_governors["router"] = Governor(  # the aggregate endpoint's own calls (GetTask, ...)
        "router", policy=initial, audit=audit, public=False, clock=clock, protocol="a2a"
    )
    face = A2AFace(
        settings.a2a_agents,
        identity,
        a2a_governors,
        settings.public_url,
        settings.limits.max_body_bytes,
        settings.a2a_routes,
        push_key_file=settings.a2a_push.key_path(settings.identity.database_url),
        push=settings.a2a_push,
    )
    providers = build_providers(
        settings,
        identity=identity,
        face=face,
        a2a_governors=a2a_governors,
        config_dir=config_path.parent if config_path is not None else None,
    )
    policies = PolicyManager(
        settings, [*governors.values(), *a2a_governors.values()], config_path=config_path, audit=audit
    )
    virtuals = {
        v.name: VirtualServer(
            v.name,
            [pool.get(u) for u in v.upstreams if u not in providers],
            selection=ToolSelection(v.tools.include, v.tools.exclude),
            namespacing=v.namespacing,
            max_body_bytes=settings.limits.max_body_bytes,
            security=security,
            version=__version__,
            governor=governors[v.name],
            providers=[providers[u] for u in v.upstreams if u in providers],
        )
        for v in settings.virtual_servers
    }
    face.published.update(published_agents(settings, virtuals, a2a_governors))
    a2a_protected: dict[str, Sequence[str]] = {a.name: a.required_scopes for a in served if not a.public}
    if settings.a2a_agents:
        a2a_protected[""] = ["a2a"]
    """The RFC 9728 documents of A2A agents; agents registered at run time are added and removed."""
    remote_sync = RemoteAgentSync(
        face, identity, a2a_governors, a2a_governor, policies, a2a_protected, settings=settings
    )

    def remote_agents(request: Request) -> RemoteAgents:
        client = request.client
        return RemoteAgents(
            identity.store,
            settings,
            audit=audit,
            via="admin_api",
            live=remote_sync.refresh,
            who=f"admin_api@{client.host}" if client else "admin_api",
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(AuditStore.open(settings.audit.database_url))
            await stack.enter_async_context(audit.running(store))
            await stack.enter_async_context(policies.running())
            await stack.enter_async_context(identity.running())
            await stack.enter_async_context(pins.running(identity.store))
            await approvals.setup()
            await face.start(identity.store.engine)
            stack.push_async_callback(face.stop)
            await stack.enter_async_context(remote_sync.running())
            if isinstance(limiter, RedisLimiter):
                stack.push_async_callback(limiter.close)
            await stack.enter_async_context(pool.running())
            async with anyio.create_task_group() as tg:  # each may load a document: concurrently
                for provider in providers.values():
                    tg.start_soon(provider.start)
            for provider in providers.values():
                stack.push_async_callback(provider.stop)
            for v in virtuals.values():
                await stack.enter_async_context(v.manager.run())
            yield

    async def index(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": "interlink",
                "version": __version__,
                "mcp": {name: f"/mcp/{name}" for name in virtuals},
                "a2a": {name: f"/a2a/{name}" for name in [*face.agents, *face.published]},
                "health": "/healthz",
                "ready": "/readyz",
            }
        )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        statuses = [asdict(s) for s in [*pool.statuses(), *(p.status() for p in providers.values())]]
        down = [s["name"] for s in statuses if s["state"] in ("backoff", "starting", "stopped")]
        strict = request.query_params.get("strict") in ("1", "true")
        agents = face.statuses()
        agents += [  # registered at run time, but not openable on this replica
            {"name": n, "state": "unusable", "last_error": why}
            for n, why in sorted(remote_sync.failures.items())
        ]
        down += [a["name"] for a in agents if a["state"] != "ready"]
        body = {"status": "degraded" if down else "ok", "upstreams": statuses, "a2a_agents": agents}
        return JSONResponse(body, status_code=503 if (down and strict) else 200)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route(
            "/mcp/{virtual}",
            McpEndpoint(virtuals, {v.name: v for v in settings.virtual_servers}, identity, audit),
            methods=["GET", "POST", "DELETE"],
        ),
        Route("/a2a", AsgiEndpoint(face.serve_router), methods=["POST"]),
        Route("/a2a/rest/{rest:path}", AsgiEndpoint(face.serve_router), methods=["GET", "POST", "DELETE"]),
        Route("/.well-known/agent-card.json", AsgiEndpoint(face.serve_card), methods=["GET"]),
        Route("/a2a/{agent}", face, methods=["GET", "POST"]),
        Route("/a2a/{agent}/{rest:path}", face, methods=["GET", "POST", "DELETE"]),
        *identity.routes(
            {v.name: v.required_scopes for v in settings.virtual_servers if not v.public},
            a2a_protected,
        ),
        *admin_routes(
            _admin_token(settings),
            lambda: Registry(identity.store, settings),
            policies,
            approvals,
            audit,
            extra=lambda guard: remote_routes(guard, remote_agents, face),
        ),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class AsgiEndpoint:
    """A bound ASGI method as a route endpoint (Starlette would treat a plain method as a request
    handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class McpEndpoint:
    """Dispatches `/mcp/<virtual>` to that virtual server's streamable-HTTP app; 404 for unknown names.

    A protected (non-public) virtual server first authenticates the caller: the token must be issued
    for exactly this virtual server and carry its required scopes; the resulting `Principal` travels
    in the ASGI scope under `PRINCIPAL`. A 2025-11-25 session stays bound to the agent that opened it.
    """

    def __init__(
        self,
        virtuals: Mapping[str, VirtualServer],
        settings: Mapping[str, VirtualServerSettings],
        identity: Identity,
        audit: AuditLog | None = None,
    ) -> None:
        self._virtuals = virtuals
        self._settings = settings
        self._identity = identity
        self._audit = audit
        self._session_owners: dict[bytes, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path_params"]["virtual"]
        virtual = self._virtuals.get(name)
        if virtual is None:
            await send_error(send, "unknown_virtual_server", f"no virtual MCP server named {name!r}")
            return
        config = self._settings[name]
        if config.public:
            await virtual.asgi(scope, receive, send)
            return
        try:
            principal = self._identity.authenticate(scope, name, config.required_scopes)
        except IdentityError as exc:
            if self._audit is not None:  # without waiting: refusing never depends on the store
                self._audit.append_nowait(_refused(scope, name, exc))
            await self._identity.send_challenge(send, name, exc)
            return
        scope[PRINCIPAL] = principal
        session = dict(scope["headers"]).get(b"mcp-session-id")
        if session is not None:
            if self._session_owners.get(session) != principal.client_id:
                await send_error(send, "session_not_found", "Session not found")
                return
            await virtual.asgi(scope, receive, send)
            return
        await virtual.asgi(scope, receive, self._recording_sessions(send, principal.client_id))

    def _recording_sessions(self, send: Send, owner: str) -> Send:
        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == b"mcp-session-id":
                        self._session_owners[value] = owner
                        if len(self._session_owners) > MAX_SESSIONS:
                            del self._session_owners[next(iter(self._session_owners))]
            await send(message)

        return recording


def audit_log(settings: GatewaySettings, clock: Callable[[], float] = time.time) -> AuditLog:
    """The process's audit log (its store is opened by the app's lifespan)."""
    config = settings.audit
    return AuditLog(
        None,
        config.log_id,
        signer_for(config.key_file()),
        instance=config.log_id,
        checkpoint_every=config.checkpoint_every,
        checkpoint_interval_s=config.checkpoint_interval_s,
        clock=clock,
    )


def _refused(scope: Scope, virtual: str, error: IdentityError) -> Event:
    """The audit record of a request turned away at the door (no, bad or insufficient token)."""
    client = scope.get("client")
    return Event(
        event="mcp.auth",
        actor=Actor(address=client[0] if client else None),
        target=Target(protocol="mcp", server=virtual, method="authenticate"),
        decision=DecisionInfo(effect="deny", reason=error.error),
        outcome=Outcome(status="denied", reason=error.error, code=error.status_code),
    )


def _admin_token(settings: GatewaySettings) -> str | None:
    token = settings.identity.admin_token
    if token is None:
        return None
    return resolve_values({"admin_token": token}, "identity")["admin_token"]


MAX_SESSIONS: Final = 100_000
"""Most 2025-11-25 session owners remembered (oldest forgotten first, which closes their sessions)."""


def _transport_security(host: str) -> TransportSecuritySettings | None:
    """On a loopback listener, only loopback Host/Origin headers are accepted (DNS-rebinding defence)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
