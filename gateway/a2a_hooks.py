"""Interlink's own webhooks at downstream A2A agents (A2A 1.0 §4.3, §9.5): when a caller's task has
a push config and the agent's card says `capabilities.push_notifications`, Interlink registers
`<public_url>/a2a/<agent>/webhook/<opaque id>` with a fresh random token for the downstream task
(CreateTaskPushNotificationConfig, with Interlink's credential for that agent). The caller's URL and
token never go downstream.

* **Storage.** One row per caller task (`interlink_a2a_hooks`: agent, endpoint, owner, the task's
  and the downstream task's ids, the token's SHA-256), shared by replicas; a restarted gateway
  accepts the webhook of a task started before.
* **Receiving.** `POST /a2a/<agent>/webhook/<id>`: body bounded (`limits.max_body_bytes`, 413), the
  id known for that agent (else 404), the `X-A2A-Notification-Token` compared in constant time with
  the stored digest (else 401), a JSON `StreamResponse` about that downstream task (else 400). Every
  attempt is recorded (`a2a.DownstreamWebhook`, actor: the sender's address). The events then run
  as a request on the caller's task (`adapters/a2a/follow.py`): re-stamped, de-duplicated against
  the relay stream, saved owner-scoped, delivered to the caller's webhooks (`gateway/webhooks.py`).
  A task that has ended takes nothing more (204 either way).
* **Re-reading.** GetTask of an unfinished proxied task whose relay does not run in this process
  reads the downstream task (bounded, at most every `REFRESH_EVERY_S` per task) and applies what is
  new: a task stranded by a restart, or followed by an agent without push support, still moves on
  when its caller looks.

Errors (reasons): `RequestError` ← `UnknownWebhook` (404), `WebhookRefused` (401),
`WebhookTooLarge` (413), `InvalidWebhook` (400).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import weakref
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
import structlog
from a2a.server.agent_execution import RequestContext
from a2a.server.cluster.task_store import ConcurrentTaskModificationError
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import PushNotificationConfigStore, PushNotificationSender, TaskStore
from a2a.types import GetTaskRequest, StreamResponse, Task, TaskPushNotificationConfig
from a2a.utils._async_queue_compat import QueueShutDown
from a2a.utils.errors import A2AError
from google.protobuf.json_format import ParseDict, ParseError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from adapters.a2a.follow import ENDED, FOLLOW_KEY, Follow, FollowPlan, Ledger, apply, updates
from adapters.a2a.proxy import _mapping
from gateway.enforce import Governor
from gateway.errors import (
    GatewayError,
    InvalidWebhook,
    UnknownWebhook,
    WebhookRefused,
    WebhookTooLarge,
)
from gateway.webhooks import one_at_a_time

if TYPE_CHECKING:
    from gateway.a2a_face import RemoteAgent

log = structlog.get_logger(__name__)

WEBHOOK_PATH: Final = "webhook/"
"""`/a2a/<agent>/webhook/<id>`: where downstream agents POST their push notifications."""
TOKEN_HEADER: Final = "x-a2a-notification-token"
CONFIG_ID: Final = "interlink"
"""The id of Interlink's push config at the downstream agent (one per downstream task)."""
OWNER_KEY: Final = "interlink.owner"
"""`ServerCallContext.state` key: the task owner a webhook's request acts for (no caller there)."""
REFRESH_EVERY_S: Final = 1.0
STALE_S: Final = 2.0
"""A task whose status changed less long ago is not re-read (a relay on another replica follows
it: its progress is written every 0.5 s)."""
FOLLOW_WAIT_S: Final = 5.0
"""How long a re-read waits for its updates to be saved."""

