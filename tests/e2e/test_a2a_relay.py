"""The store-light relay of a blocking SendMessage (`adapters/a2a/relay.py`), end to end on both
A2A endpoints (`/a2a/helpdesk` and the aggregate `/a2a`): CancelTask during the relay ends it at
once and for good, even when the agent ignores the cancel; a relayed task cannot be followed
(SubscribeToTask, a follow-up, a push config are refused, and recorded); SubscribeToTask is governed
and audited; a relay whose request is cancelled (shutdown past its grace period) leaves the task
WORKING with its downstream ids, cancelable after a restart; replicas on PostgreSQL never overwrite
each other's CANCELED."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    AgentInterface,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf import struct_pb2
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from gateway.app import create_app
from gateway.audit import AuditStore
from gateway.settings import GatewaySettings
from tests.a2a_py_agent import serve_agent
from tests.support import MEMORY_DB, bound_socket, gateway, issued_token

SECRET = "relay-secret"
POLICY = {
    "rules": [
        {
            "id": "helpdesk",
            "effect": "permit",
            "principals": {"agents": ["caller", "other"]},
            "actions": ["SendMessage"],
            "resources": ["a2a:helpdesk/*"],
        }
    ]
}
CANCELED, WORKING = TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_WORKING


def agent(client_id: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["a2a/helpdesk", "a2a"],
        "scopes": ["a2a"],
    }


def helpdesk(downstream: str) -> dict[str, Any]:
    return {
        "name": "helpdesk",
        "card_url": f"{downstream}/.well-known/agent-card.json",
        "allow_private_network": True,
        "timeout_s": 20,
    }


def message(text: str, *, skill: str, task_id: str = "") -> Message:
    meta = struct_pb2.Struct()
    meta.update({"skill": skill})
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id="" if task_id else str(uuid.uuid4()),  # a new context: its tasks are this test's
        metadata=meta,
    )


class IgnoresCancel:
    """Downstream middleware: an agent that refuses every CancelTask (and keeps working), noting
    the downstream task ids it was asked to cancel."""

    def __init__(self, app: ASGIApp, asked: list[str]) -> None:
        self.app, self.asked = app, asked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            part = await receive()
            body, more = body + part.get("body", b""), part.get("more_body", False)
        call = json.loads(body or b"{}")
        if call.get("method") == "CancelTask":
            self.asked.append(call["params"]["id"])
            error = {"code": -32002, "message": "Task cannot be canceled"}
            await JSONResponse({"jsonrpc": "2.0", "id": call.get("id"), "error": error})(scope, receive, send)
            return
        replayed = False

        async def replay() -> AsgiMessage:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@dataclass
class Door:
    """One of the two A2A endpoints of a gateway, as a caller sees it."""

    base: str
    path: str
    """`/a2a/helpdesk` or `/a2a` (the aggregate endpoint)."""
    audit_url: str = ""
    https: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def skill(self) -> str:
        return "stream" if self.path != "/a2a" else "helpdesk/stream"

    async def client(self, client_id: str = "caller", *, streaming: bool = False) -> Any:
        resource = self.path.lstrip("/")
        token = await issued_token(self.base, client_id, SECRET, resource, "a2a")
        http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
        self.https.append(http)
        card_base = self.base if self.path == "/a2a" else f"{self.base}{self.path}"  # Interlink's own card
        card = await A2ACardResolver(http, card_base).get_agent_card()
        return ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)

    async def close(self) -> None:
        for http in self.https:
            await http.aclose()


async def send(client: Any, request: SendMessageRequest) -> list[StreamResponse]:
    return [event async for event in client.send_message(request)]


async def relayed_task(client: Any, request: SendMessageRequest) -> Task:
    """The task of `request` (in its own context), once the relay has written it (its progress
    flush, 0.5 s)."""
    listing = ListTasksRequest(context_id=request.message.context_id)
    async with asyncio.timeout(10):
        while True:
            tasks = (await client.list_tasks(listing)).tasks
            if tasks and "interlink.downstream" in tasks[0].metadata:
                found: Task = tasks[0]
                return found
            await asyncio.sleep(0.05)


def refusal(err: pytest.ExceptionInfo[A2AError]) -> str:
    return type(err.value).__name__


@asynccontextmanager
async def doors(tmp_path: Path, asked: list[str]) -> AsyncIterator[tuple[Door, Door, str]]:
    """A gateway before an agent that ignores cancels: its agent endpoint, its aggregate one, and
    the agent's URL."""
    async with serve_agent(middleware=[Middleware(IgnoresCancel, asked=asked)]) as downstream:
        audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        async with gateway(
            a2a_agents=[helpdesk(downstream)],
            identity={"agents": [agent("caller"), agent("other")]},
            policy=POLICY,
            audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "key.pem")},
        ) as base:
            yield Door(base, "/a2a/helpdesk", audit_url), Door(base, "/a2a", audit_url), downstream


