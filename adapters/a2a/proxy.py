"""The A2A face's moving parts: a proxy executor that relays a task to a downstream agent, a request
handler that puts each call (push-notification configs included) through the gateway's governor,
and our errors on the A2A wire.

Ids: the gateway's task id is generated before the downstream sees the message, and a client cannot
choose a downstream task id, so the pair (downstream task id, context id) is kept in the gateway
task's `metadata` under `interlink.downstream`, persisted by the task store: follow-ups (an
input-required answer), cancel, restart and other replicas all find the downstream task from it.
Every event from downstream is re-stamped with the gateway's ids before the caller sees it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import structlog
from a2a.client import Client, ClientCallContext
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.jsonrpc_models import JSONRPCError
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import EXCEPTION_MAP
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2A_ERROR_MAPPING,
    A2A_ERROR_REASONS,
    JSON_RPC_ERROR_CODE_MAP,
    A2AError,
    ErrorMapping,
    InvalidParamsError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict

from adapters.a2a.follow import ENDED, FOLLOW_KEY, Follow, FollowPlan, Hooks, Ledger, apply, updates
from adapters.a2a.relay import RelayStore, refuse_relayed, relay_message, relayable
from adapters.governance import CallGovernor
from gateway.errors import GatewayError

log = structlog.get_logger(__name__)

T = TypeVar("T")

DOWNSTREAM_KEY: Final = "interlink.downstream"
SCOPE_KEY: Final = "interlink.scope"
"""Where the request's ASGI scope (with the authenticated caller) travels in `ServerCallContext.state`."""
SKILL_KEY: Final = "skill"
"""Message `metadata` key naming the skill a message is for (policy resource `a2a:<agent>/<skill>`)."""


Governor = CallGovernor
"""The gateway's policy and audit seam, the same object the MCP face uses."""


# -- our errors on the A2A wire --------------------------------------------------------------------

_CODES: Final[dict[str, tuple[int, int]]] = {
    "policy_denied": (-32013, 403),
    "audit_unavailable": (-32014, 503),
    "rate_limited": (-32015, 429),
    "approval_required": (-32017, 403),
    "approval_denied": (-32018, 403),
    "rate_limit_unavailable": (-32019, 503),
    "downstream_unavailable": (-32010, 502),
    "downstream_timeout": (-32011, 504),
    "downstream_error": (-32012, 502),
    "internal_error": (-32603, 500),
}
"""reason -> (JSON-RPC code, HTTP status of the HTTP+JSON binding): the MCP face's codes."""

_CLASSES: dict[str, type[A2AError]] = {}


def _error_class(reason: str) -> type[A2AError]:
    """An A2AError subclass per reason, registered with the SDK's error tables so both bindings
    carry our code and `reason` (JSON-RPC: `error.data[0].metadata.reason`)."""
    cls = _CLASSES.get(reason)
    if cls is None:
        code, status = _CODES.get(reason, _CODES["internal_error"])
        name = "".join(part.title() for part in reason.split("_")) + "Error"
        cls = type(name, (A2AError,), {"message": reason.replace("_", " ")})
        JSON_RPC_ERROR_CODE_MAP[cls] = code
        A2A_ERROR_REASONS[cls] = reason.upper()
        A2A_ERROR_MAPPING[cls] = ErrorMapping(
            status, "PERMISSION_DENIED" if status == 403 else "UNAVAILABLE", reason.upper()
        )
        EXCEPTION_MAP[cls] = JSONRPCError
        _CLASSES[reason] = cls
    return cls


_INVALID_PARAMS: Final = frozenset({"invalid_arguments", "unknown_skill"})
"""Reasons that are the SDK's own invalid-params error (JSON-RPC -32602, HTTP 400)."""


def to_a2a_error(error: GatewayError) -> A2AError:
    """The A2A error a caller receives for one of ours (message and data safe to show)."""
    reason = error.reason.replace("upstream_", "downstream_")
    cls = InvalidParamsError if reason in _INVALID_PARAMS else _error_class(reason)
    return cls(error.message, data={"reason": reason, **error.detail})


