"""Cross-vendor A2A 1.0 interop without Interlink: the official JavaScript SDK (`@a2a-js/sdk`, run from
tests/a2a_js) against the official Python SDK (`a2a-sdk`), in both directions.

- The Python client drives the JS agent (`tests/a2a_js/agent.mjs`) over JSON-RPC and HTTP+JSON:
  blocking echo, SSE streaming, input-required, cancel, failure, push notifications.
- The JS client (`tests/a2a_js/client.mjs`) drives the Python agent (`tests/a2a_py_agent.py`).
- Both SDKs' opt-in A2A 0.3 compatibility layers against each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory, create_client
from a2a.helpers import get_artifact_text, get_message_text
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.a2a_py_agent import serve_agent
from tests.support import serve

ROOT = Path(__file__).parents[2]
JS_SDK = ROOT / "tests/npm/node_modules/@a2a-js/sdk/package.json"
JS_AGENT = ROOT / "tests/a2a_js/agent.mjs"
JS_CLIENT = ROOT / "tests/a2a_js/client.mjs"
STARTUP_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(
    not JS_SDK.is_file() or shutil.which("node") is None,
    reason="@a2a-js/sdk not installed: run `npm ci --prefix tests/npm` (.ci/run does)",
)


@contextmanager
def js_agent(*args: str) -> Iterator[str]:
    """Run tests/a2a_js/agent.mjs on a free loopback port; yield its base URL; stop it afterwards."""
    with subprocess.Popen(
        ["node", str(JS_AGENT), "--port", "0", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as proc:
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            line = ""
            while not line:
                if proc.poll() is not None:
                    raise RuntimeError(f"JS agent exited with {proc.returncode} before listening")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"JS agent printed no LISTENING line in {STARTUP_TIMEOUT_S:g} s")
                if select.select([proc.stdout], [], [], remaining)[0]:
                    line = proc.stdout.readline()
            assert line.startswith("LISTENING http://127.0.0.1:"), line
            yield line.split()[1]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def js_agent_url() -> Iterator[str]:
    with js_agent() as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # The SDK's own client would have httpx's 5 s default timeout.
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as client:
        yield client


async def py_client(
    url: str, http: httpx.AsyncClient, *, streaming: bool, binding: str = "JSONRPC"
) -> Client:
    config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=[binding])
    return await create_client(url, client_config=config)


def request(text: str, task: Task | None = None, **configuration: Any) -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if task is not None:
        message.task_id, message.context_id = task.id, task.context_id
    config = SendMessageConfiguration(**configuration) if configuration else None
    return SendMessageRequest(message=message, configuration=config)


async def send(client: Client, req: SendMessageRequest) -> list[StreamResponse]:
    async with asyncio.timeout(CALL_TIMEOUT_S):
        return [event async for event in client.send_message(req)]


def only_task(events: list[StreamResponse]) -> Task:
    assert [e.WhichOneof("payload") for e in events] == ["task"]
    return events[0].task


# --- the Python SDK client against the JavaScript agent --------------------------------------------------


async def test_card_is_read_by_the_python_sdk(js_agent_url: str, http: httpx.AsyncClient) -> None:
    """The JS agent's card parses as a Python `AgentCard`, skills and capabilities included."""
    card = await A2ACardResolver(http, js_agent_url).get_agent_card()
    assert card.name == "js-helpdesk"
    assert card.capabilities.streaming and card.capabilities.push_notifications
    assert {s.id for s in card.skills} >= {"echo", "stream"}
    assert [(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        ("JSONRPC", "1.0"),
        ("HTTP+JSON", "1.0"),
    ]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_echo_blocking(js_agent_url: str, http: httpx.AsyncClient, binding: str) -> None:
    """Blocking SendMessage returns the completed task; GetTask and ListTasks see it too."""
    async with await py_client(js_agent_url, http, streaming=False, binding=binding) as client:
        task = only_task(await send(client, request("echo hello from python")))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_message_text(task.status.message) == "done"
        assert [get_artifact_text(a) for a in task.artifacts] == ["hello from python"]

        again = await client.get_task(GetTaskRequest(id=task.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED
        assert again.context_id == task.context_id
        listed = await client.list_tasks(ListTasksRequest(context_id=task.context_id))
        assert [t.id for t in listed.tasks] == [task.id]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_stream(js_agent_url: str, http: httpx.AsyncClient, binding: str) -> None:
    """SendStreamingMessage delivers every status update and artifact chunk, then the final state."""
    n = 5
    async with await py_client(js_agent_url, http, streaming=True, binding=binding) as client:
        events = await send(client, request(f"stream {n}"))
    kinds = [e.WhichOneof("payload") for e in events]
    assert len(events) >= n
    assert kinds[0] == "task" and kinds[-1] == "status_update", kinds
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    assert [get_artifact_text(c.artifact) for c in chunks] == [f"chunk {i}" for i in range(1, n + 1)]
    assert [c.append for c in chunks] == [False] + [True] * (n - 1)
    assert chunks[-1].last_chunk
    final = events[-1].status_update.status
    assert final.state == TaskState.TASK_STATE_COMPLETED
    assert get_message_text(final.message) == f"streamed {n}"


async def test_ask_then_answer(js_agent_url: str, http: httpx.AsyncClient) -> None:
    """INPUT_REQUIRED, then a follow-up on the same task completes it with the answer."""
    async with await py_client(js_agent_url, http, streaming=False) as client:
        asked = only_task(await send(client, request("ask")))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert get_message_text(asked.status.message) == "what is your name?"

        done = only_task(await send(client, request("Ada", task=asked)))
    assert done.id == asked.id and done.context_id == asked.context_id
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert get_message_text(done.status.message) == "thanks, Ada"
    assert [get_artifact_text(a) for a in done.artifacts] == ["thanks, Ada"]


async def test_ask_then_answer_streaming(js_agent_url: str, http: httpx.AsyncClient) -> None:
    """The same round trip over SSE: the first stream ends at INPUT_REQUIRED."""
    async with await py_client(js_agent_url, http, streaming=True) as client:
        events = await send(client, request("ask"))
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        asked = events[0].task
        events = await send(client, request("Grace", task=asked))
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert get_message_text(events[-1].status_update.status.message) == "thanks, Grace"


async def test_slow_then_cancel(js_agent_url: str, http: httpx.AsyncClient) -> None:
    """A non-blocking send of "slow" comes back at once; CancelTask ends it CANCELED."""
    async with await py_client(js_agent_url, http, streaming=False) as client:
        started = only_task(await send(client, request("slow", return_immediately=True)))
        assert started.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)

        cancelled = await client.cancel_task(CancelTaskRequest(id=started.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert (await client.get_task(GetTaskRequest(id=started.id))).status.state == (
            TaskState.TASK_STATE_CANCELED
        )


async def test_cancel_ends_an_open_stream(js_agent_url: str, http: httpx.AsyncClient) -> None:
    """Cancelling a streamed "slow" task from a second call closes the stream with CANCELED."""
    async with await py_client(js_agent_url, http, streaming=True) as client:
        stream = client.send_message(request("slow"))
        async with asyncio.timeout(CALL_TIMEOUT_S):
            first = await anext(stream)
            assert first.WhichOneof("payload") == "task"
            cancelled = await client.cancel_task(CancelTaskRequest(id=first.task.id))
            rest = [event async for event in stream]
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert rest[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED


async def test_fail(js_agent_url: str, http: httpx.AsyncClient) -> None:
    async with await py_client(js_agent_url, http, streaming=False) as client:
        task = only_task(await send(client, request("fail")))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert get_message_text(task.status.message) == "failed on purpose"


async def test_push_notifications(js_agent_url: str, http: httpx.AsyncClient) -> None:
    """A push config sent with the message makes the JS agent POST each StreamResponse (1.0 JSON) to the
    webhook with the token; the Python client can list the stored config."""
    pushes: list[tuple[str | None, dict[str, Any]]] = []
    completed = asyncio.Event()

    async def webhook(request: Request) -> Response:
        body = await request.json()
        pushes.append((request.headers.get("x-a2a-notification-token"), body))
        if body.get("statusUpdate", {}).get("status", {}).get("state") == "TASK_STATE_COMPLETED":
            completed.set()
        return Response(status_code=200)

    async with serve(Starlette(routes=[Route("/hook", webhook, methods=["POST"])])) as hook_url:
        push = TaskPushNotificationConfig(url=f"{hook_url}/hook", token="tok-123")
        async with await py_client(js_agent_url, http, streaming=False) as client:
            task = only_task(await send(client, request("echo pushed", task_push_notification_config=push)))
            async with asyncio.timeout(10):
                await completed.wait()
            configs = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
    assert [c.url for c in configs.configs] == [f"{hook_url}/hook"]
    assert {token for token, _ in pushes} == {"tok-123"}
    kinds = [next(iter(body)) for _, body in pushes]
    assert "artifactUpdate" in kinds and kinds[-1] == "statusUpdate", kinds
    assert all(
        (body.get(kind, {}).get("taskId") or body.get(kind, {}).get("id")) == task.id
        for (_, body), kind in zip(pushes, kinds, strict=True)
    )


# --- the JavaScript SDK client against the Python agent --------------------------------------------------


class RecordAuthorization:
    """ASGI middleware noting the Authorization header of every request."""

    def __init__(self, app: ASGIApp, seen: list[str | None]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(dict(scope["headers"]).get(b"authorization", b"").decode() or None)
        await self.app(scope, receive, send)


async def run_js_client(*args: str) -> dict[str, Any]:
    """Run tests/a2a_js/client.mjs with `args`; return its JSON line (an error line fails the test)."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(JS_CLIENT),
        "--timeout-ms",
        str(int(CALL_TIMEOUT_S * 1000)),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S + 10):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (stdout.decode(), stderr.decode())
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_js_client_echo_with_token() -> None:
    """Blocking echo from JS; `--token` reaches the Python agent on the card fetch and the call."""
    seen: list[str | None] = []
    async with serve_agent(middleware=[Middleware(RecordAuthorization, seen=seen)]) as url:
        out = await run_js_client("--url", url, "--token", "js-secret", "--text", "echo hello from js")
    assert out["kind"] == "task" and out["protocolVersion"] == "1.0"
    assert out["state"] == "TASK_STATE_COMPLETED"
    assert out["artifacts"] == ["hello from js"]
    assert out["statusMessage"] == "done"
    assert len(seen) >= 2 and set(seen) == {"Bearer js-secret"}


async def test_js_client_stream() -> None:
    """SSE from the Python agent, folded by the JS client: all chunks and the final state arrive."""
    n = 4
    async with serve_agent() as url:
        out = await run_js_client(
            "--url", f"{url}/.well-known/agent-card.json", "--stream", "--text", f"stream {n}"
        )
    assert out["state"] == "TASK_STATE_COMPLETED"
    assert out["statusMessage"] == f"streamed {n}"
    assert out["artifacts"] == ["".join(f"chunk {i}" for i in range(1, n + 1))]
    assert out["events"] >= n
    assert out["eventKinds"].count("artifactUpdate") == n
    assert out["eventKinds"][0] == "task" and out["eventKinds"][-1] == "statusUpdate"


async def test_js_client_ask_then_answer() -> None:
    """Multi-turn from JS: INPUT_REQUIRED, then the answer on the same task id."""
    async with serve_agent() as url:
        asked = await run_js_client("--url", url, "--text", "ask")
        assert asked["state"] == "TASK_STATE_INPUT_REQUIRED"
        assert asked["statusMessage"] == "what is your name?"
        ids = ("--task-id", asked["taskId"], "--context-id", asked["contextId"])
        done = await run_js_client("--url", url, "--text", "Lin", *ids)
    assert done["taskId"] == asked["taskId"]
    assert done["state"] == "TASK_STATE_COMPLETED"
    assert done["statusMessage"] == "thanks, Lin"


# --- A2A 0.3 compatibility layers of both SDKs --------------------------------------------------------------


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_python_compat_client_against_js_legacy_agent(http: httpx.AsyncClient, binding: str) -> None:
    """Python's 0.3 compat transports (picked from a 0.3 interface) against the JS SDK's opt-in
    `legacyCompat` server: blocking and streamed calls both work."""
    with js_agent("--legacy-compat") as url:
        card = await A2ACardResolver(http, url).get_agent_card()
        assert {(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces} >= {
            (binding, "1.0"),
            (binding, "0.3"),
        }
        only_v03 = [i for i in card.supported_interfaces if i.protocol_version == "0.3"]
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(only_v03)
        for streaming in (False, True):
            config = ClientConfig(
                streaming=streaming, httpx_client=http, supported_protocol_bindings=[binding]
            )
            async with ClientFactory(config).create(card) as client:
                assert type(client._transport).__name__.startswith("Compat")  # type: ignore[attr-defined]
                if not streaming:
                    task = only_task(await send(client, request("echo old wire")))
                    assert task.status.state == TaskState.TASK_STATE_COMPLETED
                    assert [get_artifact_text(a) for a in task.artifacts] == ["old wire"]
                    continue
                events = await send(client, request("stream 3"))
                chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
                assert [(get_artifact_text(c.artifact), c.append) for c in chunks] == [
                    ("chunk 1", False),
                    ("chunk 2", True),
                    ("chunk 3", True),
                ]
                assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_js_legacy_client_against_python_compat_agent() -> None:
    """The JS client with `--legacy-compat` picks its 0.3 transport for a card with only a 0.3 interface,
    and the Python agent's `enable_v0_3_compat` serves it. Without the flag the JS client ignores the
    interface's version and speaks 1.0 (which the Python compat endpoint accepts too); with both versions
    listed it prefers 1.0 whatever the card's order."""
    async with serve_agent(protocol_versions=("0.3",)) as url:
        echo = await run_js_client("--url", url, "--legacy-compat", "--text", "echo old wire")
        stream = await run_js_client("--url", url, "--legacy-compat", "--stream", "--text", "stream 3")
        plain = await run_js_client("--url", url, "--text", "echo new wire")
    assert (echo["protocolVersion"], echo["state"], echo["artifacts"]) == (
        "0.3",
        "TASK_STATE_COMPLETED",
        ["old wire"],
    )
    assert stream["protocolVersion"] == "0.3" and stream["state"] == "TASK_STATE_COMPLETED"
    assert stream["artifacts"] == ["chunk 1chunk 2chunk 3"]
    assert (plain["protocolVersion"], plain["artifacts"]) == ("1.0", ["new wire"])

    async with serve_agent(protocol_versions=("0.3", "1.0")) as url:
        both = await run_js_client("--url", url, "--legacy-compat", "--text", "echo either")
    assert (both["protocolVersion"], both["artifacts"]) == ("1.0", ["either"])
