"""One A2A exchange of the bridge: send a message to a downstream agent and fold what comes back
(A2A 1.0 §9.4.1 SendMessage, §9.4.2 SendStreamingMessage: the client streams when the card says the
agent does), relaying status updates as progress; cancel the downstream task of an abandoned call
(§9.4.5 CancelTask, recorded under the agent's governor). Failures become the gateway's errors,
naming the agent, never its URL or a credential.

What an exchange holds of the agent's answer is bounded (`MAX_RESPONSE_BYTES`, `MAX_RESPONSE_PARTS`):
an agent streaming artifact chunks for the whole call cannot pile them up in the gateway's memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
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
)
from a2a.utils.errors import A2AError

from adapters.a2a.proxy import SETTLED
from adapters.bridge.content import message_text, state_name
from adapters.governance import CallGovernor, Failed
from adapters.mcp.providers import ProgressFn
from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable

log = structlog.get_logger(__name__)

CANCEL: Final = "CancelTask"
CANCEL_TIMEOUT_S: Final = 5.0
"""Longest the downstream CancelTask of an abandoned call may take."""

MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
"""Most an exchange holds of the agent's answer: the artifacts' parts (serialized size) and its
latest message. Past it the downstream task is cancelled and the call is a tool error
`downstream_response_too_large` (an MCP result carries it whole, base64 for bytes, so about 11 MiB)."""
MAX_RESPONSE_PARTS: Final = 1000
"""Most parts the artifacts of one exchange may have (each is one MCP content block); past it, as
past `MAX_RESPONSE_BYTES`."""
TOO_LARGE: Final = "downstream_response_too_large"
DOWNSTREAM_ERROR: Final = "downstream_error"


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


class ResponseTooLarge(Exception):
    """The agent's answer passed `MAX_RESPONSE_BYTES` or `MAX_RESPONSE_PARTS`."""


@dataclass
class Exchange:
    """What the agent said in one exchange."""

    skill: str = ""
    """The skill the message is for (names the A2A audit records of the exchange)."""
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
    too_large: bool = False
    """The answer passed the exchange's bounds: dropped, and the downstream task cancelled."""
    held: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Bytes and parts held per artifact id."""
    held_bytes: int = 0
    """Of the artifacts and the latest message."""
    held_parts: int = 0

    def as_a2a(self) -> Task | Message | Failed | None:
        """What the A2A audit record's outcome is judged on."""
        if self.refused is not None:
            return Failed(DOWNSTREAM_ERROR)
        if self.too_large:
            return Failed(TOO_LARGE)
        if self.state is None:
            return self.message
        task = Task(id=self.task_id, context_id=self.context_id)
        task.status.state = self.state  # type: ignore[assignment]
        return task

    def hold(self, artifact: Artifact, *, append: bool) -> None:
        """Keep an artifact (or append a chunk to the one of its id); past the bounds, raise
        `ResponseTooLarge`."""
        size, parts = sum(p.ByteSize() for p in artifact.parts), len(artifact.parts)
        known = self.artifacts.get(artifact.artifact_id)
        before = self.held.get(artifact.artifact_id, (0, 0))
        if append and known is not None:
            size, parts = before[0] + size, before[1] + parts
            known.parts.extend(artifact.parts)
        else:
            self.artifacts[artifact.artifact_id] = artifact
        self.held[artifact.artifact_id] = (size, parts)
        self._count(size - before[0], parts - before[1])

    def say(self, message: Message) -> None:
        """Keep the agent's latest message; raise `ResponseTooLarge` past the bounds."""
        before = self.message.ByteSize() if self.message is not None else 0
        self.message = message
        self._count(message.ByteSize() - before, 0)

    def _count(self, size: int, parts: int) -> None:
        self.held_bytes += size
        self.held_parts += parts
        if self.held_bytes > MAX_RESPONSE_BYTES or self.held_parts > MAX_RESPONSE_PARTS:
            raise ResponseTooLarge


