"""What a caller of a proxied A2A agent gets when the agent misbehaves: the agent dies after its card
was loaded, answers too slowly, answers JSON-RPC with garbage, drops or ends a stream before the task
is over, or publishes a card that points at another origin. Each case pins the exact task state and
status text the caller receives, the audit records the call leaves, and that no downstream URL, the
agent's credential or the caller's token shows in anything a caller (or `/readyz`) can read."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_message_text
from a2a.types import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.audit import AuditStore
from tests.a2a_py_agent import serve_agent
from tests.support import bound_socket, gateway, issued_token, serve

NAME = "down"
SECRET = "a2a-failures-secret"
AGENT_KEY = "downstream-api-key-7f3c"
"""The header credential Interlink sends the agent: it must never reach a caller."""
CALL_TIMEOUT_S = 30.0
FAILED = TaskState.TASK_STATE_FAILED


@dataclass
class Proxy:
    """A gateway proxying one agent at `/a2a/down`, a caller token for it, and its audit database."""

    base: str
    downstream: str
    audit_url: str
    token: str

    @asynccontextmanager
    async def http(self) -> AsyncIterator[httpx.AsyncClient]:
        headers = {"authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(headers=headers, timeout=CALL_TIMEOUT_S) as http:
            yield http

    async def send(self, text: str, *, streaming: bool) -> list[StreamResponse]:
        async with self.http() as http, asyncio.timeout(CALL_TIMEOUT_S):
            card = await A2ACardResolver(http, f"{self.base}/a2a/{NAME}").get_agent_card()
            client = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)
            return [e async for e in client.send_message(SendMessageRequest(message=message(text)))]

    async def get_task(self, task_id: str) -> Task:
        async with self.http() as http, asyncio.timeout(CALL_TIMEOUT_S):
            card = await A2ACardResolver(http, f"{self.base}/a2a/{NAME}").get_agent_card()
            client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            return await client.get_task(GetTaskRequest(id=task_id))

    async def readyz(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http, asyncio.timeout(CALL_TIMEOUT_S):
            body: dict[str, Any] = (await http.get(f"{self.base}/readyz")).json()
        return body

    async def audit(self) -> list[dict[str, Any]]:
        """The A2A records, in order (the token endpoint's own records left out)."""
        async with AuditStore.open(self.audit_url) as store, asyncio.timeout(CALL_TIMEOUT_S):
            return [r.record() async for r in store.records("main") if r.record()["event"].startswith("a2a.")]

    def assert_no_leak(self, *documents: Any) -> None:
        text = json.dumps([d if isinstance(d, dict | list | str) else MessageToDict(d) for d in documents])
        for secret in (self.downstream.removeprefix("http://"), AGENT_KEY, self.token, SECRET):
            assert secret not in text


def message(text: str) -> Message:
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


@asynccontextmanager
async def proxy(tmp_path: Path, downstream: str, *, timeout_s: float = 10) -> AsyncIterator[Proxy]:
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with gateway(
        a2a_agents=[
            {
                "name": NAME,
                "card_url": f"{downstream}/.well-known/agent-card.json",
                "allow_private_network": True,
                "timeout_s": timeout_s,
                "headers": {"x-api-key": AGENT_KEY},
            }
        ],
        identity={
            "agents": [
                {
                    "client_id": "caller",
                    "name": "caller",
                    "owner": "team",
                    "secret": {"value": SECRET},
                    "audiences": [f"a2a/{NAME}"],
                    "scopes": ["a2a"],
                }
            ]
        },
        policy={
            "rules": [
                {
                    "id": "callers",
                    "effect": "permit",
                    "principals": {"agents": ["caller"]},
                    "actions": ["SendMessage"],
                    "resources": [f"a2a:{NAME}/*"],
                }
            ]
        },
        audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "key.pem")},
    ) as base:
        yield Proxy(
            base, downstream, audit_url, await issued_token(base, "caller", SECRET, f"a2a/{NAME}", "a2a")
        )


def failed_with(task: Task) -> str:
    assert task.status.state == FAILED, task
    return get_message_text(task.status.message)


def outcomes(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["event"], r["outcome"]["status"]) for r in records]


BLOCKING_AUDIT = [("a2a.SendMessage", "pending"), ("a2a.SendMessage.result", "error")]
"""A blocking send: the write-ahead decision, then its result: "error" (reason downstream_failed)
when the task it returns ended FAILED."""
STREAMING_AUDIT = [("a2a.SendMessage", "pending"), ("a2a.SendStreamingMessage.result", "ok")]
"""A streamed send: the decision (recorded under the action, SendMessage), then "stream opened"."""


# --- the agent dies after its card was loaded -------------------------------------------------------


