"""A small A2A 1.0 agent on the Python `a2a-sdk`, with the same text-keyed behaviour as the JavaScript
peer `tests/a2a_js/agent.mjs`, so tests can drive either vendor the same way.

- "echo <text>": completes at once with artifact "<text>" and status message "done".
- "stream <n>": n steps ~50 ms apart, each a WORKING status update plus an artifact chunk "chunk <i>"
  (one artifact, appended); then completes with "streamed <n>".
- "slow": works until CancelTask (-> CANCELED).
- "ask": INPUT_REQUIRED "what is your name?"; the next message on that task (or, without a task id, on
  that context) completes with artifact and status message "thanks, <answer>".
- "fail": ends FAILED with "failed on purpose".
- "report": completes with one artifact of a data part `{"total": 42, "items": [1, 2]}`, a file part
  with bytes (`report.csv`, text/csv) and a file part with a URL (`https://example.com/report.pdf`).

`serve_agent()` runs it on loopback and yields the base URL; the card is at
`/.well-known/agent-card.json`, JSON-RPC at `/a2a/jsonrpc` (A2A 1.0; `protocol_versions=("0.3", "1.0")`
adds the SDK's 0.3 compatibility on the same endpoint and lists a 0.3 interface first).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from a2a.helpers import new_task, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import (
    BasePushNotificationSender,
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
    TaskUpdater,
)
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Message, Part, TaskState
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from starlette.applications import Starlette
from starlette.middleware import Middleware

from tests.support import bound_socket, serve

SLOW_LIMIT_S = 120.0
"""How long "slow" works before giving up by itself (FAILED), if nobody cancels it."""


class HelpdeskExecutor(AgentExecutor):
    """The text-keyed test behaviour (see the module docstring)."""

    def __init__(self) -> None:
        self.asking_contexts: set[str] = set()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None and context_id is not None
        text = context.get_user_input().strip()
        current = context.current_task
        if current is None:  # a new task: the Task must be the first event
            await event_queue.enqueue_event(
                new_task(
                    task_id,
                    context_id,
                    TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message] if context.message else [],
                )
            )
        up = TaskUpdater(event_queue, task_id, context_id)

        def say(words: str) -> Message:
            return new_text_message(words, context_id=context_id, task_id=task_id)

        answering = (current is not None and current.status.state == TaskState.TASK_STATE_INPUT_REQUIRED) or (
            current is None and context_id in self.asking_contexts and text != "ask"
        )
        if answering:
            self.asking_contexts.discard(context_id)
            reply = f"thanks, {text}"
            await up.add_artifact([Part(text=reply)], artifact_id="result", name="result")
            await up.complete(say(reply))
            return

        await up.start_work(say("working"))
        command, _, argument = text.partition(" ")
        argument = argument.strip()
        if command == "echo":
            await up.add_artifact([Part(text=argument)], artifact_id="echo", name="echo")
            await up.complete(say("done"))
        elif command == "stream":
            n = max(1, min(int(argument) if argument.isdigit() else 3, 1000))
            for i in range(1, n + 1):
                await asyncio.sleep(0.05)
                await up.update_status(TaskState.TASK_STATE_WORKING, say(f"step {i} of {n}"))
                await up.add_artifact(
                    [Part(text=f"chunk {i}")],
                    artifact_id="stream",
                    name="stream",
                    append=i > 1,
                    last_chunk=i == n,
                )
            await up.complete(say(f"streamed {n}"))
        elif command == "slow":
            await asyncio.sleep(SLOW_LIMIT_S)  # CancelTask cancels execute() after cancel() below
            await up.failed(say(f"slow task gave up after {SLOW_LIMIT_S:g} s"))
        elif command == "ask":
            self.asking_contexts.add(context_id)
            await up.requires_input(say("what is your name?"))
        elif command == "fail":
            await up.failed(say("failed on purpose"))
        elif command == "report":
            parts = [
                Part(data=ParseDict({"total": 42, "items": [1, 2]}, struct_pb2.Value())),
                Part(raw=b"a,b\n1,2\n", filename="report.csv", media_type="text/csv"),
                Part(
                    url="https://example.com/report.pdf", filename="report.pdf", media_type="application/pdf"
                ),
            ]
            await up.add_artifact(parts, artifact_id="report", name="report")
            await up.complete(say("report ready"))
        else:
            await up.add_artifact(
                [Part(text=f"unknown command: {text}")], artifact_id="result", name="result"
            )
            await up.complete(say("done"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None and context_id is not None
        await TaskUpdater(event_queue, task_id, context_id).cancel(
            new_text_message("cancelled", context_id=context_id, task_id=task_id)
        )


def agent_card(
    base_url: str, name: str = "py-helpdesk", protocol_versions: Sequence[str] = ("1.0",)
) -> AgentCard:
    """The card: one JSON-RPC interface per protocol version, in the given (preference) order."""

    def skill(skill_id: str, description: str, tags: list[str], example: str) -> AgentSkill:
        return AgentSkill(
            id=skill_id, name=skill_id.title(), description=description, tags=tags, examples=[example]
        )

    return AgentCard(
        name=name,
        description="A Python (a2a-sdk) test agent: echo, stream, slow (cancellable), ask, fail.",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url=f"{base_url}/a2a/jsonrpc", protocol_binding="JSONRPC", protocol_version=version
            )
            for version in protocol_versions
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            skill(
                "echo", 'Completes at once with the text after "echo".', ["echo", "blocking"], "echo hello"
            ),
            skill("stream", "Emits n progress updates and artifact chunks.", ["stream", "sse"], "stream 5"),
            skill("slow", "Works until cancelled.", ["cancel", "long-running"], "slow"),
            skill("ask", "Asks a question, then thanks you for the answer.", ["multi-turn"], "ask"),
            skill("fail", "Ends the task FAILED.", ["error"], "fail"),
            skill("report", "Returns a data part, a file and a link.", ["files", "data"], "report"),
        ],
    )


def create_agent_app(
    base_url: str,
    push_client: httpx.AsyncClient,
    middleware: Sequence[Middleware] = (),
    protocol_versions: Sequence[str] = ("1.0",),
) -> Starlette:
    """The agent as a Starlette app whose card advertises `base_url`; pushes go out through `push_client`.

    With "0.3" among `protocol_versions` the JSON-RPC endpoint also serves A2A 0.3 (`enable_v0_3_compat`)."""
    card = agent_card(base_url, protocol_versions=protocol_versions)
    push_store = InMemoryPushNotificationConfigStore()
    handler = DefaultRequestHandler(
        agent_executor=HelpdeskExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=card,
        push_config_store=push_store,
        push_sender=BasePushNotificationSender(push_client, push_store),
    )
    v0_3 = "0.3" in protocol_versions
    routes = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url="/a2a/jsonrpc", enable_v0_3_compat=v0_3),
    ]
    return Starlette(routes=routes, middleware=list(middleware))


@asynccontextmanager
async def serve_agent(
    middleware: Sequence[Middleware] = (), protocol_versions: Sequence[str] = ("1.0",)
) -> AsyncIterator[str]:
    """Run the agent under uvicorn on a loopback port (behind `middleware`, e.g. auth); yield its base URL."""
    sock = bound_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with httpx.AsyncClient(timeout=10) as push_client:
        async with serve(create_agent_app(base_url, push_client, middleware, protocol_versions), sock) as url:
            yield url