class Messenger:
    """Sends the bridge's messages to one agent: `timeout_s` (the agent's) bounds each silence,
    `call_timeout_s` (the upstream's) a whole call. The bridge's own CancelTask calls are recorded
    through `governor` (the agent's)."""

    def __init__(
        self, downstream: Downstream, governor: CallGovernor, *, upstream: str, call_timeout_s: float
    ) -> None:
        self._down = downstream
        self._governor = governor
        self._upstream = upstream
        self._call_timeout_s = call_timeout_s

    async def send(
        self, scope: Mapping[str, Any], request: SendMessageRequest, progress: ProgressFn | None, ex: Exchange
    ) -> None:
        """Send the message; fold what comes back into `ex` (GatewayErrors for the gateway's failures).
        A failure cancels the downstream task first, then tells the breaker (the failure may open the
        circuit; the cancel goes out on the client in hand regardless)."""
        down = self._down
        try:
            client = down.client()
        except ConnectionError as exc:
            raise UpstreamUnavailable(str(exc), upstream=self._upstream) from None
        context = await down.call_context(scope)
        end = asyncio.get_running_loop().time() + self._call_timeout_s
        try:
            async with self._slot(end):
                await self._stream(client, request, context, progress, ex, end)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._abandon(scope, client, ex, context)
            raise
        except ResponseTooLarge:
            await self._abandon(scope, client, ex, context)
            down.record(True)  # it answered, too much
            log.warning(
                "a2a_bridge_response_too_large", agent=down.name, size=ex.held_bytes, parts=ex.held_parts
            )
            ex.too_large, ex.artifacts, ex.message = True, {}, None
            return
        except (TimeoutError, A2AClientTimeoutError):
            await self._abandon(scope, client, ex, context)
            down.record(False)
            raise UpstreamTimeout(
                f"agent {down.name!r} did not answer in time (silence over {down.timeout_s:g} s "
                f"or the whole call over {self._call_timeout_s:g} s)",
                upstream=self._upstream,
            ) from None
        except A2AClientError as exc:  # transport trouble: refused connection, HTTP 5xx, bad body
            await self._abandon(scope, client, ex, context)
            down.record(False)
            log.warning("a2a_bridge_downstream_failed", agent=down.name, error=type(exc).__name__)
            raise UpstreamUnavailable(
                f"agent {down.name!r} is unavailable ({type(exc).__name__})", upstream=self._upstream
            ) from None
        except A2AError as exc:  # it answered, with a refusal (an unknown task, ...)
            down.record(True)
            ex.refused = type(exc).__name__
            return
        except GatewayError:  # ours (no free slot in time): not the agent's failure
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure downstream fails closed, safely
            await self._abandon(scope, client, ex, context)
            down.record(False)
            log.warning("a2a_bridge_downstream_failed", agent=down.name, error=type(exc).__name__)
            raise UpstreamUnavailable(
                f"agent {down.name!r} is unavailable ({type(exc).__name__})", upstream=self._upstream
            ) from None
        down.record(True)
        if not ex.settled:
            await self._abandon(scope, client, ex, context)
            raise UpstreamUnavailable(
                f"agent {down.name!r} stopped answering before the task finished", upstream=self._upstream
            )

    @asynccontextmanager
    async def _slot(self, end: float) -> AsyncIterator[None]:
        """One of the agent's `max_concurrency` slots, waited for at most `timeout_s` (and within the
        call's `end`). Running out of time here is the gateway's saturation, not the agent's failure:
        `UpstreamTimeout`, and the breaker is not told."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(loop.time() + self._down.timeout_s, end)):
                await self._down.slots.acquire()
        except TimeoutError:
            raise UpstreamTimeout(
                f"agent {self._down.name!r} is at its concurrency limit: no free slot within "
                f"{self._down.timeout_s:g} s",
                upstream=self._upstream,
            ) from None
        try:
            yield
        finally:
            self._down.slots.release()

    async def _stream(
        self,
        client: Client,
        request: SendMessageRequest,
        context: ClientCallContext,
        progress: ProgressFn | None,
        ex: Exchange,
        end: float,
    ) -> None:
        """Read the agent's events: `timeout_s` bounds each silence, `end` the call."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(min(loop.time() + self._down.timeout_s, end)) as silence:
            async for event in client.send_message(request, context=context):
                silence.reschedule(min(loop.time() + self._down.timeout_s, end))
                # Read to the end: a follow-up's stream opens with the task as it was (waiting).
                if await _take(event, ex, progress):
                    break

    async def _abandon(
        self, scope: Mapping[str, Any], client: Client | None, ex: Exchange, context: ClientCallContext
    ) -> None:
        """Best effort: cancel the downstream task of a call that stops following it, recorded as
        `CancelTask` under the agent's governor. `client`: the one the exchange used (still usable
        when a failure meanwhile opened the circuit); None to ask for one."""
        if not ex.task_id or ex.settled:
            return
        name, task_id = self._down.name, ex.task_id

        async def run() -> Task | Failed:
            try:
                with anyio.fail_after(CANCEL_TIMEOUT_S):
                    return await (client or self._down.client()).cancel_task(
                        CancelTaskRequest(id=task_id), context=context
                    )
            except ConnectionError as exc:
                raise UpstreamUnavailable(str(exc), upstream=self._upstream) from None
            except (TimeoutError, A2AClientTimeoutError):
                raise UpstreamTimeout(
                    f"agent {name!r} did not answer CancelTask in time", upstream=self._upstream
                ) from None
            except A2AClientError as exc:
                raise UpstreamUnavailable(
                    f"agent {name!r} is unavailable ({type(exc).__name__})", upstream=self._upstream
                ) from None
            except A2AError:  # it refused (e.g. the task ended meanwhile)
                return Failed(DOWNSTREAM_ERROR)

        try:
            outcome = await self._governor.around(scope, CANCEL, ex.skill or None, None, run)
        except Exception as exc:  # noqa: BLE001 - the call fails (or was cancelled) regardless
            log.info("a2a_bridge_cancel_failed", agent=name, error=type(exc).__name__)
            return
        log.info("a2a_bridge_downstream_canceled", agent=name, refused=isinstance(outcome, Failed))

    async def cancel(self, scope: Mapping[str, Any], task_id: str, skill: str) -> None:
        """Cancel a waiting task the caller declined to answer (best effort, recorded)."""
        try:
            context = await self._down.call_context(scope)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.info("a2a_bridge_cancel_failed", agent=self._down.name, error=type(exc).__name__)
            return
        await self._abandon(scope, None, Exchange(skill=skill, task_id=task_id), context)