_metadata = sa.MetaData()
hooks_table = sa.Table(
    "interlink_a2a_hooks",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("face", sa.String(128), nullable=False),
    sa.Column("owner", sa.String(400), nullable=False),
    sa.Column("task_id", sa.String(128), nullable=False, index=True),
    sa.Column("downstream_task_id", sa.String(256), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Hook:
    id: str
    agent: str
    face: str
    owner: str
    task_id: str
    downstream_task_id: str
    token_sha256: str


def token_digest(token: str) -> str:
    """The token is 256 random bits: a plain SHA-256 is enough to keep it out of the database."""
    return hashlib.sha256(token.encode()).hexdigest()


class HookStore:
    """The `interlink_a2a_hooks` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def initialize(self) -> None:
        async with one_at_a_time(self.engine), self.engine.begin() as conn:
            await conn.run_sync(_metadata.create_all)

    async def add(self, hook: Hook) -> None:
        async with one_at_a_time(self.engine), self.engine.begin() as conn:
            await conn.execute(
                hooks_table.delete().where(
                    (hooks_table.c.face == hook.face) & (hooks_table.c.task_id == hook.task_id)
                )
            )
            await conn.execute(hooks_table.insert().values(vars(hook) | {"created_at": int(time.time())}))

    async def get(self, hook_id: str) -> Hook | None:
        return await self._one(hooks_table.c.id == hook_id)

    async def of_task(self, face: str, task_id: str) -> Hook | None:
        return await self._one((hooks_table.c.face == face) & (hooks_table.c.task_id == task_id))

    async def remove(self, hook_id: str) -> None:
        async with one_at_a_time(self.engine), self.engine.begin() as conn:
            await conn.execute(hooks_table.delete().where(hooks_table.c.id == hook_id))

    async def _one(self, where: Any) -> Hook | None:
        columns = [c for c in hooks_table.c if c.name != "created_at"]
        async with one_at_a_time(self.engine), self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*columns).where(where))).first()
        return Hook(*row) if row is not None else None


@dataclass
class _Endpoint:
    handler: DefaultRequestHandler
    owner: Callable[[ServerCallContext], str]
    configs: PushNotificationConfigStore
    store: TaskStore
    sender: PushNotificationSender


class DownstreamWebhooks:
    """The webhooks of one gateway: registering them, receiving them, re-reading tasks."""

    def __init__(
        self,
        store: HookStore,
        agents: Mapping[str, RemoteAgent],
        governors: Mapping[str, Governor],
        public_url: str,
        max_body_bytes: int,
        ledger: Ledger,
    ) -> None:
        self._store = store
        self._agents = agents
        self._governors = governors
        self._public_url = public_url
        self._max_body_bytes = max_body_bytes
        self.ledger = ledger
        self._endpoints: dict[str, _Endpoint] = {}
        self._refreshed: dict[str, float] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        """One update of a task at a time (forgotten once nobody waits)."""

    def endpoint(
        self,
        face: str,
        handler: DefaultRequestHandler,
        owner: Callable[[ServerCallContext], str],
        configs: PushNotificationConfigStore,
        sender: PushNotificationSender,
    ) -> None:
        self._endpoints[face] = _Endpoint(handler, owner, configs, handler.task_store, sender)  # type: ignore[arg-type]

    def forget(self, face: str) -> None:
        """An endpoint removed at run time: webhooks for it are no longer received or re-read."""
        self._endpoints.pop(face, None)

    def hooks(self, face: str) -> FaceHooks:
        return FaceHooks(self, face)

    # -- registering ---------------------------------------------------------------------------------

    def _pushes(self, agent: str) -> RemoteAgent | None:
        remote = self._agents.get(agent)
        if remote is None or remote.card is None or not remote.card.capabilities.push_notifications:
            return None
        return remote

    async def register(
        self, face: str, agent: str, task_id: str, downstream_task_id: str, call: ServerCallContext | None
    ) -> bool:
        """A new hook for the caller's task, registered at the agent for its task; False (and no
        hook) when the agent refuses or does not answer in time."""
        remote = self._pushes(agent)
        endpoint = self._endpoints.get(face)
        if remote is None or endpoint is None:
            return False
        context = call or ServerCallContext()
        token = secrets.token_urlsafe(32)
        hook = Hook(
            secrets.token_urlsafe(18),
            agent,
            face,
            endpoint.owner(context),
            task_id,
            downstream_task_id,
            token_digest(token),
        )
        await self._store.add(hook)
        config = TaskPushNotificationConfig(
            task_id=downstream_task_id,
            id=CONFIG_ID,
            url=f"{self._public_url}/a2a/{agent}/{WEBHOOK_PATH}{hook.id}",
            token=token,
        )
        try:
            client_call = await remote.call_context_for(call)
            async with asyncio.timeout(min(remote.timeout_s, 10.0)):
                await remote.client().create_task_push_notification_config(config, context=client_call)
        except Exception as exc:  # noqa: BLE001 - the relay (or a re-read) still follows the task
            await self._store.remove(hook.id)
            log.warning("a2a_webhook_not_registered", agent=agent, task_id=task_id, error=type(exc).__name__)
            return False
        log.info("a2a_webhook_registered", agent=agent, task_id=task_id)
        return True

    async def on_config_created(
        self, face: str, agent: str, task: Task | None, call: ServerCallContext
    ) -> None:
        """A caller registered a webhook for an unfinished task: follow it by ours as well (a relay
        stream ends with the gateway; the webhook does not)."""
        downstream = _mapping(task).get("task_id") if task is not None else None
        if task is None or not downstream or task.status.state in ENDED or self._pushes(agent) is None:
            return
        if await self._store.of_task(face, task.id) is not None:
            return
        await self.register(face, agent, task.id, downstream, call)

    # -- receiving -------------------------------------------------------------------------------

    async def receive(self, agent: str, hook_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /a2a/<agent>/webhook/<hook_id>`, recorded whatever its outcome."""
        governor = self._governors[agent]
        hook = await self._store.get(hook_id[:64]) if scope["method"] == "POST" else None
        if hook is not None and hook.agent != agent:
            hook = None

        async def run() -> Response:
            if scope["method"] != "POST":
                raise InvalidWebhook("webhooks are POSTed")
            if hook is None:
                governor.refuse(UnknownWebhook.reason, UnknownWebhook("no such webhook"))
            token = _header(scope, TOKEN_HEADER)
            if not hmac.compare_digest(token_digest(token).encode(), hook.token_sha256.encode()):
                governor.refuse(WebhookRefused.reason, WebhookRefused("wrong or missing notification token"))
            event = _event(await _body(receive, _header(scope, "content-length"), self._max_body_bytes))
            if _task_id(event) != hook.downstream_task_id:
                raise InvalidWebhook("the notification is about another task")
            await self._follow(hook, event)
            return Response(status_code=204)

        try:
            response = await governor.around(
                scope, "DownstreamWebhook", hook.task_id if hook else None, None, run
            )
        except GatewayError as exc:
            body = {"error": {"reason": exc.reason, "message": exc.message}}
            response = JSONResponse(body, status_code=exc.http_status)
        await response(scope, receive, send)

    async def _follow(self, hook: Hook, event: StreamResponse) -> None:
        endpoint = self._endpoints.get(hook.face)
        if endpoint is not None:
            await self._deliver(endpoint, hook.owner, hook.task_id, Follow([event]))

    async def _deliver(self, endpoint: _Endpoint, owner: str, task_id: str, follow: Follow) -> None:
        """Apply `follow` to the task. Where the SDK holds the task here (a relay running or
        parked), as a request after the one running: one writer, and the relay's ledger complete.
        Elsewhere (a restart, another replica), read, update and save the task here (one at a time
        per task), and hand each update to the caller's webhooks."""
        active = await endpoint.handler._active_task_registry.get(task_id)  # no public lookup
        if active is not None and not active.is_finished:
            context = ServerCallContext(state={OWNER_KEY: owner, FOLLOW_KEY: follow})
            if await resume(endpoint.handler, task_id, context):
                return
        lock = self._locks.get(task_id)
        if lock is None:
            lock = self._locks[task_id] = asyncio.Lock()
        try:
            async with lock:
                await self._apply(endpoint, owner, task_id, follow)
        finally:
            follow.done.set()

    async def _apply(self, endpoint: _Endpoint, owner: str, task_id: str, follow: Follow) -> None:
        context = ServerCallContext(state={OWNER_KEY: owner})
        stored = await endpoint.store.get(task_id, context)
        if stored is None:
            log.info("a2a_webhook_task_gone", task_id=task_id)
            return
        view = Task()
        view.CopyFrom(stored)
        made = []
        for event in follow.events:
            for update in updates(view, event, self.ledger):
                apply(view, update)
                made.append(update)
        if not made:
            return
        try:
            await endpoint.store.save(view, context)
        except ConcurrentTaskModificationError:  # it ended meanwhile: it stays as it ended
            return
        if view.status.state in ENDED:
            self.ledger.forget(task_id)
        follow.applied = len(made)
        for update in made:
            await endpoint.sender.send_notification(task_id, update)

    # -- re-reading ------------------------------------------------------------------------------

    async def refresh(self, face: str, agent: str, task: Task | None, call: ServerCallContext) -> None:
        """GetTask of an unfinished task whose relay does not run here: read the downstream task
        and apply what is new before answering (bounded; the stored task is answered on failure)."""
        remote = self._agents.get(agent)
        endpoint = self._endpoints.get(face)
        downstream = _mapping(task).get("task_id") if task is not None else None
        if task is None or remote is None or endpoint is None or not downstream:
            return
        if task.status.state in ENDED or self.ledger.live(task.id) or _recent(task, STALE_S):
            return
        now = time.monotonic()
        if now - self._refreshed.get(task.id, 0.0) < REFRESH_EVERY_S:
            return
        if len(self._refreshed) > 10_000:
            self._refreshed = {k: v for k, v in self._refreshed.items() if now - v < REFRESH_EVERY_S}
        self._refreshed[task.id] = now
        try:
            client_call = await remote.call_context_for(call)
            async with asyncio.timeout(min(remote.timeout_s, FOLLOW_WAIT_S)):
                snapshot = await remote.client().get_task(GetTaskRequest(id=downstream), context=client_call)
        except Exception as exc:  # noqa: BLE001 - the stored task is answered
            log.info("a2a_task_reread_failed", agent=agent, error=type(exc).__name__)
            return
        follow = Follow([StreamResponse(task=snapshot)])
        await self._deliver(endpoint, endpoint.owner(call), task.id, follow)
        with suppress(TimeoutError):
            async with asyncio.timeout(FOLLOW_WAIT_S):
                await follow.done.wait()


class FaceHooks:
    """`adapters.a2a.follow.Hooks` for one endpoint (`/a2a/<agent>`, or `router` for `/a2a`)."""

    def __init__(self, webhooks: DownstreamWebhooks, face: str) -> None:
        self._webhooks = webhooks
        self._face = face

    async def plan(self, agent: str, task_id: str, context: RequestContext) -> FollowPlan:
        remote = self._webhooks._pushes(agent)
        endpoint = self._webhooks._endpoints.get(self._face)
        if remote is None or endpoint is None or remote.card is None:
            return FollowPlan()
        existing = await self._webhooks._store.of_task(self._face, task_id)
        if existing is not None and existing.agent == agent:
            return FollowPlan(hooked=True)
        configuration = context.configuration
        asked = configuration is not None and configuration.HasField("task_push_notification_config")
        if not asked and not await endpoint.configs.get_info_for_dispatch(task_id):
            return FollowPlan()
        detach = (
            not remote.card.capabilities.streaming
            and configuration is not None
            and configuration.return_immediately
        )
        return FollowPlan(wanted=True, detach=detach)

    async def register(
        self, agent: str, task_id: str, downstream_task_id: str, call: ServerCallContext | None
    ) -> bool:
        return await self._webhooks.register(self._face, agent, task_id, downstream_task_id, call)


async def resume(handler: DefaultRequestHandler, task_id: str, context: ServerCallContext) -> bool:
    """Run the handler's executor once more on an existing task, with `context` (its state says
    what to do); False when the task is not found (for that owner) or has ended."""
    registry = handler._active_task_registry  # the SDK has no public way to run a request on a task
    try:
        active = await registry.get_or_create(task_id, call_context=context, create_task_if_missing=False)
        await active.enqueue_request(RequestContext(call_context=context, task_id=task_id))
    except (A2AError, QueueShutDown, RuntimeError):
        return False
    return True


def _recent(task: Task, seconds: float) -> bool:
    if not task.status.HasField("timestamp"):
        return False
    changed: int = task.status.timestamp.ToNanoseconds()
    return time.time() - changed / 1e9 < seconds


def _header(scope: Scope, name: str) -> str:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key == wanted:
            return bytes(value).decode("latin-1")
    return ""


async def _body(receive: Receive, length: str, limit: int) -> bytes:
    if length.isdigit() and int(length) > limit:
        raise WebhookTooLarge(f"the notification is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidWebhook("the sender went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise WebhookTooLarge(f"the notification is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _event(body: bytes) -> StreamResponse:
    """A `StreamResponse` as a2a-sdk's push sender POSTs it (`MessageToDict(to_stream_response(e))`)."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not an object")
        event = StreamResponse()
        ParseDict(document, event, ignore_unknown_fields=True)
    except (ValueError, ParseError):
        raise InvalidWebhook("the notification is not an A2A StreamResponse") from None
    if event.WhichOneof("payload") not in ("task", "status_update", "artifact_update"):
        raise InvalidWebhook("the notification carries no task update")
    return event


def _task_id(event: StreamResponse) -> str:
    kind = event.WhichOneof("payload")
    return str(event.task.id if kind == "task" else getattr(event, str(kind)).task_id)