async def test_dead_agent_fails_the_task_as_unavailable(tmp_path: Path) -> None:
    async with AsyncExitStack() as agent:
        downstream = await agent.enter_async_context(serve_agent())
        async with proxy(tmp_path, downstream) as face:
            await agent.aclose()  # the agent stops; Interlink still holds its card

            (blocking,) = await face.send("echo hi", streaming=False)
            streamed = await face.send("echo hi", streaming=True)
            stored = await face.get_task(blocking.task.id)
            ready = await face.readyz()
            records = await face.audit()

    expected = f"agent {NAME!r} is unavailable (A2AClientError)"
    assert failed_with(blocking.task) == expected
    assert [e.WhichOneof("payload") for e in streamed] == ["task", "status_update"]
    assert streamed[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    assert streamed[1].status_update.task_id == streamed[0].task.id
    assert streamed[1].status_update.status.state == FAILED
    assert get_message_text(streamed[1].status_update.status.message) == expected
    assert failed_with(stored) == expected and "interlink.downstream" not in stored.metadata
    # A dead agent whose card is still cached is not (yet) reported in /readyz.
    assert ready["a2a_agents"][0]["state"] == "ready"
    assert outcomes(records) == [*BLOCKING_AUDIT, *STREAMING_AUDIT, ("a2a.GetTask", "ok")]
    assert {r["target"]["server"] for r in records} == {NAME}
    face.assert_no_leak(blocking, *streamed, stored, ready, records)


# --- the agent is slower than timeout_s ---------------------------------------------------------------


async def test_slow_agent_fails_the_task_and_is_told_to_stop(tmp_path: Path) -> None:
    async with serve_agent() as downstream, proxy(tmp_path, downstream, timeout_s=1) as face:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            (blocking,) = await face.send("slow", streaming=False)
        stored = await face.get_task(blocking.task.id)
        downstream_id = str(stored.metadata["interlink.downstream"]["task_id"])
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as http, asyncio.timeout(CALL_TIMEOUT_S):
            card = await A2ACardResolver(http, downstream).get_agent_card()
            direct = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            there = await direct.get_task(GetTaskRequest(id=downstream_id))
        records = await face.audit()

    expected = f"agent {NAME!r} did not answer within 1s"
    assert failed_with(blocking.task) == expected and failed_with(stored) == expected
    # The agent's own task does not keep running for nobody: Interlink canceled it.
    assert there.status.state == TaskState.TASK_STATE_CANCELED
    assert outcomes(records) == [*BLOCKING_AUDIT, ("a2a.GetTask", "ok")]
    assert records[1]["latency_us"] >= 1_000_000
    face.assert_no_leak(blocking, stored, records)


async def test_timeout_is_for_silence_not_for_a_busy_stream(tmp_path: Path) -> None:
    """`timeout_s` bounds a silence: a stream that keeps talking for longer than that completes."""
    async with serve_agent() as downstream, proxy(tmp_path, downstream, timeout_s=1) as face:
        events = await face.send("stream 30", streaming=True)  # ~1.5 s, an event every 50 ms
    final = events[-1].status_update.status
    assert final.state == TaskState.TASK_STATE_COMPLETED and get_message_text(final.message) == "streamed 30"


# --- a downstream that answers JSON-RPC with garbage, or drops its stream ---------------------------


def card_of(base: str, *, streaming: bool) -> dict[str, Any]:
    return {
        "name": "misbehaving",
        "description": "A card that is fine; the agent behind it is not.",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": f"{base}/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": streaming},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "any", "name": "Any", "description": "Anything.", "tags": ["test"]}],
    }


class MisbehavingRpc:
    """JSON-RPC that goes wrong as the message text says: "garbage" answers a body that is not
    JSON; "drop" starts an SSE stream with a WORKING task, then drops the connection; "end" ends
    that stream properly but before the task is over. CancelTask is noted in `canceled`."""

    def __init__(self) -> None:
        self.canceled: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            chunk = await receive()
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                break
        request = json.loads(body)
        if request["method"] == "CancelTask":
            self.canceled.append(request["params"]["id"])
            task = {"id": request["params"]["id"], "status": {"state": "TASK_STATE_CANCELED"}}
            await JSONResponse({"jsonrpc": "2.0", "id": request["id"], "result": task})(scope, receive, send)
            return
        mode = request["params"]["message"]["parts"][0]["text"]
        if mode == "garbage":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"jsonrpc": "2.0", "result": {oops'})
            return
        task = {"id": "down-task", "contextId": "down-context", "status": {"state": "TASK_STATE_WORKING"}}
        event = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"task": task}})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": f"data: {event}\n\n".encode(), "more_body": True})
        await asyncio.sleep(0.1)
        if mode == "end":
            await send({"type": "http.response.body", "body": b""})
        # "drop": return with the response unfinished; uvicorn closes the connection mid-body.


@asynccontextmanager
async def misbehaving_agent(*, streaming: bool = True) -> AsyncIterator[tuple[str, MisbehavingRpc]]:
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    rpc = MisbehavingRpc()

    async def card(request: Request) -> JSONResponse:
        return JSONResponse(card_of(base, streaming=streaming))

    routes = [Route("/.well-known/agent-card.json", card), Route("/rpc", rpc, methods=["POST"])]
    async with serve(Starlette(routes=routes), sock) as url:
        yield url, rpc


