"""The A2A face: each configured downstream agent is proxied at `/a2a/<name>` (JSON-RPC binding,
A2A 1.0) with its card, rewritten to point at Interlink, at `/a2a/<name>/.well-known/agent-card.json`.

* **Cards are hostile input.** A `card_url` is fetched with the hardened fetcher (https and public
  addresses only unless `allow_private_network`, no redirects, 256 KiB, 5 s) and refreshed every
  `card_refresh_s`; every interface it names must be on the card's own origin, so a card cannot
  point Interlink at another host. A card that fails leaves the agent `card_error` in `/readyz`
  and its calls fail with `downstream_unavailable`.
* **Identity.** Each agent is a protected resource (`a2a/<name>`, RFC 9728 metadata at
  `/.well-known/oauth-protected-resource/a2a/<name>`) unless `public: true`; tokens need its
  `required_scopes` (default `a2a`). The caller's token never goes downstream: Interlink sends the
  configured headers, or with `auth: {kind: interlink}` a token it signs per call whose `sub` is the
  caller's subject and whose `act` names Interlink (and the caller's own delegation chain).
* **Tasks** live in the gateway database (`identity.database_url`), one table per agent, owned by the
  caller's client id: another agent's task is "not found" (no existence leak); restart and other
  replicas keep every task reachable. The downstream ids are in the task's metadata.
* **Policy and audit.** `SendMessage`/`SendStreamingMessage` are decided as action `SendMessage` on
  `a2a:<agent>/<skill>`: the skill named in the message's `metadata.skill`, else the card's only
  skill, else `*` (only a wildcard rule permits a message that names no skill). Every call is
  recorded (`a2a.<Method>`), a message write-ahead before it is forwarded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import structlog
from a2a.client import Client, ClientCallContext, ClientConfig, ClientFactory
from a2a.server.agent_execution import RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.models import create_task_model
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.tasks import DatabaseTaskStore
from a2a.types import (
    AgentCard,
    AgentInterface,
    CancelTaskRequest,
    ClientCredentialsOAuthFlow,
    Message,
    OAuth2SecurityScheme,
    OAuthFlows,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    TaskState,
)
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase
from starlette.authentication import AuthCredentials, SimpleUser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.a2a.proxy import SCOPE_KEY, SKILL_KEY, GovernedHandler, ProxyExecutor, _mapping
from adapters.mcp.guard import McpRequestGuard, send_error
from gateway.auth import GATEWAY_CLIENT_ID, PRINCIPAL, TOKEN_PATH, Identity
from gateway.enforce import Governor
from gateway.fetch import FetchError, fetch_json
from gateway.settings import InterlinkTokenAuth, OAuthClientCredentialsAuth, RemoteAgentSettings
from gateway.upstreams import resolve_values
from identity.errors import IdentityError
from identity.tokens import Principal

log = structlog.get_logger(__name__)

TERMINAL_TASK_STATES: Final = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)

CARD_PATH: Final = "/.well-known/agent-card.json"


class CardError(Exception):
    """The agent card cannot be used; the message is safe to show (no URL)."""


def parse_card(document: Mapping[str, Any], *, origin: str | None) -> AgentCard:
    """An A2A 1.0 card from JSON; with `origin`, every interface must be on it."""
    card = AgentCard()
    try:
        ParseDict(dict(document), card, ignore_unknown_fields=True)
    except ParseError as exc:
        raise CardError(f"not an A2A 1.0 agent card ({str(exc)[:120]})") from None
    if not card.supported_interfaces:
        raise CardError("the card names no interface")
    if not any(i.protocol_binding == "JSONRPC" for i in card.supported_interfaces):
        raise CardError("the card offers no JSON-RPC interface")
    if origin is not None:
        for interface in card.supported_interfaces:
            if _origin(interface.url) != origin:
                raise CardError("the card points at another origin than its own (refused)")
    return card


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass
class AgentState:
    name: str
    state: str = "starting"
    last_error: str | None = None
    card_fetched_at: float | None = None


class RemoteAgent:
    """One downstream A2A agent: its card, a client to it, and per-call credentials."""

    def __init__(self, settings: RemoteAgentSettings, identity: Identity) -> None:
        self.settings = settings
        self.name = settings.name
        self.timeout_s = settings.timeout_s
        self._identity = identity
        self.card: AgentCard | None = None
        self.status = AgentState(settings.name)
        self._client: Client | None = None
        self._http: httpx.AsyncClient | None = None
        self._headers = {
            k: str(v)
            for k, v in resolve_values(dict(settings.headers), f"a2a_agents.{settings.name}.headers").items()
        }
        self._oauth_token: tuple[str, float] | None = None
        self.slots = asyncio.Semaphore(settings.max_concurrency)

    async def load_card(self) -> None:
        try:
            if self.settings.card is not None:
                card = parse_card(self.settings.card, origin=None)
            else:
                url = self.settings.card_url or ""
                document = await fetch_json(url, allow_private=self.settings.allow_private_network)
                card = parse_card(document, origin=_origin(url))
        except (FetchError, CardError) as exc:
            self.status.state, self.status.last_error = "card_error", str(exc)
            log.warning("a2a_card_refused", agent=self.name, problem=str(exc))
            return
        self.card = card
        self.status.state, self.status.last_error = "ready", None
        self.status.card_fetched_at = time.time()
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=5.0),
                headers=self._headers,
                follow_redirects=False,
            )
        factory = ClientFactory(ClientConfig(streaming=True, httpx_client=self._http))
        self._client = factory.create(card)

    def client(self) -> Client:
        if self._client is None:
            raise ConnectionError(f"agent {self.name!r} has no usable card")
        return self._client

    async def call_context(self, context: RequestContext) -> ClientCallContext:
        return await self.call_context_for(context.call_context)

    async def call_context_for(self, call: ServerCallContext | None) -> ClientCallContext:
        headers: dict[str, str] = {}
        auth = self.settings.auth
        if isinstance(auth, InterlinkTokenAuth):
            principal = _principal(call)
            headers["Authorization"] = f"Bearer {self._delegated(principal, auth)}"
        elif isinstance(auth, OAuthClientCredentialsAuth):
            headers["Authorization"] = f"Bearer {await self._client_credentials(auth)}"
        return ClientCallContext(service_parameters=headers, timeout=self.timeout_s)

    def _delegated(self, principal: Principal | None, auth: InterlinkTokenAuth) -> str:
        """A token for the agent's audience: the caller as subject, Interlink as the acting party
        (RFC 8693 `act`), the caller's own chain nested below."""
        act: dict[str, Any] = {"sub": GATEWAY_CLIENT_ID}
        inner: dict[str, Any] = act
        if principal is not None:
            chain = (
                [principal.client_id, *principal.actors] if principal.client_id != principal.subject else []
            )
            for actor in chain:
                inner["act"] = {"sub": actor}
                inner = inner["act"]
        audience = auth.audience or self._base_url()
        issued = self._identity.issuer.issue(
            subject=principal.subject if principal else GATEWAY_CLIENT_ID,
            client_id=GATEWAY_CLIENT_ID,
            audience=audience,
            scopes=auth.scopes,
            tenant=principal.tenant if principal else None,
            act=act if principal else None,
        )
        return issued.token

    async def _client_credentials(self, auth: OAuthClientCredentialsAuth) -> str:
        from adapters.mcp.credentials import client_credentials

        if self._oauth_token is None or self._oauth_token[1] - time.time() < 30:
            secret = resolve_values({"s": auth.client_secret}, f"a2a_agents.{self.name}.auth")["s"]
            fetch = client_credentials(
                self.name,
                auth.token_url,
                auth.client_id,
                secret,
                scope=auth.scope,
                resource=auth.resource or self._base_url(),
                timeout_s=min(self.timeout_s, 10.0),
            )
            self._oauth_token = await fetch()
        return self._oauth_token[0]

    def _base_url(self) -> str:
        if self.card is not None:
            parts = urlsplit(self.card.supported_interfaces[0].url)
            return f"{parts.scheme}://{parts.netloc}"
        return self.settings.card_url or ""

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def skill_of(self, message: Message) -> str:
        if SKILL_KEY in message.metadata:
            value = message.metadata[SKILL_KEY]
            if isinstance(value, str) and value:
                return str(value)
        if self.card is not None and len(self.card.skills) == 1:
            return str(self.card.skills[0].id)
        return "*"


