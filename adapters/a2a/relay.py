"""The store-light relay of a blocking `SendMessage` (A2A 1.0 §9.4.1): the same proxy executor the
SDK's request handler runs, but its events folded into one Task in memory instead of going through
the SDK's per-task machinery (an `ActiveTask` with producer, consumer and subscriber queues, a task
store read and write and a push-config lookup per event). The caller's task is written once when
the exchange ends; an exchange still running after the store's coalescing delay is written then
too, so other replicas (and a restart) see it while it works.

Used only where nobody else can be following the task yet: a new task (no `task_id`), answered when
it ends (no `return_immediately`), without a webhook in the request. Everything else (streaming,
follow-ups, `return_immediately`, push configs) stays on the SDK's handler. While a task is relayed
its caller can read it (GetTask, ListTasks once written) and cancel it, but not follow it: the
request handler refuses SubscribeToTask, a follow-up message and a push config for it.

How a relay ends: with the task's final state (written at once); canceled (CancelTask recorded
CANCELED, here or on another replica: the executor is stopped and the caller gets the canceled
task; the handler asks the downstream agent to cancel); FAILED with a status message if the
executor raised; and, if the relay's own request is cancelled (a client gone, a shutdown past its
grace period), not at all: the task stays as last staged, WORKING with its downstream ids, so it
can be found and cancelled later, as on the SDK's path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.types import (
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InternalError, UnsupportedOperationError
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.task import apply_history_length, validate_history_length


class RelayStore(Protocol):
    """Where a relayed task is kept: `begin` names the hook that stops the relay when the task is
    canceled meanwhile, `stage` keeps its latest state (written only if the exchange runs on past
    the store's coalescing delay; ignored once canceled), `finish` writes its final one at once (a
    task that ended meanwhile stays as it is, and that is what `finish` returns), `leave` ends a
    relay without an end (the last staged state stays), `relaying` tells whether a caller's task
    is relayed here now."""

    def begin(self, task_id: str, context: ServerCallContext, stop: Callable[[], None]) -> None: ...

    def stage(self, task: Task, context: ServerCallContext) -> None: ...

    async def finish(self, task: Task, context: ServerCallContext) -> Task: ...

    def leave(self, task_id: str, context: ServerCallContext) -> None: ...

    def relaying(self, task_id: str, context: ServerCallContext) -> bool: ...


def relayable(params: SendMessageRequest) -> bool:
    """A new task, answered when it ends, no webhook: nobody can follow it before it is answered."""
    config = params.configuration
    return (
        not params.message.task_id
        and not config.return_immediately
        and not config.HasField("task_push_notification_config")
    )


class TaskFold:
    """The event sink of one relayed exchange (`enqueue_event`, like the SDK's event queue): folds
    the events into the caller's Task by the SDK task manager's rules, or keeps the reply Message."""

    def __init__(
        self,
        task_id: str,
        context_id: str,
        message: Message,
        store: RelayStore,
        call: ServerCallContext,
        cut: Callable[[], bool] = lambda: False,
    ) -> None:
        self._task_id, self._context_id, self._message = task_id, context_id, message
        self._store, self._call, self._cut = store, call, cut
        self.task: Task | None = None
        self.reply: Message | None = None

    async def enqueue_event(self, event: Any) -> None:
        if self._cut():  # what an executor says while its request is cancelled is not the agent's
            return
        if isinstance(event, Message):
            self.reply = event
            return
        if isinstance(event, Task):
            if self.task is None:  # a second Task would replace the first: the SDK ignores it too
                self.task = event
        elif isinstance(event, TaskStatusUpdateEvent):
            task = self._ensure()
            if task.status.HasField("message"):
                task.history.append(task.status.message)
            if event.metadata:
                task.metadata.MergeFrom(event.metadata)
            task.status.CopyFrom(event.status)
        elif isinstance(event, TaskArtifactUpdateEvent):
            append_artifact_to_task(self._ensure(), event)
        else:
            return
        if self.task is not None:
            self._store.stage(self.task, self._call)

    def _ensure(self) -> Task:
        if self.task is None:
            self.task = Task(
                id=self._task_id,
                context_id=self._context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[self._message],
            )
        return self.task


async def relay_message(
    executor: AgentExecutor, params: SendMessageRequest, context: ServerCallContext, store: RelayStore
) -> Task | Message:
    """Run `executor` for a new task and answer with its final Task (or the agent's Message)."""
    validate_proto_required_fields(params)
    validate_history_length(params.configuration)
    task_id = str(uuid.uuid4())
    context_id = params.message.context_id or str(uuid.uuid4())
    request = RequestContext(call_context=context, request=params, task_id=task_id, context_id=context_id)
    message = request.message or params.message
    this = asyncio.current_task()

    def cut() -> bool:
        """This request is being cancelled (a client gone, a shutdown past its grace period)."""
        return this is not None and this.cancelling() > 0

    fold = TaskFold(task_id, context_id, message, store, context, cut)
    execution = asyncio.ensure_future(executor.execute(request, fold))  # type: ignore[arg-type]
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        execution.cancel()

    store.begin(task_id, context, stop)
    try:
        await execution  # cancelling this request cancels the execution too
    except asyncio.CancelledError:
        if not stopped or cut():
            store.leave(task_id, context)  # the task stays as last staged
            raise
        # canceled by CancelTask: `finish` returns the canceled task
    except Exception as exc:
        if not cut():
            if fold.task is None:
                store.leave(task_id, context)
            else:  # the SDK leaves a task whose producer failed FAILED
                fold.task.status.CopyFrom(_failed(task_id, context_id, type(exc).__name__))
                await store.finish(fold.task, context)
            raise
    if cut():  # the execution swallowed our cancellation, or failed for it (its client closed)
        store.leave(task_id, context)
        raise asyncio.CancelledError
    if fold.task is not None:
        return apply_history_length(await store.finish(fold.task, context), params.configuration)
    store.leave(task_id, context)  # no task: nothing to write
    if fold.reply is not None:
        return fold.reply
    raise InternalError(message="the agent answered nothing")


def _failed(task_id: str, context_id: str, error: str) -> TaskStatus:
    """A FAILED status saying why (the exception's type only: its text may carry internals)."""
    status = TaskStatus(state=TaskState.TASK_STATE_FAILED)
    status.timestamp.FromDatetime(datetime.now(UTC))
    status.message.CopyFrom(
        Message(
            message_id=str(uuid.uuid4()),
            role=Role.ROLE_AGENT,
            task_id=task_id,
            context_id=context_id,
            parts=[Part(text=f"the relay failed ({error})")],
        )
    )
    return status


WHILE_RELAYED: Final[dict[str, str]] = {
    "SendMessage": "send follow-up messages once it has ended or asks for input",
    "SubscribeToTask": "it cannot be subscribed to; read its progress with GetTask",
    "CreateTaskPushNotificationConfig": "a webhook cannot be added while it runs; name one in the "
    "message instead (configuration.task_push_notification_config)",
}
"""The calls on a task that its relay refuses while it runs (by the request handler), and why."""


def refuse_relayed(store: RelayStore | None, method: str, task_id: str, context: ServerCallContext) -> None:
    """Raise UnsupportedOperationError (A2A -32004) if the caller's `task_id` is relayed here now
    and `method` cannot follow it (`WHILE_RELAYED`): the relay has no subscribers, webhooks or
    second producer. Owner-scoped like the store: another caller's task is not relayed for it."""
    hint = WHILE_RELAYED.get(method)
    if hint is not None and store is not None and task_id and store.relaying(task_id, context):
        raise UnsupportedOperationError(
            message=f"task {task_id} is still being answered to a blocking SendMessage: {hint}"
        )
