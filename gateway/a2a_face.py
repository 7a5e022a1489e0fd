"""The A2A face: each configured downstream agent is proxied at `/a2a/<name>` (JSON-RPC binding,
A2A 1.0) with its card, rewritten to point at Interlink, at `/a2a/<name>/.well-known/agent-card.json`.

* **Cards are hostile input.** A `card_url` is fetched with the hardened fetcher (https and public
  addresses only unless `allow_private_network`, no redirects, 256 KiB, 5 s) and refreshed every
  `card_refresh_s`; every interface it names must be on the card's own origin, so a card cannot
  point Interlink at another host. A card that fails leaves the agent `card_error` in `/readyz`,
  and a message to it ends FAILED: "agent '<name>' is unavailable (...)" (audited as an error).
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
* **Push notifications.** A caller registers a webhook for its task (`CreateTaskPushNotificationConfig`
  or `SendMessage.configuration.task_push_notification_config`); Interlink itself POSTs every
  update of that task to it, with the caller's `X-A2A-Notification-Token`, from the events it relays
  and, for an agent with push support, from Interlink's own webhook at that agent
  (`gateway/a2a_hooks.py`: a task outlives its relay stream, and the downstream never learns the
  caller's URL or token). Webhook URLs are hostile input (SSRF): https and public
  addresses only unless the agent's `allow_private_webhooks`, checked when registered and again on
  every connection against the address connected to, no redirects, bounded time
  (`gateway/fetch.py`). Configs live in the gateway database (`interlink_a2a_push_configs`, shared by
  replicas), owned like tasks, encrypted with the Fernet key of `a2a_push.key_file`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import httpx
import structlog
from a2a.client import Client, ClientCallContext, ClientConfig, ClientFactory
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.cluster.task_store import ConcurrentTaskModificationError
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.models import create_push_notification_config_model, create_task_model
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.tasks import (
    DatabasePushNotificationConfigStore,
    DatabaseTaskStore,
)
from a2a.types import (
    AgentCard,
    AgentInterface,
    CancelTaskRequest,
    ClientCredentialsOAuthFlow,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    OAuth2SecurityScheme,
    OAuthFlows,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError
from cryptography.fernet import Fernet
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from sqlalchemy import Table, and_, or_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ColumnProperty, DeclarativeBase
from starlette.authentication import AuthCredentials, SimpleUser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.a2a.follow import FOLLOW_KEY, Ledger
from adapters.a2a.proxy import (
    HOLD_KEY,
    SCOPE_KEY,
    SKILL_KEY,
    DownstreamFailed,
    GovernedHandler,
    ProxyExecutor,
    _mapping,
    decide,
    fail_task,
    hold_task,
    message_args,
    message_meta,
    subscribable,
    to_a2a_error,
)
from adapters.a2a.relay import WHILE_RELAYED, refuse_relayed, relay_message, relayable
from adapters.mcp.guard import McpRequestGuard, send_error
from gateway import __version__
from gateway.a2a_hooks import OWNER_KEY, WEBHOOK_PATH, DownstreamWebhooks, HookStore
from gateway.auth import GATEWAY_CLIENT_ID, PRINCIPAL, TOKEN_PATH, Identity
from gateway.card_signing import CardSignatureError, verify_card
from gateway.enforce import Governor
from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.fetch import FetchError, check_url, check_webhook_url, fetch_json, webhook_client
from gateway.settings import (
    A2APushSettings,
    A2ARouteSettings,
    ConfigError,
    InterlinkTokenAuth,
    OAuthClientCredentialsAuth,
    PublishedAgentSettings,
    RemoteAgentSettings,
)
from gateway.upstreams import resolve_values
from gateway.webhooks import CachedConfigStore, QueuedSender, WebhookDispatcher, one_at_a_time
from identity.errors import IdentityError
from identity.tokens import Principal

if TYPE_CHECKING:
    from gateway.a2a_publish import PublishedAgent  # which builds on this module

log = structlog.get_logger(__name__)

T = TypeVar("T")

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


def own_audience(audience: str, public_url: str) -> bool:
    """Whether `audience` is the gateway's `public_url` or under it (`<public_url>/mcp/prod`): a
    token Interlink signs for it would be good at Interlink itself."""
    mine = public_url.rstrip("/").lower()
    theirs = audience.strip().rstrip("/").lower()
    return theirs == mine or theirs.startswith(mine + "/")


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
        self._failures = 0
        self._open_until = 0.0

    def available(self) -> bool:
        """A usable card, and the circuit not open (after the cooldown one trial call goes through)."""
        return self._client is not None and time.monotonic() >= self._open_until

    def record(self, ok: bool) -> None:
        """Circuit breaker: `circuit_failures` failures in a row open it for `circuit_cooldown_s`."""
        if ok:
            self._failures, self._open_until = 0, 0.0
            if self.status.state == "circuit_open":
                self.status.state, self.status.last_error = "ready", None
            return
        self._failures += 1
        if self._failures >= self.settings.circuit_failures:
            self._open_until = time.monotonic() + self.settings.circuit_cooldown_s
            self.status.state = "circuit_open"
            self.status.last_error = f"{self._failures} failures in a row; retrying after a cooldown"
            log.warning("a2a_circuit_open", agent=self.name, failures=self._failures)

    async def load_card(self) -> None:
        allow_private = self.settings.allow_private_network
        try:
            if self.settings.card is not None:
                card = parse_card(self.settings.card, origin=None)
                for interface in card.supported_interfaces:  # an inline card is as hostile as a fetched one
                    await check_url(interface.url, allow_private=allow_private)
            else:
                url = self.settings.card_url or ""
                document = await fetch_json(url, allow_private=self.settings.allow_private_network)
                card = parse_card(document, origin=_origin(url))
            if self.settings.card_jwks is not None:
                verify_card(card, self.settings.card_jwks, self.settings.card_signature_algorithms)
            if isinstance(self.settings.auth, OAuthClientCredentialsAuth):  # it gets the client secret
                try:
                    await check_url(self.settings.auth.token_url, allow_private=allow_private)
                except FetchError as exc:
                    raise FetchError(f"auth.token_url: {exc}") from None
        except CardSignatureError as exc:
            self.status.state, self.status.last_error = "card_error", f"card signature: {exc}"
            log.warning("a2a_card_signature_refused", agent=self.name, problem=str(exc))
            return
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
        if time.monotonic() < self._open_until:
            raise ConnectionError(f"agent {self.name!r} is failing (circuit open)")
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
            # `actors` already starts with the current actor (the client); a client acting for
            # someone without a chain in its token still names itself.
            chain = list(principal.actors) or (
                [principal.client_id] if principal.client_id != principal.subject else []
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
        """The message's `metadata.skill`, else the card's only skill, else `*`."""
        named = _skill_name(message)
        if named != "*":
            return named
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


def _owner(agent: str) -> Callable[[ServerCallContext], str]:
    def owner(context: ServerCallContext) -> str:
        fixed = context.state.get(OWNER_KEY)  # a downstream webhook's request, for the task's owner
        if isinstance(fixed, str):
            return fixed
        principal = _principal(context)
        return f"{agent}/{principal.client_id if principal else '-anonymous-'}"

    return owner


class CoalescingTaskStore(DatabaseTaskStore):
    """The SDK's database task store, written less often. The SDK saves the caller's task on every
    relayed event; most of those are progress of a task that is working. A task is written at once
    when it is new to this process or reaches any other state (completed, failed, canceled,
    rejected, input- or auth-required); while it works, the latest state is kept here and written
    at most every `flush_after_s` (and always before the next decisive write). `get` in this
    process sees the latest state; lists and other replicas may see progress `flush_after_s` late,
    never a final state late (bench/a2a_overhead.py: 4 writes per blocking message become 2).

    The store-light relay (`adapters/a2a/relay.py`) `stage`s even a new task's states (nobody can
    know its id before it is answered) and `finish`es with one write: a blocking message that ends
    within `flush_after_s` costs one write. A task canceled (by CancelTask, here) while relayed
    stays canceled: its staged state is dropped, later `stage`s are ignored, the relay is told to
    stop (`begin`'s hook), and `finish` writes nothing and returns the canceled task.

    A stored final state (completed, failed, canceled, rejected) is never overwritten, whoever
    wrote it (another replica's CancelTask, here): the upsert's conflict clause skips such a row.
    A `save` that loses raises the SDK's `ConcurrentTaskModificationError` (its request handler
    then re-reads the task: CancelTask answers with the stored state, a running task ends with
    it); a relay's `finish` that loses returns the stored task; a progress flush that loses stops
    the relay, if any."""

    WORKING_STATES: Final = frozenset({TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING})
    MAX_KNOWN: Final = 100_000

    def __init__(
        self, engine: AsyncEngine, owner: Callable[[ServerCallContext], str], flush_after_s: float
    ) -> None:
        super().__init__(engine, owner_resolver=owner)
        self._flush_after_s = flush_after_s
        self._known: dict[tuple[str, str], None] = {}
        """Tasks this process has written (insertion-ordered, oldest forgotten first)."""
        self._pending: dict[tuple[str, str], tuple[Task, ServerCallContext]] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._flushes: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._relayed: dict[tuple[str, str], _Relayed] = {}
        """Tasks in the store-light relay of this process."""

    async def save(self, task: Task, context: ServerCallContext) -> None:
        key = (self.owner_resolver(context), task.id)
        if task.status.state in self.WORKING_STATES and key in self._known:
            self._hold(key, task, context)
            return
        if not await self._write(key, task, context):
            raise ConcurrentTaskModificationError(f"task {task.id} has already ended")
        relayed = self._relayed.get(key)
        if relayed is not None and relayed.settled is None and task.status.state in TERMINAL_TASK_STATES:
            relayed.settled = Task()  # CancelTask while relayed: it stays canceled
            relayed.settled.CopyFrom(task)
            self._drop_pending(key)  # what the relay staged while this was written
            relayed.stop()

    def begin(self, task_id: str, context: ServerCallContext, stop: Callable[[], None]) -> None:
        self._relayed[(self.owner_resolver(context), task_id)] = _Relayed(stop)

    def relaying(self, task_id: str, context: ServerCallContext) -> bool:
        relayed = self._relayed.get((self.owner_resolver(context), task_id))
        return relayed is not None and relayed.settled is None

    def stage(self, task: Task, context: ServerCallContext) -> None:
        key = (self.owner_resolver(context), task.id)
        relayed = self._relayed.setdefault(key, _Relayed())
        if relayed.settled is None:  # a canceled task stays canceled
            self._hold(key, task, context)

    async def finish(self, task: Task, context: ServerCallContext) -> Task:
        key = (self.owner_resolver(context), task.id)
        relayed = self._relayed.pop(key, None)
        if relayed is not None and relayed.settled is not None:
            self._drop_pending(key)
            return relayed.settled
        if await self._write(key, task, context):
            return task
        async with one_at_a_time(self.engine):  # it ended meanwhile (another replica's CancelTask)
            stored = await DatabaseTaskStore.get(self, task.id, context)
        return stored or task

    def leave(self, task_id: str, context: ServerCallContext) -> None:
        """The relay stops without an end (its request was cancelled): the task stays as last
        staged (with its downstream ids), written by the coalescing flush (or `flush_all`)."""
        self._relayed.pop((self.owner_resolver(context), task_id), None)

    def _hold(self, key: tuple[str, str], task: Task, context: ServerCallContext) -> None:
        copy = Task()
        copy.CopyFrom(task)
        self._pending[key] = (copy, context)
        if key not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(self._flush_after_s, self._schedule_flush, key)

    async def _write(self, key: tuple[str, str], task: Task, context: ServerCallContext) -> bool:
        """Write `task` now; False when the stored task had already ended (left as it is)."""
        self._drop_pending(key)
        flushing = self._flushes.get(key)
        if flushing is not None:  # an older state on its way: ours must land after it
            with suppress(Exception):
                await flushing
        written = await self._upsert(task, context)
        self._known[key] = None
        if len(self._known) > self.MAX_KNOWN:
            del self._known[next(iter(self._known))]
        return written

    async def _upsert(self, task: Task, context: ServerCallContext) -> bool:
        """One `INSERT .. ON CONFLICT DO UPDATE` (SQLite, PostgreSQL) where the SDK's ORM `merge`
        reads the row first (a third of the CPU of a save); the update applies only to the same
        owner's row, and only while its stored state is not final (the status is a JSON column:
        `json_extract(status, '$."state"')` on SQLite, `status ->> 'state'` on PostgreSQL; a
        missing state is the proto default, unspecified). False when nothing was written. Other
        databases: the SDK's save (no such guard)."""
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            async with one_at_a_time(self.engine):
                await DatabaseTaskStore.save(self, task, context)
            return True
        await self._ensure_initialized()
        owner = self.owner_resolver(context)
        row = self._to_orm(task, owner)
        table = cast(Table, sa_inspect(self.task_model).local_table)
        values = {prop.columns[0].name: getattr(row, prop.key) for prop in _columns(self.task_model)}
        insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        stored = table.c.status["state"].as_string()
        upsert = (
            insert(table)
            .values(values)
            .on_conflict_do_update(
                index_elements=[table.c.id],
                set_=values,
                where=and_(table.c.owner == owner, or_(stored.is_(None), stored.not_in(_ENDED_NAMES))),
            )
            .returning(table.c.id)
        )
        async with one_at_a_time(self.engine), self.engine.begin() as conn:
            return (await conn.execute(upsert)).first() is not None

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        pending = self._pending.get((self.owner_resolver(context), task_id))
        if pending is not None:
            copy = Task()
            copy.CopyFrom(pending[0])
            return copy
        async with one_at_a_time(self.engine):
            return await super().get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        async with one_at_a_time(self.engine):
            return await super().list(params, context)

    def _drop_pending(self, key: tuple[str, str]) -> None:
        self._pending.pop(key, None)
        self._cancel_timer(key)

    def _cancel_timer(self, key: tuple[str, str]) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _schedule_flush(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        flush = asyncio.get_running_loop().create_task(self._flush(key))
        self._flushes[key] = flush
        flush.add_done_callback(partial(self._flushed, key))

    def _flushed(self, key: tuple[str, str], flush: asyncio.Task[None]) -> None:
        if self._flushes.get(key) is flush:
            del self._flushes[key]

    async def _flush(self, key: tuple[str, str]) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            try:
                written = await self._upsert(*pending)
                self._known[key] = None
            except Exception as exc:  # noqa: BLE001 - progress only; the final state is written at once
                log.warning("a2a_task_progress_not_saved", error=type(exc).__name__)
                return
            relayed = self._relayed.get(key)
            if not written and relayed is not None and relayed.settled is None:
                log.info("a2a_relay_task_ended_elsewhere", task_id=key[1])
                relayed.stop()  # its `finish` returns the stored end

    async def flush_all(self) -> None:
        """Write every pending state (shutdown)."""
        for key in list(self._pending):
            self._cancel_timer(key)
            await self._flush(key)
        for flush in list(self._flushes.values()):
            with suppress(Exception):
                await flush


@dataclass
class _Relayed:
    """A task in the store-light relay: how to stop its relay, and the end CancelTask wrote."""

    stop: Callable[[], None] = lambda: None
    settled: Task | None = None


_ENDED_NAMES: Final = tuple(TaskState.Name(state) for state in TERMINAL_TASK_STATES)
"""The final states as stored (the status column holds the proto's JSON: enum names)."""

PROGRESS_FLUSH_S: Final = 0.5


def _columns(model: type) -> list[ColumnProperty[Any]]:
    return list(sa_inspect(model).column_attrs)


def task_store(engine: AsyncEngine, agent: str) -> CoalescingTaskStore:
    """The tasks of one proxied agent: one table for all agents, each task owned by
    `<agent>/<caller client id>`, so a caller sees only its own tasks and only on that agent."""
    store = CoalescingTaskStore(engine, _owner(agent), PROGRESS_FLUSH_S)
    model = _task_models.get(TASK_TABLE)
    if model is None:  # the SDK builds a mapped class per call: build ours once per process
        model = _task_models[TASK_TABLE] = create_task_model(TASK_TABLE, base=_TaskBase)
    store.task_model = model
    return store


PUSH_TABLE: Final = "interlink_a2a_push_configs"


def push_store(engine: AsyncEngine, agent: str, key: bytes) -> DatabasePushNotificationConfigStore:
    """The callers' webhook configs for one agent's tasks, owned like the tasks; the stored config
    (URL, token, credentials) is encrypted with `key`."""
    store = CachedConfigStore(engine, encryption_key=key, owner_resolver=_owner(agent))
    model = _task_models.get(PUSH_TABLE)
    if model is None:
        model = _task_models[PUSH_TABLE] = create_push_notification_config_model(PUSH_TABLE, base=_TaskBase)
    store.config_model = model
    return store


def push_key(path: Path | None) -> bytes:
    """The Fernet key of the push configs: read from `path`, or created there (mode 0600) on first
    start; without a path (an in-memory database) a throw-away key."""
    if path is None:
        return Fernet.generate_key()
    if path.is_file():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    log.info("a2a_push_key_created", path=str(path))
    return key


def webhook_rule(allow_private: bool) -> Callable[[str], Awaitable[bool]]:
    """The check of a caller's webhook URL when it is registered: a refusal is an invalid-params
    error that says why (nothing is sent to the URL)."""

    async def check(url: str) -> bool:
        try:
            await check_webhook_url(url, allow_private=allow_private)
        except FetchError as exc:
            raise InvalidParamsError(message=f"webhook URL refused: {exc}") from None
        return True

    return check


class FaceHandler(GovernedHandler):
    """Cancels downstream from whichever replica receives CancelTask: the SDK reaches the proxy
    executor's `cancel` only on the replica running the task; on another one it just records
    CANCELED in the shared store, which would leave the downstream task running."""

    def __init__(
        self,
        *args: Any,
        agent: RemoteAgent,
        store: DatabaseTaskStore,
        webhooks: DownstreamWebhooks | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._agent = agent
        self._store = store
        self._webhooks = webhooks

    async def on_get_task(self, params: Any, context: ServerCallContext) -> Any:
        async def run() -> Any:
            if self._webhooks is not None:  # an unfinished task nobody relays here: re-read it
                found = await self._store.get(params.id, context)
                await self._webhooks.refresh(self._agent.name, self._agent.name, found, context)
            return await DefaultRequestHandler.on_get_task(self, params, context)

        return await self._governed(context, "GetTask", params.id, run)

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        async def run() -> Any:
            created = await DefaultRequestHandler.on_create_task_push_notification_config(
                self, params, context
            )
            if self._webhooks is not None:
                found = await self._store.get(params.task_id, context)
                await self._webhooks.on_config_created(self._agent.name, self._agent.name, found, context)
            return created

        return await self._governed(context, "CreateTaskPushNotificationConfig", params.task_id, run)

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Any:
        async def run() -> Any:
            found = await self._store.get(params.id, context)  # owner-scoped: others' tasks are not found
            # CANCELED is recorded first (a relay here stops at once, a late downstream event cannot
            # end the task otherwise meanwhile), then the agent is told.
            canceled = await DefaultRequestHandler.on_cancel_task(self, params, context)
            await cancel_downstream(self._agent, found, context)
            return canceled

        return await self._governed(context, "CancelTask", params.id, run)


def interfaces(public_url: str, name: str) -> list[AgentInterface]:
    """Interlink's interfaces for the agent it serves at `/a2a/<name>`: JSON-RPC, then HTTP+JSON."""
    base = f"{public_url}/a2a/{name}"
    return [
        AgentInterface(url=base, protocol_binding="JSONRPC", protocol_version="1.0"),
        AgentInterface(url=f"{base}/rest", protocol_binding="HTTP+JSON", protocol_version="1.0"),
    ]


def _secure(card: AgentCard, public_url: str, scopes: Sequence[str]) -> None:
    """Advertise Interlink's OAuth 2.0 client-credentials scheme on `card`."""
    flow = ClientCredentialsOAuthFlow(token_url=f"{public_url}{TOKEN_PATH}", scopes={s: s for s in scopes})
    card.security_schemes["interlink"].CopyFrom(
        SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(
                flows=OAuthFlows(client_credentials=flow),
                oauth2_metadata_url=f"{public_url}/.well-known/oauth-authorization-server",
            )
        )
    )
    requirement = SecurityRequirement()
    requirement.schemes["interlink"].CopyFrom(StringList(list=list(scopes)))
    card.security_requirements.append(requirement)


class _ContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context, plus the ASGI scope (the authenticated caller travels in it)."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[SCOPE_KEY] = request.scope
        return context


class A2AFace:
    """Every `/a2a/<name>` endpoint; `start(engine)` opens task stores once the database is open.
    `add_agent`/`remove_agent` serve agents registered at run time (gateway/a2a_remote.py)."""

    def __init__(
        self,
        agents: Sequence[RemoteAgentSettings],
        identity: Identity,
        governors: Mapping[str, Governor],
        public_url: str,
        max_body_bytes: int,
        routes: Sequence[A2ARouteSettings] = (),
        *,
        push_key_file: Path | None = None,
        push: A2APushSettings | None = None,
    ) -> None:
        self._identity = identity
        self._push_key_file = push_key_file
        self._push = push or A2APushSettings()
        self.webhooks = WebhookDispatcher(
            workers=self._push.workers,
            max_queued=self._push.max_queued,
            max_per_task=self._push.max_queued_per_task,
            timeout_s=self._push.timeout_s,
            attempts=self._push.attempts,
            drain_s=self._push.drain_s,
        )
        """The gateway's push-notification delivery queue (gateway/webhooks.py)."""
        self._webhooks: list[httpx.AsyncClient] = []
        self._max_body_bytes = max_body_bytes
        self._public_url = public_url
        self.agents = {a.name: RemoteAgent(a, identity) for a in agents}
        self.governors = governors
        """Per agent, plus `router` for the aggregate endpoint's own calls."""
        self._governors = governors
        self._routes = list(routes)
        self._router: ASGIApp | None = None
        self._routers: dict[str, ASGIApp] = {}
        self._stores: list[CoalescingTaskStore] = []
        self._handlers: list[DefaultRequestHandler] = []
        self._opened: dict[str, tuple[DefaultRequestHandler, CoalescingTaskStore, httpx.AsyncClient]] = {}
        """Per downstream agent: what `remove_agent` closes."""
        self._engine: AsyncEngine | None = None
        self._key: bytes | None = None
        self._hooks_ready = False
        self._hook_store: HookStore | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.ledger = Ledger()
        """What relay streams relayed of tasks also followed by webhook (adapters/a2a/follow.py)."""
        self.downstream_webhooks: DownstreamWebhooks | None = None
        """Interlink's webhooks at downstream agents (gateway/a2a_hooks.py), once started."""
        self.published: dict[str, PublishedAgent] = {}
        """Agents Interlink serves itself from MCP tools (gateway/a2a_publish.py), set by the app."""

    async def start(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.webhooks.start()
        self._hook_store = HookStore(engine)
        self.downstream_webhooks = DownstreamWebhooks(
            self._hook_store,
            self.agents,
            self._governors,
            self._public_url,
            self._max_body_bytes,
            self.ledger,
        )
        for agent in list(self.agents.values()):
            await self._open(agent)
        for name, published in self.published.items():
            store = task_store(engine, name)
            self._stores.append(store)
            await store.initialize()
            self._routers[name] = self._endpoint(name, published.handler(store))
        if self.agents:
            await self._open_router()
        self._refresher = asyncio.create_task(self._refresh_cards())

    async def add_agent(self, settings: RemoteAgentSettings) -> None:
        """Serve one more downstream agent at run time (gateway/a2a_remote.py), exactly as a
        configured one: its endpoint, task and push stores, card, and a place in `/a2a` routing.
        Its governor must be in `governors` first."""
        if settings.name in self.agents or settings.name in self.published:
            raise ValueError(f"agent {settings.name!r} is served already")
        agent = RemoteAgent(settings, self._identity)
        try:
            await self._open(agent)
            if self._router is None:
                await self._open_router()
        except BaseException:
            await self._close(settings.name)
            await agent.close()
            raise
        self.agents[settings.name] = agent  # served from now on: its endpoint is complete

    async def remove_agent(self, name: str) -> None:
        """Stop serving `name` (its endpoint answers unknown agent); its tasks stay in the
        database, so registering it again finds them."""
        agent = self.agents.pop(name, None)
        await self._close(name)
        if agent is not None:
            await agent.close()

    async def _close(self, name: str) -> None:
        """Undo `_open` (whatever part of it happened)."""
        self._routers.pop(name, None)
        opened = self._opened.pop(name, None)
        if opened is not None:
            handler, store, http = opened
            self._handlers.remove(handler)
            self._stores.remove(store)
            self._webhooks.remove(http)
            await handler.aclose()
            await store.flush_all()
            if self.downstream_webhooks is not None:
                self.downstream_webhooks.forget(name)
            await self.webhooks.drained(http)
            await http.aclose()

    def _push_key(self) -> bytes:
        if self._key is None:
            self._key = push_key(self._push_key_file)
        return self._key

    async def _open(self, agent: RemoteAgent) -> None:
        """One downstream agent's endpoint (at start, and for agents registered at run time)."""
        engine, downstream, name = self._engine, self.downstream_webhooks, agent.name
        assert engine is not None and downstream is not None, "start() first"
        auth = agent.settings.auth
        audience = auth.audience if isinstance(auth, InterlinkTokenAuth) else None
        if audience and own_audience(audience, self._public_url):
            raise ConfigError(
                f"a2a_agents.{name}.auth.audience: names one of Interlink's own resources (refused: "
                "the agent would receive a token for Interlink itself)"
            )
        if not self._hooks_ready and self._hook_store is not None:
            await self._hook_store.initialize()
            self._hooks_ready = True
        await agent.load_card()
        store = task_store(engine, name)
        await store.initialize()
        configs = push_store(engine, name, self._push_key())
        await configs.initialize()
        allow_private = agent.settings.allow_private_webhooks
        http = webhook_client(allow_private=allow_private)
        handler = FaceHandler(
            ProxyExecutor(agent, hooks=downstream.hooks(name), ledger=self.ledger),
            store,
            self._card_for(agent),
            push_config_store=configs,
            push_sender=(sender := QueuedSender(self.webhooks, http, configs, allow_private=allow_private)),
            push_url_validator=webhook_rule(allow_private),
            governor=self._governors[name],
            skill_of=agent.skill_of,
            relay_store=store,
            agent=agent,
            store=store,
            webhooks=downstream,
        )
        downstream.endpoint(name, handler, _owner(name), configs, sender)
        self._stores.append(store)
        self._webhooks.append(http)
        self._handlers.append(handler)
        self._opened[name] = (handler, store, http)
        self._routers[name] = self._endpoint(name, handler)

    async def _open_router(self) -> None:
        """The aggregate endpoint `/a2a` (once there is an agent to route to)."""
        engine, downstream = self._engine, self.downstream_webhooks
        assert engine is not None and downstream is not None, "start() first"
        store = task_store(engine, ROUTER)
        self._stores.append(store)
        await store.initialize()
        card = self.router_card()
        configs = push_store(engine, ROUTER, self._push_key())
        await configs.initialize()
        allow_private = self._push.allow_private_webhooks
        http = webhook_client(allow_private=allow_private)
        self._webhooks.append(http)
        router = RouterHandler(
            RoutingExecutor(self),
            store,
            card,
            push_config_store=configs,
            push_sender=(sender := QueuedSender(self.webhooks, http, configs, allow_private=allow_private)),
            push_url_validator=webhook_rule(allow_private),
            face=self,
            store=store,
            extended_agent_card=card,
            extended_card_modifier=self._card_for_caller,
        )
        downstream.endpoint(ROUTER, router, _owner(ROUTER), configs, sender)
        builder = _ContextBuilder()
        router_routes = [
            *create_jsonrpc_routes(router, rpc_url="/a2a", context_builder=builder),
            *create_rest_routes(router, context_builder=builder, path_prefix=ROUTER_REST),
        ]
        self._handlers.append(router)
        self._router = McpRequestGuard(Router(routes=router_routes), self._max_body_bytes)

    def _endpoint(self, name: str, handler: DefaultRequestHandler) -> ASGIApp:
        """`/a2a/<name>`: JSON-RPC, and HTTP+JSON under `/a2a/<name>/rest` (its own router, so the
        SDK's catch-all tenant mount cannot swallow other paths); bodies bounded."""
        builder = _ContextBuilder()
        routes = [
            *create_jsonrpc_routes(handler, rpc_url=f"/a2a/{name}", context_builder=builder),
            *create_rest_routes(handler, context_builder=builder, path_prefix=f"/a2a/{name}/rest"),
        ]
        return McpRequestGuard(Router(routes=routes), self._max_body_bytes)

    async def stop(self) -> None:
        """Stop following the tasks still running downstream, leaving each as last stored (with
        its downstream ids): after a restart it is found, listed and cancelled (the cancel reaches
        the agent) like any other; it does not fail because the gateway stopped."""
        if self._refresher is not None:
            self._refresher.cancel()
        for handler in self._handlers:
            await handler.aclose()
        for store in self._stores:
            await store.flush_all()
        for agent in list(self.agents.values()):
            await agent.close()
        await self.webhooks.stop()
        for http in self._webhooks:
            await http.aclose()

    async def _refresh_cards(self) -> None:
        while True:
            await asyncio.sleep(
                min(a.settings.card_refresh_s for a in self.agents.values()) if self.agents else 60
            )
            now = time.time()
            for agent in list(self.agents.values()):  # agents come and go at run time
                fetched = agent.status.card_fetched_at or 0
                if agent.settings.card_url and now - fetched >= agent.settings.card_refresh_s:
                    await agent.load_card()

    def route(self, skill: str, principal: Principal | None) -> list[str]:
        """The agents a new message naming `skill` goes to, available ones only, in order: the
        agent named in `agent/skill`; else the first matching routing rule's agents; else every
        agent whose card offers the skill, in configuration order."""
        if "/" in skill:
            candidates = [skill.split("/", 1)[0]]
        else:
            tenant = principal.tenant if principal else None
            rule = next(
                (
                    r
                    for r in self._routes
                    if any(fnmatchcase(skill, pattern) for pattern in r.skills)
                    and (not r.tenants or tenant in r.tenants)
                ),
                None,
            )
            if rule is not None:
                candidates = list(rule.agents)
            else:
                candidates = [
                    name
                    for name, agent in self.agents.items()
                    if agent.card is not None and any(s.id == skill for s in agent.card.skills)
                ]
        return [name for name in candidates if name in self.agents and self.agents[name].available()]

    def router_card(self) -> AgentCard:
        """Interlink's own card: every agent's skills as `<agent>/<skill>`, one endpoint (`/a2a`)."""
        card = AgentCard(
            name="Interlink",
            description="Routes A2A tasks to the agents behind this gateway, by skill, under one identity, "
            "policy and audit trail. Name a skill in the message's metadata.skill (e.g. helpdesk/echo).",
            version=__version__,
            supported_interfaces=[
                AgentInterface(
                    url=f"{self._public_url}/a2a", protocol_binding="JSONRPC", protocol_version="1.0"
                ),
                AgentInterface(
                    url=f"{self._public_url}{ROUTER_REST}",
                    protocol_binding="HTTP+JSON",
                    protocol_version="1.0",
                ),
            ],
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain"],
        )
        card.capabilities.streaming = True
        card.capabilities.push_notifications = True  # delivered by Interlink (gateway/webhooks.py)
        card.capabilities.extended_agent_card = True
        for name, agent in self.agents.items():
            for skill in agent.card.skills if agent.card is not None else ():
                routed = card.skills.add()
                routed.CopyFrom(skill)
                routed.id = f"{name}/{skill.id}"
                routed.tags.append(name)
                del routed.security_requirements[:]
        _secure(card, self._public_url, ["a2a"])
        return card

    async def _card_for_caller(self, card: AgentCard, context: ServerCallContext) -> AgentCard:
        """The extended card: only the skills this caller's policy lets it use."""
        scope = context.state.get(SCOPE_KEY) or {}
        mine = AgentCard()
        mine.CopyFrom(self.router_card())
        keep = []
        for skill in mine.skills:
            name, _, skill_id = skill.id.partition("/")
            governor = self.governors.get(name)
            if governor is not None and governor.shows(scope, "SendMessage", skill_id):
                keep.append(skill)
        del mine.skills[:]
        mine.skills.extend(keep)
        return mine

    async def serve_router(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/a2a`: the aggregate endpoint (JSON-RPC), protected as resource `a2a`."""
        if self._router is None:
            await send_error(send, "unknown_agent", "no A2A agents are configured")
            return
        try:
            principal = self._identity.authenticate(scope, "", ["a2a"], face="a2a")
        except IdentityError as exc:
            await self._identity.send_challenge(send, "", exc, kind="a2a")
            return
        scope[PRINCIPAL] = principal
        scope["user"] = SimpleUser(principal.client_id)
        scope["auth"] = AuthCredentials(sorted(principal.scopes))
        await self._router(scope, receive, send)

    async def serve_card(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/.well-known/agent-card.json`: Interlink's own card."""
        await JSONResponse(MessageToDict(self.router_card()), headers={"cache-control": "max-age=60"})(
            scope, receive, send
        )

    def statuses(self) -> list[dict[str, Any]]:
        return [vars(a.status) | {} for a in self.agents.values()] + [
            p.status() for p in self.published.values()
        ]

    def governor(self, name: str) -> Governor:
        """The governor of a downstream agent, or UpstreamUnavailable when it was removed or
        disabled at run time (a task routed to it earlier, a route planned before the removal)."""
        governor = self._governors.get(name)
        if governor is None or (name != ROUTER and name not in self.agents):
            raise UpstreamUnavailable(f"agent {name!r} is no longer available")
        return governor

    def card_for_callers(self, name: str) -> AgentCard:
        """The downstream card as callers see it: Interlink's endpoint, Interlink's OAuth scheme,
        no downstream URLs, no signatures (they would not match the rewritten card)."""
        return self._card_for(self.agents[name])

    def _card_for(self, agent: RemoteAgent) -> AgentCard:
        name = agent.name
        card = AgentCard()
        if agent.card is not None:
            card.CopyFrom(agent.card)
        else:
            card.name = name
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(interfaces(self._public_url, name))
        del card.signatures[:]
        card.ClearField("security_schemes")
        del card.security_requirements[:]
        card.ClearField("documentation_url")
        card.capabilities.push_notifications = True  # Interlink delivers them itself (see above)
        card.capabilities.extended_agent_card = False
        if not agent.settings.public:
            _secure(card, self._public_url, agent.settings.required_scopes)
        return card

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path_params"]["agent"]
        rest = scope["path_params"].get("rest", "")
        agent = self.agents.get(name)
        published = self.published.get(name)
        if agent is not None:
            settings: RemoteAgentSettings | PublishedAgentSettings = agent.settings
        elif published is not None:
            settings = published.settings
        else:
            await send_error(send, "unknown_agent", f"no A2A agent named {name!r}")
            return
        if rest == CARD_PATH.lstrip("/") and scope["method"] == "GET":
            card = await published.card() if published is not None else self.card_for_callers(name)
            body = MessageToDict(card)
            await JSONResponse(body, headers={"cache-control": "max-age=60"})(scope, receive, send)
            return
        if agent is not None and rest.startswith(WEBHOOK_PATH) and self.downstream_webhooks is not None:
            # a downstream agent's push notification: authenticated by its per-task token, not OAuth
            await self.downstream_webhooks.receive(name, rest[len(WEBHOOK_PATH) :], scope, receive, send)
            return
        if rest and rest != "rest" and not rest.startswith("rest/"):
            await send_error(send, "unknown_agent", f"no A2A endpoint at /a2a/{name}/{rest}")
            return
        if not settings.public:
            try:
                principal = self._identity.authenticate(scope, name, settings.required_scopes, face="a2a")
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
        if agent is None:  # published: bounded by its virtual server's upstreams
            await router(scope, receive, send)
            return
        async with agent.slots:
            await router(scope, receive, send)


# -- the aggregate endpoint `/a2a`: routing by skill ------------------------------------------------

ROUTE_KEY: Final = "interlink.route"
"""`ServerCallContext.state` key: the agents a new message may go to, in order."""
AGENT_KEY: Final = "interlink.agent"
"""Task `metadata` key of a routed task: the agent that holds it (follow-ups and cancel go there)."""
ROUTER: Final = "router"
"""The governor (and task owner prefix) of the aggregate endpoint; no agent may take this name."""
ROUTER_REST: Final = "/a2a/rest"
"""The aggregate endpoint's HTTP+JSON binding (so no agent may be named `rest` either)."""


class _Tagging:
    """An event queue that stamps the routed agent's name on the task it creates."""

    def __init__(self, queue: Any, agent: str) -> None:
        self._queue = queue
        self._agent = agent

    async def enqueue_event(self, event: Any) -> None:
        if isinstance(event, Task):
            event.metadata.update({AGENT_KEY: self._agent})
        await self._queue.enqueue_event(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class RoutingExecutor(AgentExecutor):
    """Sends each message to the first agent of its route; on a failure before that agent answered
    anything, to the next (each attempt decided and recorded under that agent's policy)."""

    def __init__(self, face: A2AFace) -> None:
        self._face = face

    def _proxy(self, name: str) -> ProxyExecutor:
        webhooks = self._face.downstream_webhooks
        hooks = webhooks.hooks(ROUTER) if webhooks is not None else None
        return ProxyExecutor(self._face.agents[name], hooks=hooks, ledger=self._face.ledger)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        call = context.call_context
        if call is not None and FOLLOW_KEY in call.state:  # a downstream webhook's events, or a re-read
            name = _routed_agent(context.current_task)
            if name in self._face.agents:
                await self._proxy(name).execute(context, event_queue)
            return
        route: list[str] = list(call.state.get(ROUTE_KEY, [])) if call is not None else []
        scope = call.state.get(SCOPE_KEY, {}) if call is not None else {}
        skill = _skill_name(context.message) if context.message is not None else "*"
        hold = call.state.get(HOLD_KEY) if call is not None else None
        if hold:
            await hold_task(event_queue, context, str(hold))
            return
        last = "no available agent offers this skill"
        for attempt, name in enumerate(route):
            if attempt > 0:  # a fallback: its own decision and record
                try:
                    governor = self._face.governor(name)
                    args = message_args(context.message) if context.message is not None else {}
                    await governor.around(
                        scope,
                        "SendMessage",
                        skill,
                        None,
                        partial(governor.check, scope, "SendMessage", skill, args),
                    )
                except GatewayError:
                    continue
            if name not in self._face.agents:  # removed at run time since the route was planned
                last = f"agent {name!r} is no longer available"
                continue
            try:
                await self._proxy(name).attempt(context, _Tagging(event_queue, name))  # type: ignore[arg-type]
                return
            except DownstreamFailed as exc:
                last = exc.message
                if not exc.before_response:
                    break
                log.info("a2a_route_fallback", agent=name, problem=exc.message)
        await fail_task(event_queue, context, last)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        name = _routed_agent(context.current_task)
        if name in self._face.agents:
            await ProxyExecutor(self._face.agents[name]).cancel(context, event_queue)


async def _unless_relayed(
    store: CoalescingTaskStore,
    method: str,
    task_id: str,
    context: ServerCallContext,
    run: Callable[[], Awaitable[T]],
) -> T:
    refuse_relayed(store, method, task_id, context)
    return await run()


def _skill_name(message: Message) -> str:
    if SKILL_KEY in message.metadata:
        value = message.metadata[SKILL_KEY]
        if isinstance(value, str) and value:
            return str(value)
    return "*"


def _routed_agent(task: Task | None) -> str:
    if task is None or AGENT_KEY not in task.metadata:
        return ""
    return str(task.metadata[AGENT_KEY])


class RouterHandler(DefaultRequestHandler):
    """The aggregate endpoint: plans each new message's route (explicit `agent/skill`, the routing
    rules, or the agents whose card offers the skill), governs it under the first agent's policy,
    and keeps follow-ups and cancels on the agent that holds the task."""

    def __init__(self, *args: Any, face: A2AFace, store: CoalescingTaskStore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._face = face
        self._store = store

    async def _plan(self, message: Message, context: ServerCallContext) -> tuple[list[str], str]:
        skill = _skill_name(message)
        if message.task_id:
            found = await self._store.get(message.task_id, context)
            held = _routed_agent(found)
            if held:
                if held not in self._face.agents or held not in self._face.governors:
                    # removed or disabled at run time since the task started
                    raise to_a2a_error(UpstreamUnavailable(f"agent {held!r} holding this task is gone"))
                return [held], skill.split("/", 1)[-1]
        route = self._face.route(skill, _principal(context))
        if not route:
            raise to_a2a_error(UpstreamUnavailable(f"no available agent offers skill {skill!r}"))
        if "/" in skill:
            skill = skill.split("/", 1)[1]
        return route, skill

    async def _governed(
        self,
        context: ServerCallContext,
        name: str,
        method: str,
        target: str | None,
        run: Callable[[], Awaitable[T]],
        meta: Mapping[str, Any] | None = None,
    ) -> T:
        scope = context.state.get(SCOPE_KEY) or {}
        if method in WHILE_RELAYED and target is not None and method != "SendMessage":
            run = partial(_unless_relayed, self._store, method, target, context, run)
        try:
            return await self._face.governor(name).around(scope, method, target, None, run, meta)
        except GatewayError as exc:
            raise to_a2a_error(exc) from None

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Any:
        route, skill = await self._plan(params.message, context)
        context.state[ROUTE_KEY] = route
        scope = context.state.get(SCOPE_KEY) or {}
        try:
            governor = self._face.governor(route[0])
        except GatewayError as exc:
            raise to_a2a_error(exc) from None

        async def run() -> Any:
            refuse_relayed(self._store, "SendMessage", params.message.task_id, context)
            await decide(governor, scope, skill, params.message, context)
            if relayable(params):
                return await relay_message(self.agent_executor, params, context, self._store)
            return await DefaultRequestHandler.on_message_send(self, params, context)

        return await self._governed(
            context, route[0], "SendMessage", skill, run, message_meta(params.message)
        )

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        route, skill = await self._plan(params.message, context)
        context.state[ROUTE_KEY] = route
        scope = context.state.get(SCOPE_KEY) or {}
        try:
            governor = self._face.governor(route[0])
        except GatewayError as exc:
            raise to_a2a_error(exc) from None

        async def decide_stream() -> None:
            refuse_relayed(self._store, "SendMessage", params.message.task_id, context)
            await decide(governor, scope, skill, params.message, context)

        await self._governed(
            context, route[0], "SendStreamingMessage", skill, decide_stream, message_meta(params.message)
        )
        async for event in DefaultRequestHandler.on_message_send_stream(self, params, context):
            yield event

    async def on_get_task(self, params: Any, context: ServerCallContext) -> Any:
        async def run() -> Any:
            webhooks = self._face.downstream_webhooks
            if webhooks is not None:  # an unfinished task nobody relays here: re-read it
                found = await self._store.get(params.id, context)
                await webhooks.refresh(ROUTER, _routed_agent(found), found, context)
            return await DefaultRequestHandler.on_get_task(self, params, context)

        return await self._governed(context, ROUTER, "GetTask", params.id, run)

    async def on_list_tasks(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            ROUTER,
            "ListTasks",
            None,
            partial(DefaultRequestHandler.on_list_tasks, self, params, context),
        )

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        check = partial(subscribable, self, params, context)
        await self._governed(context, ROUTER, "SubscribeToTask", params.id, check)
        async for event in DefaultRequestHandler.on_subscribe_to_task(self, params, context):
            yield event

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Any:
        async def run() -> Any:
            found = await self._store.get(params.id, context)
            # CANCELED is recorded first (a relay here stops at once), then the agent is told.
            canceled = await DefaultRequestHandler.on_cancel_task(self, params, context)
            agent = self._face.agents.get(_routed_agent(found))
            if agent is not None:
                await cancel_downstream(agent, found, context)
            return canceled

        return await self._governed(context, ROUTER, "CancelTask", params.id, run)

    # Push-notification configs: owner-scoped by the store; every call is recorded.

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        async def run() -> Any:
            created = await DefaultRequestHandler.on_create_task_push_notification_config(
                self, params, context
            )
            webhooks = self._face.downstream_webhooks
            if webhooks is not None:
                found = await self._store.get(params.task_id, context)
                await webhooks.on_config_created(ROUTER, _routed_agent(found), found, context)
            return created

        return await self._governed(context, ROUTER, "CreateTaskPushNotificationConfig", params.task_id, run)

    async def on_get_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            ROUTER,
            "GetTaskPushNotificationConfig",
            params.task_id,
            partial(DefaultRequestHandler.on_get_task_push_notification_config, self, params, context),
        )

    async def on_list_task_push_notification_configs(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            ROUTER,
            "ListTaskPushNotificationConfigs",
            params.task_id,
            partial(DefaultRequestHandler.on_list_task_push_notification_configs, self, params, context),
        )

    async def on_delete_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            ROUTER,
            "DeleteTaskPushNotificationConfig",
            params.task_id,
            partial(DefaultRequestHandler.on_delete_task_push_notification_config, self, params, context),
        )


async def cancel_downstream(agent: RemoteAgent, task: Task | None, context: ServerCallContext) -> None:
    """Ask `agent` to cancel its side of the caller's `task`, if the task still runs there (the SDK
    reaches the proxy executor only on the replica running it; another replica only records
    CANCELED). Best effort: the caller's task is canceled regardless."""
    task_id = _mapping(task).get("task_id") if task is not None else None
    if task is None or not task_id or task.status.state in TERMINAL_TASK_STATES:
        return
    try:
        call = await agent.call_context_for(context)
        async with asyncio.timeout(agent.timeout_s):
            await agent.client().cancel_task(CancelTaskRequest(id=task_id), context=call)
    except Exception as exc:  # noqa: BLE001 - the caller's task is canceled regardless
        log.info("a2a_downstream_cancel_failed", agent=agent.name, error=type(exc).__name__)