@pytest.mark.parametrize("path", ["/a2a/helpdesk", "/a2a"])
async def test_cancel_during_a_relay_ends_it_for_good(tmp_path: Path, path: str) -> None:
    """CancelTask on a relayed task: the blocking caller gets CANCELED at once, the agent is asked
    to cancel, and its later events (it ignores the cancel and completes) change nothing. While it
    ran, the task could not be followed: SubscribeToTask, a follow-up and a push config were
    refused (UnsupportedOperationError), each recorded."""
    asked: list[str] = []
    async with doors(tmp_path, asked) as (on_agent, on_router, _):
        door = on_agent if path != "/a2a" else on_router
        client = await door.client()
        streaming = await door.client(streaming=True)
        try:
            request = SendMessageRequest(message=message("stream 60", skill=door.skill))
            blocking = asyncio.create_task(send(client, request))
            task = await relayed_task(client, request)
            assert task.status.state == WORKING

            with pytest.raises(A2AError) as err:
                async with asyncio.timeout(5):
                    [e async for e in streaming.subscribe(SubscribeToTaskRequest(id=task.id))]
            assert refusal(err) == "UnsupportedOperationError" and "GetTask" in str(err.value)
            with pytest.raises(A2AError) as err:
                await send(
                    client, SendMessageRequest(message=message("more", skill=door.skill, task_id=task.id))
                )
            assert refusal(err) == "UnsupportedOperationError"
            hook = TaskPushNotificationConfig(task_id=task.id, url="https://example.com/hook")
            with pytest.raises(A2AError) as err:
                await client.create_task_push_notification_config(hook)
            assert refusal(err) == "UnsupportedOperationError"

            canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
            assert canceled.status.state == CANCELED
            async with asyncio.timeout(1.5):  # at once: the agent would stream on for 2 s more
                answer = await blocking
            assert answer[-1].task.status.state == CANCELED
            await asyncio.sleep(1.0)  # past the progress flush: the agent's later events changed nothing
            assert (await client.get_task(GetTaskRequest(id=task.id))).status.state == CANCELED
            assert asked == [task.metadata["interlink.downstream"]["task_id"]]
        finally:
            await door.close()
        async with AuditStore.open(door.audit_url) as store:
            events = [r.record()["event"] async for r in store.records("main")]
        for method in ("SubscribeToTask", "CreateTaskPushNotificationConfig", "CancelTask"):
            assert f"a2a.{method}" in events
        assert events.count("a2a.SendMessage") == 2  # the relayed message and the refused follow-up


@pytest.mark.parametrize("path", ["/a2a/helpdesk", "/a2a"])
async def test_subscribe_is_governed_and_audited(tmp_path: Path, path: str) -> None:
    """SubscribeToTask on an SDK-path task streams its events and is recorded; another caller's
    task is not found (owner-scoped), and that refusal is recorded too."""
    async with doors(tmp_path, []) as (on_agent, on_router, _):
        door = on_agent if path != "/a2a" else on_router
        client = await door.client()
        streaming = await door.client(streaming=True)
        theirs = await door.client("other", streaming=True)
        try:
            detached = SendMessageConfiguration(return_immediately=True)
            started = await send(
                client,
                SendMessageRequest(message=message("stream 10", skill=door.skill), configuration=detached),
            )
            task_id = started[-1].task.id
            with pytest.raises(A2AError) as err:
                async with asyncio.timeout(5):
                    [e async for e in theirs.subscribe(SubscribeToTaskRequest(id=task_id))]
            assert refusal(err) == "TaskNotFoundError"
            async with asyncio.timeout(15):
                events = [e async for e in streaming.subscribe(SubscribeToTaskRequest(id=task_id))]
            assert events and events[0].WhichOneof("payload") == "task"
        finally:
            await door.close()
        async with AuditStore.open(door.audit_url) as store:
            records = [r.record() async for r in store.records("main")]
        subscribed = [
            (r["actor"]["agent"], r["outcome"]["status"], r["outcome"]["reason"], r["outcome"]["code"])
            for r in records
            if r["event"] == "a2a.SubscribeToTask"
        ]
        assert subscribed == [("other", "error", "task_not_found", -32001), ("caller", "ok", None, None)]