@pytest.mark.parametrize("streaming_agent", [False, True], ids=["blocking-agent", "streaming-agent"])
async def test_garbage_json_rpc_fails_the_task(tmp_path: Path, streaming_agent: bool) -> None:
    async with (
        misbehaving_agent(streaming=streaming_agent) as (downstream, rpc),
        proxy(tmp_path, downstream) as face,
    ):
        (blocking,) = await face.send("garbage", streaming=False)
        stored = await face.get_task(blocking.task.id)
        records = await face.audit()
    expected = f"agent {NAME!r} is unavailable (A2AClientError)"
    assert failed_with(blocking.task) == expected and failed_with(stored) == expected
    assert rpc.canceled == []  # no downstream task was ever named
    assert outcomes(records) == [*BLOCKING_AUDIT, ("a2a.GetTask", "ok")]
    face.assert_no_leak(blocking, stored, records)


async def test_stream_dropped_midway_fails_the_task(tmp_path: Path) -> None:
    async with misbehaving_agent() as (downstream, rpc), proxy(tmp_path, downstream) as face:
        events = await face.send("drop", streaming=True)
        stored = await face.get_task(events[0].task.id)
        records = await face.audit()
    expected = f"agent {NAME!r} is unavailable (A2AClientError)"
    assert [e.WhichOneof("payload") for e in events] == ["task", "status_update"]
    first = events[0].task
    assert first.status.state == TaskState.TASK_STATE_WORKING
    assert dict(first.metadata["interlink.downstream"]) == {
        "task_id": "down-task",
        "context_id": "down-context",
    }
    assert events[1].status_update.status.state == FAILED
    assert get_message_text(events[1].status_update.status.message) == expected
    # The stored task keeps the downstream ids (the failure does not replace the task).
    assert failed_with(stored) == expected
    assert stored.metadata["interlink.downstream"]["task_id"] == "down-task"
    assert rpc.canceled == ["down-task"]  # the agent is told to stop what nobody follows any more
    assert outcomes(records) == [*STREAMING_AUDIT, ("a2a.GetTask", "ok")]
    face.assert_no_leak(*events, stored, records)


@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
async def test_stream_ended_before_the_task_is_over_fails_it(tmp_path: Path, streaming: bool) -> None:
    """A stream that ends cleanly on a WORKING task must not leave the caller's task WORKING forever."""
    async with misbehaving_agent() as (downstream, rpc), proxy(tmp_path, downstream) as face:
        events = await face.send("end", streaming=streaming)
        stored = await face.get_task(events[0].task.id)
    expected = f"agent {NAME!r} stopped answering before the task finished"
    assert failed_with(stored) == expected
    assert rpc.canceled == ["down-task"]
    if streaming:
        assert events[-1].status_update.status.state == FAILED
    else:
        assert failed_with(events[-1].task) == expected
    face.assert_no_leak(*events, stored)


# --- a card that points at another origin ----------------------------------------------------------------


async def test_card_pointing_at_another_origin_is_refused(tmp_path: Path) -> None:
    other = bound_socket()  # the origin the card names; nothing may ever be sent there
    elsewhere = f"http://127.0.0.1:{other.getsockname()[1]}"

    async def card(request: Request) -> JSONResponse:
        return JSONResponse(card_of(elsewhere, streaming=True))

    with other:
        async with serve(Starlette(routes=[Route("/.well-known/agent-card.json", card)])) as downstream:
            async with proxy(tmp_path, downstream) as face:
                ready = await face.readyz()
                async with httpx.AsyncClient() as http, asyncio.timeout(CALL_TIMEOUT_S):
                    shown = (await http.get(f"{face.base}/a2a/{NAME}/.well-known/agent-card.json")).json()
                (blocking,) = await face.send("echo hi", streaming=False)
                records = await face.audit()

    assert ready["status"] == "degraded"
    (agent,) = ready["a2a_agents"]
    assert (agent["name"], agent["state"], agent["last_error"], agent["card_fetched_at"]) == (
        NAME,
        "card_error",
        "the card points at another origin than its own (refused)",
        None,
    )
    urls = {i["protocolBinding"]: i["url"] for i in shown["supportedInterfaces"]}
    assert urls["JSONRPC"] == f"{face.base}/a2a/{NAME}"
    assert all(url.startswith(f"{face.base}/a2a/{NAME}") for url in urls.values()), urls
    assert failed_with(blocking.task) == f"agent {NAME!r} is unavailable (ConnectionError)"
    assert outcomes(records) == BLOCKING_AUDIT
    face.assert_no_leak(ready, shown, blocking, records)
    assert elsewhere.removeprefix("http://") not in json.dumps([ready, shown, MessageToDict(blocking)])