async def _take(event: StreamResponse, ex: Exchange, progress: ProgressFn | None) -> bool:
    """Fold one event into the exchange (relaying a status update as progress); True when the
    exchange is over (a message reply). Raises `ResponseTooLarge` past the exchange's bounds."""
    kind = event.WhichOneof("payload")
    if kind == "message":
        ex.context_id, ex.state = event.message.context_id, None
        ex.settled = True
        ex.say(event.message)
        return True
    if kind == "task":
        task = event.task
        ex.task_id, ex.context_id, ex.state = task.id, task.context_id, task.status.state
        ex.settled = task.status.state in SETTLED
        for artifact in task.artifacts:
            ex.hold(artifact, append=False)
        if task.status.HasField("message"):
            ex.say(task.status.message)
    elif kind == "artifact_update":
        update = event.artifact_update
        ex.hold(update.artifact, append=update.append)
    elif kind == "status_update":
        status = event.status_update.status
        ex.task_id = ex.task_id or event.status_update.task_id
        ex.state = status.state
        ex.settled = status.state in SETTLED
        if status.HasField("message"):
            ex.say(status.message)
        if progress is not None and not ex.settled:
            ex.steps += 1
            note = message_text(status.message) if status.HasField("message") else ""
            try:
                await progress(ex.steps, None, note or state_name(status.state))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the caller is gone; its cancellation follows
    return False
