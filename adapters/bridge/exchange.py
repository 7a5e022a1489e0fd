"""One A2A exchange of the bridge: send a message to a downstream agent and fold what comes back
(A2A 1.0 §9.4.1 SendMessage, §9.4.2 SendStreamingMessage: the client streams when the card says the
agent does), relaying status updates as progress; cancel the downstream task of an abandoned call.
Failures become the gateway's errors, naming the agent, never its URL or a credential."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import anyio
import structlog
from a2a.client import Client, ClientCallContext
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.types import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    Message,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError

from adapters.bridge.content import message_text, state_name
from adapters.mcp.providers import ProgressFn
from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable

log = structlog.get_logger(__name__)

CANCEL_TIMEOUT_S: Final = 5.0
"""Longest the downstream CancelTask of an abandoned call may take."""

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
"""Where an exchange ends (terminal and interrupted states, A2A 1.0 §4.1.3)."""


class Downstream(Protocol):
    """What the bridge needs of a downstream agent (the gateway's `RemoteAgent`)."""

    name: str
    timeout_s: float
    """Longest silence of the agent (a blocking answer, or between two streamed events)."""
    slots: asyncio.Semaphore
    """Bounds the calls in flight to the agent (shared with its A2A endpoint)."""

    @property
    def card(self) -> AgentCard | None:
        """The agent's current card (refreshed by its owner); None when it has no usable one."""
        ...

    def client(self) -> Client:
        """The client; raises ConnectionError (a safe message) without a card or with the circuit open."""
        ...

    async def call_context(self, scope: Mapping[str, Any]) -> ClientCallContext:
        """The per-call credential for the caller authenticated in `scope` (never its own token)."""
        ...

    def record(self, ok: bool) -> None:
        """Told after each call whether the agent answered (its circuit breaker)."""
        ...

    def readiness(self) -> tuple[str, str | None]:
        """`ready`, `card_error`, `circuit_open`, ...; and the last error (safe to show)."""
        ...


@dataclass
class Exchange:
    """What the agent said in one exchange."""

    task_id: str = ""
    context_id: str = ""
    state: int | None = None
    """The task's last state; None for a message reply."""
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    message: Message | None = None
    """The agent's latest status message, or its message reply."""
    settled: bool = False
    steps: int = 0
    refused: str | None = None
    """The agent answered with a JSON-RPC error (its type name)."""

    def as_a2a(self) -> Task | Message | None:
        """What the A2A audit record's outcome is judged on."""
        if self.state is None:
            return self.message
        task = Task(id=self.task_id, context_id=self.context_id)
        task.status.state = self.state  # type: ignore[assignment]
        return task


class Messenger:
    """Sends the bridge's messages to one agent: `timeout_s` (the agent's) bounds each silence,
    `call_timeout_s` (the upstream's) a whole call."""

    def __init__(self, downstream: Downstream, *, upstream: str, call_timeout_s: float) -> None:
        self._down = downstream
        self._upstream = upstream
        self._call_timeout_s = call_timeout_s

    async def send(
        self, scope: Mapping[str, Any], request: SendMessageRequest, progress: ProgressFn | None, ex: Exchange
    ) -> None:
        """Send the message; fold what comes back into `ex` (GatewayErrors for the gateway's failures)."""
        down = self._down
        try:
            client = down.client()
        except ConnectionError as exc:
            raise UpstreamUnavailable(str(exc), upstream=self._upstream) from None
        context = await down.call_context(scope)
        try:
            await self._stream(client, request, context, progress, ex)
            down.record(True)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._abandon(ex, context)
            raise
        except (TimeoutError, A2AClientTimeoutError):
            down.record(False)
            await self._abandon(ex, context)
            raise UpstreamTimeout(
                f"agent {down.name!r} did not answer in time (silence over {down.timeout_s:g} s "
                f"or the whole call over {self._call_timeout_s:g} s)",
                upstream=self._upstream,
            ) from None
        except A2AClientError as exc:  # transport trouble: refused connection, HTTP 5xx, bad body
            down.record(False)
            await self._abandon(ex, context)
            log.warning("a2a_bridge_downstream_failed", agent=down.name, error=type(exc).__name__)
            raise UpstreamUnavailable(
                f"agent {down.name!r} is unavailable ({type(exc).__name__})", upstream=self._upstream
            ) from None
        except A2AError as exc:  # it answered, with a refusal (an unknown task, ...)
            down.record(True)
            ex.refused = type(exc).__name__
            return
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure downstream fails closed, safely
            down.record(False)
            await self._abandon(ex, context)
            log.warning("a2a_bridge_downstream_failed", agent=down.name, error=type(exc).__name__)
            raise UpstreamUnavailable(
                f"agent {down.name!r} is unavailable ({type(exc).__name__})", upstream=self._upstream
            ) from None
        if not ex.settled:
            await self._abandon(ex, context)
            raise UpstreamUnavailable(
                f"agent {down.name!r} stopped answering before the task finished", upstream=self._upstream
            )

    async def _stream(
        self,
        client: Client,
        request: SendMessageRequest,
        context: ClientCallContext,
        progress: ProgressFn | None,
        ex: Exchange,
    ) -> None:
        """Read the agent's events: `timeout_s` bounds each silence, `call_timeout_s` the call."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self._call_timeout_s
        async with (
            asyncio.timeout_at(min(loop.time() + self._down.timeout_s, end)) as silence,
            self._down.slots,  # waiting for a free slot counts as the agent's silence
        ):
            async for event in client.send_message(request, context=context):
                silence.reschedule(min(loop.time() + self._down.timeout_s, end))
                # Read to the end: a follow-up's stream opens with the task as it was (waiting).
                if await _take(event, ex, progress):
                    break

    async def _abandon(self, ex: Exchange, context: ClientCallContext) -> None:
        """Best effort: cancel the downstream task of a call that stops following it."""
        if not ex.task_id or ex.settled:
            return
        with anyio.move_on_after(CANCEL_TIMEOUT_S):
            try:
                await self._down.client().cancel_task(CancelTaskRequest(id=ex.task_id), context=context)
                log.info("a2a_bridge_downstream_canceled", agent=self._down.name)
            except Exception as exc:  # noqa: BLE001 - the call fails (or was cancelled) regardless
                log.info("a2a_bridge_cancel_failed", agent=self._down.name, error=type(exc).__name__)

    async def cancel(self, scope: Mapping[str, Any], task_id: str) -> None:
        """Cancel a waiting task the caller declined to answer (best effort)."""
        try:
            context = await self._down.call_context(scope)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.info("a2a_bridge_cancel_failed", agent=self._down.name, error=type(exc).__name__)
            return
        await self._abandon(Exchange(task_id=task_id), context)


async def _take(event: StreamResponse, ex: Exchange, progress: ProgressFn | None) -> bool:
    """Fold one event into the exchange (relaying a status update as progress); True when the
    exchange is over (a message reply)."""
    kind = event.WhichOneof("payload")
    if kind == "message":
        ex.message, ex.context_id, ex.state = event.message, event.message.context_id, None
        ex.settled = True
        return True
    if kind == "task":
        task = event.task
        ex.task_id, ex.context_id, ex.state = task.id, task.context_id, task.status.state
        for artifact in task.artifacts:
            ex.artifacts[artifact.artifact_id] = artifact
        if task.status.HasField("message"):
            ex.message = task.status.message
        ex.settled = task.status.state in SETTLED
    elif kind == "artifact_update":
        update = event.artifact_update
        known = ex.artifacts.get(update.artifact.artifact_id)
        if update.append and known is not None:
            known.parts.extend(update.artifact.parts)
        else:
            ex.artifacts[update.artifact.artifact_id] = update.artifact
    elif kind == "status_update":
        status = event.status_update.status
        ex.task_id = ex.task_id or event.status_update.task_id
        ex.state = status.state
        if status.HasField("message"):
            ex.message = status.message
        ex.settled = status.state in SETTLED
        if progress is not None and not ex.settled:
            ex.steps += 1
            note = message_text(status.message) if status.HasField("message") else ""
            try:
                await progress(ex.steps, None, note or state_name(status.state))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the caller is gone; its cancellation follows
    return False
