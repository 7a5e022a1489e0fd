"""The aggregate endpoint over HTTP+JSON (`/a2a/rest`, advertised on Interlink's own card), push
notifications on the aggregate endpoint, and delivery off the event path: a webhook that hangs
delays neither the streaming caller's events nor another task's deliveries."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from google.protobuf import struct_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit import AuditStore
from tests.a2a_py_agent import serve_agent
from tests.support import gateway, issued_token, serve

SECRET = "aggregate-secret"
TOKEN = "webhook-token-41c"
POLICY = {
    "rules": [{"id": "desk", "effect": "permit", "actions": ["SendMessage"], "resources": ["a2a:helpdesk/*"]}]
}


@dataclass
class Receiver:
    """Webhooks on loopback: `/hook` records each update, `/hang` never answers."""

    hits: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    hung: int = 0
    completed: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self, request: Request) -> Response:
        body = await request.json()
        self.hits.append((request.headers.get("x-a2a-notification-token"), body))
        if body.get("statusUpdate", {}).get("status", {}).get("state") == "TASK_STATE_COMPLETED":
            self.completed.set()
        return Response(status_code=204)

    async def hang(self, request: Request) -> Response:
        self.hung += 1
        await self.release.wait()
        return Response(status_code=204)


@dataclass
class Aggregate:
    base: str
    audit_url: str
    receiver: Receiver
    hooks: str

    async def client(
        self, *, streaming: bool, bindings: list[str] | None = None
    ) -> tuple[Any, httpx.AsyncClient]:
        token = await issued_token(self.base, "caller", SECRET, "a2a", "a2a")
        http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
        card = await A2ACardResolver(http, self.base).get_agent_card()
        config = ClientConfig(streaming=streaming, httpx_client=http)
        if bindings:
            config = ClientConfig(
                streaming=streaming, httpx_client=http, supported_protocol_bindings=bindings
            )
        return ClientFactory(config).create(card), http


@pytest.fixture
async def aggregate(tmp_path: Any) -> AsyncIterator[Aggregate]:
    receiver = Receiver()
    hooks_app = Starlette(
        routes=[
            Route("/hook", receiver.hook, methods=["POST"]),
            Route("/hang", receiver.hang, methods=["POST"]),
        ]
    )
    registration = {
        "client_id": "caller",
        "name": "caller",
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["a2a"],
        "scopes": ["a2a"],
    }
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with serve_agent() as downstream, serve(hooks_app) as hooks:
        try:
            async with gateway(
                a2a_agents=[
                    {
                        "name": "helpdesk",
                        "card_url": f"{downstream}/.well-known/agent-card.json",
                        "allow_private_network": True,
                    }
                ],
                a2a_push={"allow_private_webhooks": True, "timeout_s": 3, "attempts": 2, "drain_s": 0.5},
                identity={"agents": [registration]},
                policy=POLICY,
                audit={"database_url": audit_url},
            ) as base:
                yield Aggregate(base, audit_url, receiver, hooks)
        finally:
            receiver.release.set()


def message(text: str, skill: str) -> Message:
    meta = struct_pb2.Struct()
    meta.update({"skill": skill})
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)], metadata=meta)


async def test_http_json_binding_on_the_aggregate_endpoint(aggregate: Aggregate) -> None:
    """Interlink's card offers `/a2a/rest` (HTTP+JSON); the Python client sends, reads and lists
    tasks over it, routed by skill like JSON-RPC on `/a2a`."""
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{aggregate.base}/.well-known/agent-card.json")).json()
    assert {
        "url": f"{aggregate.base}/a2a/rest",
        "protocolBinding": "HTTP+JSON",
        "protocolVersion": "1.0",
    } in (card["supportedInterfaces"])
    assert card["capabilities"]["pushNotifications"] is True
    client, http = await aggregate.client(streaming=False, bindings=["HTTP+JSON"])
    async with aclosing(http):
        request = SendMessageRequest(message=message("echo over rest", "helpdesk/echo"))
        task = [e async for e in client.send_message(request)][-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.artifacts[0].parts[0].text == "over rest"
        again = await client.get_task(GetTaskRequest(id=task.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.id in {t.id for t in (await client.list_tasks(ListTasksRequest())).tasks}
    async with httpx.AsyncClient() as anonymous:
        refused = await anonymous.post(
            f"{aggregate.base}/a2a/rest/message:send", json={}, headers={"a2a-version": "1.0"}
        )
    assert refused.status_code == 401 and "resource_metadata" in refused.headers["www-authenticate"]


async def test_a_hanging_webhook_delays_neither_events_nor_other_deliveries(aggregate: Aggregate) -> None:
    """Task A's webhook never answers: A's streaming caller still gets every event at the agent's
    pace, and task B's webhook (registered after A's) still receives all of B's updates."""
    client, http = await aggregate.client(streaming=True)
    async with aclosing(http):
        hang = TaskPushNotificationConfig(url=f"{aggregate.hooks}/hang", token=TOKEN)
        request = SendMessageRequest(
            message=message("stream 4", "helpdesk/stream"),
            configuration=SendMessageConfiguration(task_push_notification_config=hang),
        )
        started = time.monotonic()
        gaps: list[float] = []
        last = started
        async with asyncio.timeout(10):
            events = []
            async for event in client.send_message(request):
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                events.append(event)
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
        # the agent takes ~50 ms a step; a delivery waiting on the hanging webhook would take 3 s
        assert max(gaps) < 1.5, gaps
        assert time.monotonic() - started < 2.5
        task_a = events[0].task.id

        hook = TaskPushNotificationConfig(url=f"{aggregate.hooks}/hook", token=TOKEN)
        request = SendMessageRequest(
            message=message("stream 3", "helpdesk/stream"),
            configuration=SendMessageConfiguration(task_push_notification_config=hook),
        )
        events = [e async for e in client.send_message(request)]
        task_b = events[0].task.id
        async with asyncio.timeout(10):
            await aggregate.receiver.completed.wait()
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task_b)
        )
        assert [c.url for c in listed.configs] == [f"{aggregate.hooks}/hook"]
    assert aggregate.receiver.hung >= 1  # A's deliveries were attempted (and are still hanging)
    assert {token for token, _ in aggregate.receiver.hits} == {TOKEN}
    kinds = [next(iter(body)) for _, body in aggregate.receiver.hits]
    assert kinds.count("artifactUpdate") == 3 and kinds[-1] == "statusUpdate", kinds
    ids = {
        body[kind].get("taskId") or body[kind].get("id")
        for (_, body), kind in zip(aggregate.receiver.hits, kinds, strict=True)
    }
    assert ids == {task_b} and task_a != task_b
    async with AuditStore.open(aggregate.audit_url) as store:
        records = [r.record() async for r in store.records("main")]
    assert any(r["event"] == "a2a.ListTaskPushNotificationConfigs" for r in records)
