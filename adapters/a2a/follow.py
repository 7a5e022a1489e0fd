"""Following a downstream task without a live relay stream (A2A 1.0 §4.3 push notifications): the
events a downstream agent POSTs to Interlink's webhook, or a re-read of its task, become updates of
the caller's task, re-stamped with the gateway's ids exactly as the relay does. Pure: no I/O; the
executor (`adapters/a2a/proxy.py`) enqueues what `updates` returns, so the SDK's machinery saves
the task and hands each update to the caller's webhooks, as for a relayed event.

De-duplication. A downstream event can arrive twice: on the relay stream and at the webhook. The
webhook's events run on the task after the relay's exchange ends (the SDK runs one request of a task
at a time), so on the replica that relayed, the `Ledger` drops a webhook event the stream already
relayed (same bytes, counted). Everywhere else (another replica, after a restart) a status is taken
only when it is newer than the task's (its timestamp, else its state), and nothing changes a task
that has ended.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Protocol

from a2a.server.agent_execution import RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.types import (
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

FOLLOW_KEY: Final = "interlink.follow"
"""`ServerCallContext.state` key of a request that applies a `Follow` to an existing task."""

ENDED: Final = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)

Update = TaskStatusUpdateEvent | TaskArtifactUpdateEvent


@dataclass
class Follow:
    """Downstream events to apply to the caller's task; `done` is set once they are applied (or
    found to be old), `applied` counts the updates they made."""

    events: list[StreamResponse]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    applied: int = 0


@dataclass(frozen=True)
class FollowPlan:
    """What an exchange does about Interlink's own webhook at the downstream agent."""

    wanted: bool = False
    """The caller's task has a webhook and the agent sends push notifications: register ours."""
    hooked: bool = False
    """Ours is registered for this task already."""
    detach: bool = False
    """The agent does not stream and the caller asked not to wait: ask the agent to answer at once
    (`return_immediately`) and follow the task by webhook."""


class Hooks(Protocol):
    """The gateway's registry of its webhooks at downstream agents (`gateway/a2a_hooks.py`)."""

    async def plan(self, agent: str, task_id: str, context: RequestContext) -> FollowPlan: ...

    async def register(
        self, agent: str, task_id: str, downstream_task_id: str, call: ServerCallContext | None
    ) -> bool:
        """Register Interlink's webhook for the downstream task (CreateTaskPushNotificationConfig);
        False when the agent refused it or did not answer."""
        ...


class Ledger:
    """Per caller task followed by webhook, the fingerprints of the downstream events its relay
    stream relayed (oldest tasks forgotten first), and the tasks whose relay is live here."""

    MAX_TASKS: Final = 1_000
    MAX_EVENTS: Final = 10_000
    """Per task; beyond it, duplicates are caught by the status rule only."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, Counter[bytes]] = OrderedDict()
        self._live: Counter[str] = Counter()

    def record(self, task_id: str, event: Update) -> None:
        seen = self._seen.get(task_id)
        if seen is None:
            seen = self._seen[task_id] = Counter()
            if len(self._seen) > self.MAX_TASKS:
                self._seen.popitem(last=False)
        if len(seen) < self.MAX_EVENTS:
            seen[fingerprint(event)] += 1

    def consume(self, task_id: str, event: Update) -> bool:
        """True when the relay already relayed this event (then it counts as seen once less)."""
        seen = self._seen.get(task_id)
        key = fingerprint(event)
        if not seen or not seen[key]:
            return False
        seen[key] -= 1
        return True

    def forget(self, task_id: str) -> None:
        self._seen.pop(task_id, None)

    @contextmanager
    def relaying(self, task_id: str) -> Iterator[None]:
        self._live[task_id] += 1
        try:
            yield
        finally:
            self._live[task_id] -= 1
            if not self._live[task_id]:
                del self._live[task_id]

    def live(self, task_id: str) -> bool:
        """A relay stream of this task runs in this process."""
        return task_id in self._live


def fingerprint(event: Update) -> bytes:
    """The event as the downstream sent it, whichever way it came (ids left out)."""
    copy = type(event)()
    copy.CopyFrom(event)
    copy.task_id, copy.context_id = "", ""
    if isinstance(copy, TaskStatusUpdateEvent) and copy.status.HasField("message"):
        copy.status.message.task_id, copy.status.message.context_id = "", ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def updates(current: Task, event: StreamResponse, ledger: Ledger | None = None) -> list[Update]:
    """The updates of the caller's task `current` one downstream event brings, stamped with its ids:
    none for an event it already has, an old one, or once the task has ended."""
    if current.status.state in ENDED:
        return []
    kind = event.WhichOneof("payload")
    if kind == "task":
        return _changes(current, event.task)
    if kind not in ("status_update", "artifact_update"):
        return []  # a message: not part of a task's updates
    inner: Update = getattr(event, kind)
    if ledger is not None and ledger.consume(current.id, inner):
        return []
    if isinstance(inner, TaskStatusUpdateEvent) and not newer(inner.status, current.status):
        return []
    out = type(inner)()
    out.CopyFrom(inner)
    _stamp(out, current)
    return [out]


def _changes(current: Task, snapshot: Task) -> list[Update]:
    """What a downstream Task has that `current` lacks: new or changed artifacts (whole), then its
    status if newer. A snapshot older than `current` brings nothing."""
    if older(snapshot.status, current.status):
        return []
    known = {a.artifact_id: a for a in current.artifacts}
    out: list[Update] = []
    for artifact in snapshot.artifacts:
        if known.get(artifact.artifact_id) != artifact:
            update = TaskArtifactUpdateEvent()
            update.artifact.CopyFrom(artifact)
            out.append(update)
    if newer(snapshot.status, current.status):
        status = TaskStatusUpdateEvent()
        status.status.CopyFrom(snapshot.status)
        out.append(status)
    for update in out:
        _stamp(update, current)
    return out


def newer(status: TaskStatus, than: TaskStatus) -> bool:
    """`status` moves the task on from `than`: a later timestamp; without timestamps, another
    state (never back to SUBMITTED)."""
    if status.HasField("timestamp") and than.HasField("timestamp"):
        a, b = status.timestamp, than.timestamp
        return (a.seconds, a.nanos) > (b.seconds, b.nanos) or (
            (a.seconds, a.nanos) == (b.seconds, b.nanos) and status.state != than.state
        )
    if status.state == than.state:
        return False
    return status.state != TaskState.TASK_STATE_SUBMITTED


def older(status: TaskStatus, than: TaskStatus) -> bool:
    if status.HasField("timestamp") and than.HasField("timestamp"):
        a, b = status.timestamp, than.timestamp
        return (a.seconds, a.nanos) < (b.seconds, b.nanos)
    return False


def apply(task: Task, update: Update) -> None:
    """Fold `update` into `task` by the SDK task manager's rules."""
    if isinstance(update, TaskStatusUpdateEvent):
        if task.status.HasField("message"):
            task.history.append(task.status.message)
        task.status.CopyFrom(update.status)
    else:
        append_artifact_to_task(task, update)


def _stamp(update: Update, current: Task) -> None:
    update.task_id, update.context_id = current.id, current.context_id
    if isinstance(update, TaskStatusUpdateEvent) and update.status.HasField("message"):
        update.status.message.task_id = current.id
        update.status.message.context_id = current.context_id
