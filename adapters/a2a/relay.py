"""The store-light relay of a blocking `SendMessage` (A2A 1.0 §9.4.1): the same proxy executor the
SDK's request handler runs, but its events folded into one Task in memory instead of going through
the SDK's per-task machinery (an `ActiveTask` with producer, consumer and subscriber queues, a task
store read and write and a push-config lookup per event). The caller's task is written once when
the exchange ends; an exchange still running after the store's coalescing delay is written then
too, so other replicas (and a restart) see it while it works.

Used only where nobody else can be following the task yet: a new task (no `task_id`), answered when
it ends (no `return_immediately`), without a webhook in the request. Everything else (streaming,
follow-ups, `return_immediately`, push configs) stays on the SDK's handler.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.types import (
    Message,
    SendMessageRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InternalError
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.task import apply_history_length, validate_history_length


class RelayStore(Protocol):
    """Where a relayed task is kept: `stage` its latest state (written only if the exchange runs on
    past the store's coalescing delay), `finish` with its final one (written at once; a task
    canceled meanwhile stays canceled, and that is what `finish` returns)."""

    def stage(self, task: Task, context: ServerCallContext) -> None: ...

    async def finish(self, task: Task, context: ServerCallContext) -> Task: ...


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
        self, task_id: str, context_id: str, message: Message, store: RelayStore, call: ServerCallContext
    ) -> None:
        self._task_id, self._context_id, self._message = task_id, context_id, message
        self._store, self._call = store, call
        self.task: Task | None = None
        self.reply: Message | None = None

    async def enqueue_event(self, event: Any) -> None:
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
    fold = TaskFold(task_id, context_id, message, store, context)
    try:
        await executor.execute(request, fold)  # type: ignore[arg-type]
    except BaseException:
        if fold.task is not None:  # the SDK leaves a task whose producer failed FAILED
            fold.task.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_FAILED))
            await store.finish(fold.task, context)
        raise
    if fold.task is not None:
        return apply_history_length(await store.finish(fold.task, context), params.configuration)
    if fold.reply is not None:
        return fold.reply
    raise InternalError(message="the agent answered nothing")