class ImpatientServer(uvicorn.Server):
    """Installs no signal handlers: sse-starlette (under the agent) finds "the" uvicorn server by
    its SIGTERM handler and, when that one exits, ends every SSE stream in the process, the agent's
    included; with two servers in one test process that would be this one."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def impatient_gateway(**settings: Any) -> AsyncIterator[str]:
    """`tests.support.gateway`, but uvicorn cancels requests still running 1 s into a shutdown."""
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity = {"public_url": base, **settings.pop("identity", {})}
    app = create_app(GatewaySettings(identity=identity, audit={"database_url": MEMORY_DB}, **settings))
    config = uvicorn.Config(app, lifespan="on", log_level="critical", timeout_graceful_shutdown=1)
    server = ImpatientServer(config)
    with sock:
        running = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            yield base
        finally:
            server.should_exit = True
            async with asyncio.timeout(10):
                await running


async def test_a_relay_cut_by_shutdown_leaves_the_task_working(tmp_path: Path) -> None:
    """A gateway stops (past its grace period) during a blocking relay: the task is not FAILED but
    WORKING with its downstream ids, and after a restart CancelTask reaches the agent."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}"
    async with serve_agent() as downstream:
        settings: dict[str, Any] = {
            "a2a_agents": [helpdesk(downstream)],
            "identity": {"database_url": database, "agents": [agent("caller")]},
            "policy": POLICY,
        }
        async with impatient_gateway(**settings) as first:
            door = Door(first, "/a2a/helpdesk")
            client = await door.client()
            request = SendMessageRequest(message=message("slow", skill="slow"))
            blocking = asyncio.create_task(send(client, request))
            task = await relayed_task(client, request)
        (cut,) = await asyncio.gather(blocking, return_exceptions=True)
        await door.close()
        assert isinstance(cut, Exception)  # the caller got no answer

        async with gateway(**settings) as second:
            door = Door(second, "/a2a/helpdesk")
            client = await door.client()
            try:
                kept = await client.get_task(GetTaskRequest(id=task.id))
                assert kept.status.state == WORKING
                assert kept.metadata["interlink.downstream"] == task.metadata["interlink.downstream"]
                canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
                assert canceled.status.state == CANCELED
            finally:
                await door.close()
        async with httpx.AsyncClient(timeout=10) as direct:
            card = await A2ACardResolver(direct, downstream).get_agent_card()
            there = (
                await ClientFactory(ClientConfig(streaming=False, httpx_client=direct))
                .create(card)
                .get_task(GetTaskRequest(id=task.metadata["interlink.downstream"]["task_id"]))
            )
    assert there.status.state == CANCELED


async def test_replicas_never_overwrite_a_cancel() -> None:
    """Two replicas on PostgreSQL: B cancels a task A relays (the agent ignores the cancel and keeps
    streaming): A's relay learns it lost, answers CANCELED, and the task stays CANCELED."""
    from tests.gateway.test_store import postgres_url

    database = postgres_url()
    asked: list[str] = []
    async with serve_agent(middleware=[Middleware(IgnoresCancel, asked=asked)]) as downstream:
        public = "http://interlink.test"  # one issuer and audience for both replicas
        common: dict[str, Any] = {
            "a2a_agents": [helpdesk(downstream)],
            "identity": {"agents": [agent("caller")], "database_url": database, "public_url": public},
            "policy": POLICY,
        }
        async with gateway(**common) as a, gateway(**common) as b:
            token = await issued_token(a, "caller", SECRET, "a2a/helpdesk", "a2a", resource_base=public)
            https: list[httpx.AsyncClient] = []

            def replica(base: str) -> Any:
                http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
                https.append(http)
                url = f"{base}/a2a/helpdesk"
                card = AgentCard(
                    name="helpdesk",
                    supported_interfaces=[
                        AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
                    ],
                )
                return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)

            on_a, on_b = replica(a), replica(b)
            try:
                request = SendMessageRequest(message=message("stream 60", skill="stream"))
                blocking = asyncio.create_task(send(on_a, request))
                task = await relayed_task(on_b, request)
                canceled = await on_b.cancel_task(CancelTaskRequest(id=task.id))
                assert canceled.status.state == CANCELED
                async with asyncio.timeout(
                    1.5
                ):  # A's next progress flush loses: its relay stops (the agent streams 2 s more)
                    answer = await blocking
                assert answer[-1].task.status.state == CANCELED
                await asyncio.sleep(1.0)
                for on in (on_a, on_b):
                    assert (await on.get_task(GetTaskRequest(id=task.id))).status.state == CANCELED
                assert asked == [task.metadata["interlink.downstream"]["task_id"]]
            finally:
                for http in https:
                    await http.aclose()