def _principal(call: ServerCallContext | None) -> Principal | None:
    if call is None:
        return None
    scope = call.state.get(SCOPE_KEY) or {}
    found = scope.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


class _TaskBase(DeclarativeBase):
    """Our own registry for the task table's mapped class (the SDK's own holds its `tasks` model)."""


TASK_TABLE: Final = "interlink_a2a_tasks"
_task_models: dict[str, type] = {}


def task_store(engine: AsyncEngine, agent: str) -> DatabaseTaskStore:
    """The tasks of one proxied agent: one table for all agents, each task owned by
    `<agent>/<caller client id>`, so a caller sees only its own tasks and only on that agent."""

    def owner(context: ServerCallContext) -> str:
        principal = _principal(context)
        return f"{agent}/{principal.client_id if principal else '-anonymous-'}"

    store = DatabaseTaskStore(engine, owner_resolver=owner)
    model = _task_models.get(TASK_TABLE)
    if model is None:  # the SDK builds a mapped class per call: build ours once per process
        model = _task_models[TASK_TABLE] = create_task_model(TASK_TABLE, base=_TaskBase)
    store.task_model = model
    return store


class FaceHandler(GovernedHandler):
    """Cancels downstream from whichever replica receives CancelTask: the SDK reaches the proxy
    executor's `cancel` only on the replica running the task; on another one it just records
    CANCELED in the shared store, which would leave the downstream task running."""

    def __init__(self, *args: Any, agent: RemoteAgent, store: DatabaseTaskStore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._agent = agent
        self._store = store

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Any:
        async def run() -> Any:
            found = await self._store.get(params.id, context)  # owner-scoped: others' tasks are not found
            if found is not None and found.status.state not in TERMINAL_TASK_STATES:
                downstream = _mapping(found).get("task_id")
                if downstream:
                    await self._cancel_downstream(downstream, context)
            return await DefaultRequestHandler.on_cancel_task(self, params, context)

        return await self._governed(context, "CancelTask", params.id, run)

    async def _cancel_downstream(self, task_id: str, context: ServerCallContext) -> None:
        try:
            call = await self._agent.call_context_for(context)
            async with asyncio.timeout(self._agent.timeout_s):
                await self._agent.client().cancel_task(CancelTaskRequest(id=task_id), context=call)
        except Exception as exc:  # noqa: BLE001 - the caller's task is canceled regardless
            log.info("a2a_downstream_cancel_failed", agent=self._agent.name, error=type(exc).__name__)


class _ContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context, plus the ASGI scope (the authenticated caller travels in it)."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[SCOPE_KEY] = request.scope
        return context


class A2AFace:
    """Every `/a2a/<name>` endpoint; `start(engine)` opens task stores once the database is open."""

    def __init__(
        self,
        agents: Sequence[RemoteAgentSettings],
        identity: Identity,
        governors: Mapping[str, Governor],
        public_url: str,
        max_body_bytes: int,
    ) -> None:
        self._identity = identity
        self._max_body_bytes = max_body_bytes
        self._public_url = public_url
        self.agents = {a.name: RemoteAgent(a, identity) for a in agents}
        self._governors = governors
        self._routers: dict[str, ASGIApp] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def start(self, engine: AsyncEngine) -> None:
        for name, agent in self.agents.items():
            await agent.load_card()
            store = task_store(engine, name)
            await store.initialize()
            handler = FaceHandler(
                ProxyExecutor(agent),
                store,
                self.card_for_callers(name),
                governor=self._governors[name],
                skill_of=agent.skill_of,
                agent=agent,
                store=store,
            )
            routes = create_jsonrpc_routes(handler, rpc_url=f"/a2a/{name}", context_builder=_ContextBuilder())
            self._routers[name] = McpRequestGuard(Router(routes=routes), self._max_body_bytes)
        self._refresher = asyncio.create_task(self._refresh_cards())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for agent in self.agents.values():
            await agent.close()

    async def _refresh_cards(self) -> None:
        while True:
            await asyncio.sleep(
                min(a.settings.card_refresh_s for a in self.agents.values()) if self.agents else 60
            )
            now = time.time()
            for agent in self.agents.values():
                fetched = agent.status.card_fetched_at or 0
                if agent.settings.card_url and now - fetched >= agent.settings.card_refresh_s:
                    await agent.load_card()

    def statuses(self) -> list[dict[str, Any]]:
        return [vars(a.status) | {} for a in self.agents.values()]

    def card_for_callers(self, name: str) -> AgentCard:
        """The downstream card as callers see it: Interlink's endpoint, Interlink's OAuth scheme,
        no downstream URLs, no signatures (they would not match the rewritten card)."""
        agent = self.agents[name]
        card = AgentCard()
        if agent.card is not None:
            card.CopyFrom(agent.card)
        else:
            card.name = name
        del card.supported_interfaces[:]
        card.supported_interfaces.append(
            AgentInterface(
                url=f"{self._public_url}/a2a/{name}", protocol_binding="JSONRPC", protocol_version="1.0"
            )
        )
        del card.signatures[:]
        card.ClearField("security_schemes")
        del card.security_requirements[:]
        card.ClearField("documentation_url")
        card.capabilities.push_notifications = False
        card.capabilities.extended_agent_card = False
        if not agent.settings.public:
            scopes = {s: s for s in agent.settings.required_scopes}
            flow = ClientCredentialsOAuthFlow(token_url=f"{self._public_url}{TOKEN_PATH}", scopes=scopes)
            card.security_schemes["interlink"].CopyFrom(
                SecurityScheme(
                    oauth2_security_scheme=OAuth2SecurityScheme(
                        flows=OAuthFlows(client_credentials=flow),
                        oauth2_metadata_url=f"{self._public_url}/.well-known/oauth-authorization-server",
                    )
                )
            )
            requirement = SecurityRequirement()
            requirement.schemes["interlink"].CopyFrom(StringList(list=list(agent.settings.required_scopes)))
            card.security_requirements.append(requirement)
        return card

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path_params"]["agent"]
        rest = scope["path_params"].get("rest", "")
        agent = self.agents.get(name)
        if agent is None:
            await send_error(send, "unknown_agent", f"no A2A agent named {name!r}")
            return
        if rest == CARD_PATH.lstrip("/") and scope["method"] == "GET":
            body = MessageToDict(self.card_for_callers(name))
            await JSONResponse(body, headers={"cache-control": "max-age=60"})(scope, receive, send)
            return
        if rest:
            await send_error(send, "unknown_agent", f"no A2A endpoint at /a2a/{name}/{rest}")
            return
        if not agent.settings.public:
            try:
                principal = self._identity.authenticate(
                    scope, name, agent.settings.required_scopes, face="a2a"
                )
            except IdentityError as exc:
                await self._identity.send_challenge(send, name, exc, kind="a2a")
                return
            scope[PRINCIPAL] = principal
            scope["user"] = SimpleUser(principal.client_id)
            scope["auth"] = AuthCredentials(sorted(principal.scopes))
        router = self._routers.get(name)
        if router is None:
            await send_error(send, "upstream_unavailable", f"agent {name!r} is not ready")
            return
        async with agent.slots:
            await router(scope, receive, send)