# -- relaying a task -------------------------------------------------------------------------------


class Downstream(Protocol):
    """How the executor reaches the downstream agent: a client, and per call the credential."""

    name: str
    timeout_s: float

    def client(self) -> Client: ...

    async def call_context(self, context: RequestContext) -> ClientCallContext: ...

    def record(self, ok: bool) -> None:
        """Told after each call whether the agent answered (its circuit breaker)."""
        ...


class DownstreamFailed(Exception):
    """The downstream agent failed; the message is safe to show (no URL or credential)."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.message = message
        self.before_response = before_response


SETTLED: Final = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_AUTH_REQUIRED,
    }
)
"""Terminal and interrupted states (A2A 1.0 §4.1.3): where a downstream stream may rightly end."""


@dataclass
class _Progress:
    """What the downstream agent has said so far in one exchange."""

    downstream_id: str = ""
    settled: bool = False
    """A message reply came, or the task's last state is terminal or interrupted."""
    answered: bool = False
    """The agent has sent something in this exchange."""
    hooked: bool = False
    """Interlink's webhook is registered at the agent for this task: it follows the task when the
    stream ends early (or never was one), so an unfinished exchange is not a failure."""


class ProxyExecutor(AgentExecutor):
    """Relays each task to the downstream agent and re-stamps its events with the gateway's ids.
    With `hooks`, a task whose caller has a webhook is also followed through Interlink's own webhook
    at the agent (`adapters/a2a/follow.py`); a request carrying a `Follow` applies its events."""

    def __init__(
        self, downstream: Downstream, *, hooks: Hooks | None = None, ledger: Ledger | None = None
    ) -> None:
        self._down = downstream
        self._hooks = hooks
        self._ledger = ledger or Ledger()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        state = context.call_context.state if context.call_context is not None else {}
        follow = state.get(FOLLOW_KEY)
        if isinstance(follow, Follow):
            await self.follow(context, event_queue, follow)
            return
        hold = state.get(HOLD_KEY)
        if hold:
            await hold_task(event_queue, context, str(hold))
            return
        try:
            await self.attempt(context, event_queue)
        except DownstreamFailed as exc:
            await fail_task(event_queue, context, exc.message)

    async def attempt(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Relay the message; raise DownstreamFailed (with `before_response` telling whether the
        agent had answered anything yet) instead of ending the task, so a router may try another."""
        task_id = context.task_id or ""
        mapped = _mapping(context.current_task)
        message = Message()
        message.CopyFrom(context.message)
        message.task_id = mapped.get("task_id", "")
        message.context_id = mapped.get("context_id", "")
        request = SendMessageRequest(message=message)
        if context.configuration is not None:
            request.configuration.accepted_output_modes.extend(context.configuration.accepted_output_modes)
        name = self._down.name
        plan = await self._hooks.plan(name, task_id, context) if self._hooks is not None else FollowPlan()
        if plan.detach:
            request.configuration.return_immediately = True
        progress = _Progress(downstream_id=mapped.get("task_id", ""), hooked=plan.hooked)
        call: ClientCallContext | None = None
        try:
            call = await self._down.call_context(context)
            with self._ledger.relaying(task_id):
                await self._stream(request, context, event_queue, plan, progress, call)
            self._down.record(True)
        except (
            TimeoutError,
            A2AClientError,
        ) as exc:  # silence, or transport trouble (refused, 5xx, bad body)
            self._down.record(False)
            answered = progress.answered
            if progress.hooked and answered:  # our webhook at the agent follows the task from here
                log.info("a2a_following_by_webhook", agent=name, task_id=task_id, after=type(exc).__name__)
                return
            await self._abandon(progress, call)
            if isinstance(exc, TimeoutError | A2AClientTimeoutError):
                raise DownstreamFailed(
                    f"agent {name!r} did not answer within {self._down.timeout_s:g}s",
                    before_response=not answered,
                ) from None
            log.warning("a2a_downstream_failed", agent=name, error=type(exc).__name__)
            raise DownstreamFailed(
                f"agent {name!r} is unavailable ({type(exc).__name__})", before_response=not answered
            ) from None
        except A2AError as exc:
            self._down.record(True)  # it answered, with a refusal
            raise DownstreamFailed(
                f"agent {name!r} refused: {type(exc).__name__}", before_response=False
            ) from None
        except Exception as exc:  # noqa: BLE001 - any failure downstream becomes a failed task
            self._down.record(False)
            log.warning("a2a_downstream_failed", agent=name, error=type(exc).__name__)
            raise DownstreamFailed(
                f"agent {name!r} is unavailable ({type(exc).__name__})", before_response=not progress.answered
            ) from None
        if not progress.settled and progress.hooked:  # our webhook at the agent follows it from here
            if plan.detach and call is not None:
                await self._catch_up(context, event_queue, progress.downstream_id, call)
            return
        if not progress.settled:  # a stream that ends on a WORKING task would leave ours WORKING forever
            await self._abandon(progress, call)
            raise DownstreamFailed(
                f"agent {name!r} stopped answering before the task finished",
                before_response=not progress.answered,
            )

    async def _stream(
        self,
        request: SendMessageRequest,
        context: RequestContext,
        queue: EventQueue,
        plan: FollowPlan,
        progress: _Progress,
        call: ClientCallContext,
    ) -> None:
        """Relay the agent's answer; once its task id is known, register our webhook if planned."""
        task_id, context_id = context.task_id or "", context.context_id or ""
        async with asyncio.timeout(self._down.timeout_s) as deadline:
            async for event in self._down.client().send_message(request, context=call):
                progress.answered = True  # timeout_s bounds a silence, not a whole stream:
                deadline.reschedule(asyncio.get_running_loop().time() + self._down.timeout_s)
                if await self._relay(event, context, queue, task_id, context_id, progress):
                    return
                if plan.wanted and not progress.hooked and progress.downstream_id and self._hooks is not None:
                    progress.hooked = await self._hooks.register(
                        self._down.name, task_id, progress.downstream_id, context.call_context
                    )

    async def _catch_up(
        self, context: RequestContext, queue: EventQueue, downstream_id: str, call: ClientCallContext
    ) -> None:
        """Read the downstream task once after registering our webhook, for what it did before the
        webhook was there (best effort: the webhook brings the rest)."""
        try:
            async with asyncio.timeout(min(self._down.timeout_s, 5.0)):
                snapshot = await self._down.client().get_task(GetTaskRequest(id=downstream_id), context=call)
        except Exception as exc:  # noqa: BLE001 - the webhook follows the task regardless
            log.info("a2a_catch_up_failed", agent=self._down.name, error=type(exc).__name__)
            return
        if context.current_task is not None:
            await self._apply(context.current_task, [StreamResponse(task=snapshot)], queue)

    async def follow(self, context: RequestContext, queue: EventQueue, follow: Follow) -> None:
        """Apply a webhook's (or a re-read's) downstream events to the caller's task as it is
        stored now; the SDK saves each update and hands it to the caller's webhooks."""
        try:
            if context.current_task is not None:
                follow.applied = await self._apply(context.current_task, follow.events, queue)
        finally:
            follow.done.set()

    async def _apply(self, current: Task, events: list[StreamResponse], queue: EventQueue) -> int:
        view = Task()
        view.CopyFrom(current)
        applied = 0
        for event in events:
            for update in updates(view, event, self._ledger):
                apply(view, update)
                await queue.enqueue_event(update)
                applied += 1
        if view.status.state in ENDED:
            self._ledger.forget(view.id)
        return applied

    async def _abandon(self, progress: _Progress, call: ClientCallContext | None) -> None:
        """Best effort: cancel the downstream task the caller's task stops following (it fails)."""
        if not progress.downstream_id or call is None:
            return
        try:
            async with asyncio.timeout(min(self._down.timeout_s, 5.0)):
                request = CancelTaskRequest(id=progress.downstream_id)
                await self._down.client().cancel_task(request, context=call)
        except Exception as exc:  # noqa: BLE001 - the caller's task fails regardless
            log.info("a2a_downstream_abandon_failed", agent=self._down.name, error=type(exc).__name__)

    async def _relay(
        self,
        event: Any,
        context: RequestContext,
        queue: EventQueue,
        task_id: str,
        context_id: str,
        progress: _Progress,
    ) -> bool:
        """Re-emit one downstream event; True when the exchange is over (a message-only reply)."""
        kind = event.WhichOneof("payload")
        if kind == "message":
            out = Message()
            out.CopyFrom(event.message)
            out.context_id, out.task_id = context_id, ""
            await queue.enqueue_event(out)
            progress.settled = True
            return True
        if kind == "task":
            progress.settled = event.task.status.state in SETTLED
            held = context.current_task is not None and DOWNSTREAM_KEY not in context.current_task.metadata
            if context.current_task is None or held:  # new to the agent: our Task first, with the ids
                meta = struct_pb2.Struct()
                meta.update({DOWNSTREAM_KEY: {"task_id": event.task.id, "context_id": event.task.context_id}})
                task = Task(id=task_id, context_id=context_id, metadata=meta)
                if context.current_task is not None:  # a held task, approved: keep what it had
                    task.history.extend(context.current_task.history)
                if context.message is not None:
                    task.history.append(context.message)
                task.status.CopyFrom(event.task.status)
                _stamp_status(task.status, task_id, context_id)
                for artifact in event.task.artifacts:
                    task.artifacts.add().CopyFrom(artifact)
                await queue.enqueue_event(task)
                # Ours from now on: a later failure updates it instead of replacing it (and its ids).
                context.current_task = task
                progress.downstream_id = event.task.id
            elif event.task.status.state != context.current_task.status.state:
                # A whole task on a follow-up (an agent that does not stream answers this way):
                # relay what is new as updates to ours.
                known = {a.artifact_id for a in context.current_task.artifacts}
                for artifact in event.task.artifacts:
                    if artifact.artifact_id not in known:
                        update = TaskArtifactUpdateEvent(task_id=task_id, context_id=context_id)
                        update.artifact.CopyFrom(artifact)
                        await queue.enqueue_event(update)
                status = TaskStatusUpdateEvent(task_id=task_id, context_id=context_id)
                status.status.CopyFrom(event.task.status)
                _stamp_status(status.status, task_id, context_id)
                await queue.enqueue_event(status)
            return False
        inner = getattr(event, kind)  # status_update | artifact_update
        self._note(task_id, inner, progress)
        inner.task_id, inner.context_id = task_id, context_id
        if kind == "status_update":
            _stamp_status(inner.status, task_id, context_id)
            progress.settled = inner.status.state in SETTLED
        await queue.enqueue_event(inner)
        return False

    def _note(self, task_id: str, update: Any, progress: _Progress) -> None:
        """Remember an update of a task also followed by webhook, so its webhook twin is dropped
        (adapters/a2a/follow.py); once the task ends, a late twin finds it ended: forget it."""
        if not progress.hooked:
            return
        if isinstance(update, TaskStatusUpdateEvent) and update.status.state in ENDED:
            self._ledger.forget(task_id)
        else:
            self._ledger.record(task_id, update)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        mapped = _mapping(context.current_task)
        if not mapped.get("task_id"):
            return
        call = await self._down.call_context(context)
        try:
            async with asyncio.timeout(self._down.timeout_s):
                await self._down.client().cancel_task(CancelTaskRequest(id=mapped["task_id"]), context=call)
        except Exception as exc:  # noqa: BLE001 - the caller's task is canceled regardless
            log.warning("a2a_downstream_cancel_failed", agent=self._down.name, error=type(exc).__name__)


def _mapping(task: Task | None) -> dict[str, str]:
    if task is None or DOWNSTREAM_KEY not in task.metadata:
        return {}
    value = task.metadata[DOWNSTREAM_KEY]
    return {k: str(v) for k, v in dict(value).items()}


def _stamp_status(status: TaskStatus, task_id: str, context_id: str) -> None:
    if status.HasField("message"):
        status.message.task_id, status.message.context_id = task_id, context_id


async def fail_task(queue: EventQueue, context: RequestContext, text: str) -> None:
    """End the caller's task FAILED with a safe explanation (no downstream URL or token)."""
    await _settle(queue, context, text, held=False)


async def _settle(queue: EventQueue, context: RequestContext, text: str, *, held: bool) -> None:
    """Put the caller's task (created now if the agent never answered) in its end or waiting state."""
    from a2a.helpers import new_task, new_text_message
    from a2a.server.tasks import TaskUpdater

    task_id, context_id = context.task_id or "", context.context_id or ""
    if context.current_task is None:
        history = [context.message] if context.message is not None else []
        await queue.enqueue_event(
            new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
        )
    updater = TaskUpdater(queue, task_id, context_id)
    message = new_text_message(text, context_id=context_id, task_id=task_id)
    await (updater.requires_auth(message) if held else updater.failed(message))


# -- governed request handling ---------------------------------------------------------------------


HOLD_KEY: Final = "interlink.hold"
"""`ServerCallContext.state` key: the call is held for a human; the executor answers AUTH_REQUIRED."""


def message_args(message: Message) -> dict[str, Any]:
    """What a decision (and an approval) about a message is bound to: the digest of its parts, so an
    approval lets exactly that message through."""
    parts = b"".join(part.SerializeToString(deterministic=True) for part in message.parts)
    return {"message_sha256": hashlib.sha256(parts).hexdigest()}


def message_meta(message: Message) -> dict[str, Any]:
    """A message's metadata as plain data (it may carry `io.interlink/approval`)."""
    return MessageToDict(message.metadata) if message.HasField("metadata") else {}


async def decide(
    governor: Governor,
    scope: Mapping[str, Any],
    skill: str,
    message: Message,
    context: ServerCallContext,
    bridge: str | None = None,
) -> None:
    """Decide a message. A call the policy holds for a human is not an error on A2A: the caller's
    task moves to AUTH_REQUIRED, naming the approval to retry with (the executor answers so).
    `bridge`: the resource of the other protocol the message becomes (recorded with it)."""
    try:
        await governor.check(scope, "SendMessage", skill, message_args(message), bridge=bridge)
    except GatewayError as exc:
        if exc.reason != "approval_required":
            raise
        context.state[HOLD_KEY] = (
            f"{exc.message.replace('_meta', 'metadata')} (send the same message again on this task)"
        )


async def subscribable(
    handler: DefaultRequestHandler, params: SubscribeToTaskRequest, context: ServerCallContext
) -> None:
    """The SDK's checks before SubscribeToTask streams (owner-scoped: another caller's task is not
    found; an ended task has nothing more to stream), made up front so the audit record has them."""
    stored = await handler._versioned_store.get(params.id, context)
    if stored is None:
        raise TaskNotFoundError
    if stored.task.status.state in ENDED:
        state = TaskState.Name(stored.task.status.state)
        raise UnsupportedOperationError(message=f"Task {params.id} is in terminal state: {state}")


async def hold_task(queue: EventQueue, context: RequestContext, text: str) -> None:
    """Answer a held call: the caller's task waits in AUTH_REQUIRED with the approval to retry with."""
    await _settle(queue, context, text, held=True)


_TASK_CALLS_WHILE_RELAYED: Final = frozenset({"SubscribeToTask", "CreateTaskPushNotificationConfig"})
"""Calls naming a task (by id) that its relay refuses while it runs (`relay.WHILE_RELAYED`)."""


class GovernedHandler(DefaultRequestHandler):
    """The SDK's request handler with every call put through the governor first: policy for
    `SendMessage` (resource `a2a:<agent>/<skill>`), and one audit record per call. With a
    `relay_store`, a blocking message that starts a new task takes the store-light relay
    (`adapters/a2a/relay.py`); while it runs, a follow-up message, SubscribeToTask and a new push
    config for that task are refused (recorded), as nothing could serve them."""

    def __init__(
        self,
        *args: Any,
        governor: Governor,
        skill_of: Callable[[Message], str],
        relay_store: RelayStore | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._governor = governor
        self._skill_of = skill_of
        self._relay_store = relay_store

    async def send(self, params: SendMessageRequest, context: ServerCallContext) -> Any:
        """A decided blocking message: the store-light relay where it applies, else the SDK's way."""
        if self._relay_store is not None and relayable(params):
            return await relay_message(self.agent_executor, params, context, self._relay_store)
        return await DefaultRequestHandler.on_message_send(self, params, context)

    async def _admit(self, skill: str, message: Message, context: ServerCallContext) -> str | None:
        """Runs before a message is decided (inside its audit record): may refuse it with a
        GatewayError; returns the resource of the other protocol it becomes, if any (`bridge`).
        A proxied agent admits every message (its own agent judges it)."""
        return None

    async def _governed(
        self,
        context: ServerCallContext,
        method: str,
        name: str | None,
        run: Callable[[], Awaitable[T]],
        meta: Mapping[str, Any] | None = None,
    ) -> T:
        scope = context.state.get(SCOPE_KEY) or {}
        if method in _TASK_CALLS_WHILE_RELAYED and self._relay_store is not None:
            run = self._unless_relayed(method, name or "", context, run)
        try:
            return await self._governor.around(scope, method, name, None, run, meta)
        except GatewayError as exc:
            raise to_a2a_error(exc) from None

    def _unless_relayed(
        self, method: str, task_id: str, context: ServerCallContext, run: Callable[[], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        async def checked() -> T:
            refuse_relayed(self._relay_store, method, task_id, context)
            return await run()

        return checked

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Any:
        skill = self._skill_of(params.message)
        scope = context.state.get(SCOPE_KEY) or {}

        async def run() -> Any:
            refuse_relayed(self._relay_store, "SendMessage", params.message.task_id, context)
            bridge = await self._admit(skill, params.message, context)
            await decide(self._governor, scope, skill, params.message, context, bridge)
            return await self.send(params, context)

        return await self._governed(context, "SendMessage", skill, run, message_meta(params.message))

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        skill = self._skill_of(params.message)
        scope = context.state.get(SCOPE_KEY) or {}

        async def decide_stream() -> None:
            refuse_relayed(self._relay_store, "SendMessage", params.message.task_id, context)
            bridge = await self._admit(skill, params.message, context)
            await decide(self._governor, scope, skill, params.message, context, bridge)

        # The decision is recorded (write-ahead) before the stream starts; its result record marks
        # the stream as opened. The task's end state is in the task store (GetTask).
        await self._governed(
            context, "SendStreamingMessage", skill, decide_stream, message_meta(params.message)
        )
        async for event in super().on_message_send_stream(params, context):
            yield event

    async def on_get_task(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context, "GetTask", params.id, lambda: super(GovernedHandler, self).on_get_task(params, context)
        )

    async def on_cancel_task(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            "CancelTask",
            params.id,
            lambda: super(GovernedHandler, self).on_cancel_task(params, context),
        )

    async def on_list_tasks(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context, "ListTasks", None, lambda: super(GovernedHandler, self).on_list_tasks(params, context)
        )

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        # Recorded when the stream opens (as SendStreamingMessage), with the SDK's refusals.
        await self._governed(
            context, "SubscribeToTask", params.id, partial(subscribable, self, params, context)
        )
        async for event in super().on_subscribe_to_task(params, context):
            yield event

    # Push-notification configs: owner-scoped by the store; creation and deletion are recorded.

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            "CreateTaskPushNotificationConfig",
            params.task_id,
            lambda: super(GovernedHandler, self).on_create_task_push_notification_config(params, context),
        )

    async def on_get_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            "GetTaskPushNotificationConfig",
            params.task_id,
            lambda: super(GovernedHandler, self).on_get_task_push_notification_config(params, context),
        )

    async def on_list_task_push_notification_configs(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            "ListTaskPushNotificationConfigs",
            params.task_id,
            lambda: super(GovernedHandler, self).on_list_task_push_notification_configs(params, context),
        )

    async def on_delete_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        return await self._governed(
            context,
            "DeleteTaskPushNotificationConfig",
            params.task_id,
            lambda: super(GovernedHandler, self).on_delete_task_push_notification_config(params, context),
        )
