"""Push notifications from downstream agents: when a caller's task has a webhook and the agent sends
push notifications, Interlink registers its own webhook (`/a2a/<agent>/webhook/<id>`, a fresh token)
for the downstream task and re-delivers what arrives there to the caller's webhook. So a task of an
agent that does not stream completes for the caller, a task working across a gateway restart still
completes, forged or unknown webhooks are refused and recorded, the agent never learns the caller's
URL or token, and an update seen both on the relay stream and at the webhook is delivered once.

The agent is the Python a2a-sdk test agent (tests/a2a_py_agent.py) plus "later <s>": WORKING, then
after <s> seconds an artifact "later" and COMPLETED "finished later"; and "chunks <n>": n chunks of one
artifact, then INPUT_REQUIRED "more?" (the answer completes it, as "ask" does). Its push config store and the
requests it receives are kept for inspection."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import new_task, new_text_message
from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import (
    BasePushNotificationSender,
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
    TaskUpdater,
)
from a2a.types import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.audit import AuditStore
from gateway.settings import GatewaySettings
from tests.a2a_py_agent import HelpdeskExecutor, agent_card
from tests.support import bound_socket, issued_token, serve

SECRET = "downstream-push-secret"
TOKEN = "caller-token-9c41"
WAIT_S = 20


class LaterExecutor(HelpdeskExecutor):
    """The test agent, plus "later <s>" and "chunks <n>"."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        command, _, argument = context.get_user_input().strip().partition(" ")
        if command not in ("later", "chunks"):
            await super().execute(context, event_queue)
            return
        task_id, context_id = context.task_id or "", context.context_id or ""
        history = [context.message] if context.message is not None else []
        await event_queue.enqueue_event(
            new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
        )
        up = TaskUpdater(event_queue, task_id, context_id)
        await up.start_work(new_text_message("working", context_id=context_id, task_id=task_id))
        if command == "chunks":
            n = int(argument)
            for i in range(1, n + 1):
                await asyncio.sleep(0.2)
                part = [Part(text=f"chunk {i}")]
                await up.add_artifact(part, artifact_id="chunks", append=i > 1, last_chunk=i == n)
            self.asking_contexts.add(context_id)
            await up.requires_input(new_text_message("more?", context_id=context_id, task_id=task_id))
            return
        await asyncio.sleep(float(argument or "1"))
        await up.add_artifact([Part(text="later")], artifact_id="later", name="later")
        await up.complete(new_text_message("finished later", context_id=context_id, task_id=task_id))


@dataclass
class Agent:
    """The downstream agent: its URL, push configs, the bodies it received, its pushes' answers."""

    url: str = ""
    configs: InMemoryPushNotificationConfigStore = field(default_factory=InMemoryPushNotificationConfigStore)
    bodies: list[bytes] = field(default_factory=list)
    pushed: list[tuple[str, int]] = field(default_factory=list)
    """(state or kind pushed, HTTP status of Interlink's answer)."""

    async def webhook(self, task_id: str) -> TaskPushNotificationConfig:
        (config,) = await self.configs.get_info_for_dispatch(task_id)
        return config


def recording(app: ASGIApp, bodies: list[bytes]) -> ASGIApp:
    async def record(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def replay() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                bodies.append(b"".join(chunks))
            return message

        await app(scope, replay, send)

    return record


@asynccontextmanager
async def serve_later_agent() -> AsyncIterator[Agent]:
    agent = Agent()
    sock = bound_socket()
    agent.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def answered(response: httpx.Response) -> None:
        await response.aread()
        body = json.loads(response.request.content)
        kind = next(iter(body))
        state = body[kind].get("status", {}).get("state", kind)
        agent.pushed.append((state, response.status_code))

    card = agent_card(agent.url)
    async with httpx.AsyncClient(timeout=10, event_hooks={"response": [answered]}) as push_client:
        handler = DefaultRequestHandler(
            agent_executor=LaterExecutor(),
            task_store=InMemoryTaskStore(),
            agent_card=card,
            push_config_store=agent.configs,
            push_sender=BasePushNotificationSender(push_client, agent.configs),
        )
        app = Starlette(
            routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/a2a/jsonrpc")]
        )
        async with serve(recording(app, agent.bodies), sock):
            yield agent


@dataclass
class Hook:
    """The caller's webhook receiver: every body it was sent."""

    url: str = ""
    hits: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str | None] = field(default_factory=set)
    completed: asyncio.Event = field(default_factory=asyncio.Event)
    working: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, request: Request) -> Response:
        body = await request.json()
        self.hits.append(body)
        self.tokens.add(request.headers.get("x-a2a-notification-token"))
        state = body.get("statusUpdate", {}).get("status", {}).get("state")
        if state == "TASK_STATE_WORKING":
            self.working.set()
        if state == "TASK_STATE_COMPLETED":
            self.completed.set()
        return Response(status_code=204)

    def states(self) -> list[str]:
        return [b["statusUpdate"]["status"]["state"] for b in self.hits if "statusUpdate" in b]


@asynccontextmanager
async def gateway_on(sock: socket.socket, **settings: Any) -> AsyncIterator[str]:
    """A gateway served on (a duplicate of) `sock`: the next one on the same socket has the same URL,
    and what arrives in between waits in the socket's backlog."""
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity = {"public_url": base, **settings.pop("identity", {})}
    app = create_app(GatewaySettings(identity=identity, **settings))
    async with serve(app, socket.socket(fileno=os.dup(sock.fileno()))):
        yield base


def settings_for(tmp_path: Path, agent: Agent, *, streaming: bool) -> dict[str, Any]:
    if streaming:
        where: dict[str, Any] = {"card_url": f"{agent.url}/.well-known/agent-card.json"}
    else:  # an inline card: the agent does not stream
        where = {
            "card": {
                "name": "helpdesk",
                "supportedInterfaces": [
                    {
                        "url": f"{agent.url}/a2a/jsonrpc",
                        "protocolBinding": "JSONRPC",
                        "protocolVersion": "1.0",
                    }
                ],
                "capabilities": {"streaming": False, "pushNotifications": True},
                "skills": [{"id": "later", "name": "Later", "description": "completes later", "tags": ["x"]}],
            }
        }
    caller = {
        "client_id": "caller",
        "name": "caller",
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["a2a/helpdesk"],
        "scopes": ["a2a"],
    }
    return {
        "a2a_agents": [
            {
                "name": "helpdesk",
                **where,
                "allow_private_network": True,
                "allow_private_webhooks": True,  # the caller's receiver is on loopback
                "timeout_s": 1,  # a blocking call to the agent could not wait for "later"
            }
        ],
        "identity": {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}", "agents": [caller]},
        "audit": {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"},
    }


async def client_of(base: str) -> tuple[Any, httpx.AsyncClient]:
    token = await issued_token(base, "caller", SECRET, "a2a/helpdesk", "a2a")
    http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=WAIT_S)
    card = await A2ACardResolver(http, f"{base}/a2a/helpdesk").get_agent_card()
    return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card), http


async def send_later(client: Any, hook: Hook, text: str) -> Task:
    """Send `text` without waiting, with the caller's webhook."""
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    push = TaskPushNotificationConfig(url=hook.url, token=TOKEN)
    configuration = SendMessageConfiguration(return_immediately=True, task_push_notification_config=push)
    events = [
        e async for e in client.send_message(SendMessageRequest(message=message, configuration=configuration))
    ]
    task: Task = events[-1].task
    return task


async def downstream_id(client: Any, task_id: str) -> str:
    while "interlink.downstream" not in (seen := await client.get_task(GetTaskRequest(id=task_id))).metadata:
        await asyncio.sleep(0.05)
    return str(seen.metadata["interlink.downstream"]["task_id"])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Agent, Hook]]:
    hook = Hook()
    async with (
        serve_later_agent() as agent,
        serve(Starlette(routes=[Route("/hook", hook.receive, methods=["POST"])])) as hook_base,
    ):
        hook.url = f"{hook_base}/hook"
        yield agent, hook


def never_leaked(agent: Agent, hook: Hook) -> None:
    """The agent never received the caller's webhook URL or token."""
    assert agent.bodies
    for body in agent.bodies:
        assert hook.url.encode() not in body and TOKEN.encode() not in body


async def test_an_agent_that_does_not_stream_completes_by_webhook(
    world: tuple[Agent, Hook], tmp_path: Path
) -> None:
    """A non-streaming agent's task that takes longer than the agent's timeout: the caller's
    webhook receives its artifact and completion, re-stamped with the caller's task id."""
    agent, hook = world
    sock = bound_socket()
    with sock:
        async with gateway_on(sock, **settings_for(tmp_path, agent, streaming=False)) as base:
            client, http = await client_of(base)
            async with aclosing(http), asyncio.timeout(WAIT_S):
                task = await send_later(client, hook, "later 1.5")
                assert task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
                theirs = await downstream_id(client, task.id)
                config = await agent.webhook(theirs)
                assert config.url.startswith(f"{base}/a2a/helpdesk/webhook/") and config.token != TOKEN
                await hook.completed.wait()
                done = await client.get_task(GetTaskRequest(id=task.id))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.parts[0].text for a in done.artifacts] == ["later"]
    assert hook.tokens == {TOKEN}
    assert hook.states().count("TASK_STATE_COMPLETED") == 1
    artifacts = [b["artifactUpdate"] for b in hook.hits if "artifactUpdate" in b]
    assert [a["artifact"]["parts"][0]["text"] for a in artifacts] == ["later"]
    assert {a["taskId"] for a in artifacts} == {task.id}
    assert ("TASK_STATE_COMPLETED", 204) in agent.pushed
    never_leaked(agent, hook)


async def test_a_task_working_across_a_restart_completes(world: tuple[Agent, Hook], tmp_path: Path) -> None:
    """The gateway stops while the agent works on a relayed task; the next gateway on the same
    database receives the agent's completion at the webhook, delivers it to the caller's webhook,
    and GetTask shows it COMPLETED."""
    agent, hook = world
    settings = settings_for(tmp_path, agent, streaming=True)
    settings["a2a_agents"][0]["timeout_s"] = 10
    sock = bound_socket()
    with sock:
        async with gateway_on(sock, **json.loads(json.dumps(settings))) as first:
            client, http = await client_of(first)
            async with aclosing(http), asyncio.timeout(WAIT_S):
                task = await send_later(client, hook, "later 3")
                theirs = await downstream_id(client, task.id)
                await hook.working.wait()
                await agent.webhook(theirs)  # registered
        assert not hook.completed.is_set()
        async with gateway_on(sock, **json.loads(json.dumps(settings))) as second:
            client, http = await client_of(second)
            async with aclosing(http), asyncio.timeout(WAIT_S):
                await hook.completed.wait()
                done = await client.get_task(GetTaskRequest(id=task.id))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.parts[0].text for a in done.artifacts] == ["later"]
    assert hook.states().count("TASK_STATE_COMPLETED") == 1
    never_leaked(agent, hook)


async def test_forged_and_unknown_webhooks_are_refused_and_recorded(
    world: tuple[Agent, Hook], tmp_path: Path
) -> None:
    """A wrong or missing token (401), an unknown id or another agent's path (404), a body too large
    (413) or not about that task (400): refused, each recorded, and the caller's task untouched."""
    agent, hook = world
    settings = settings_for(tmp_path, agent, streaming=True)
    settings["limits"] = {"max_body_bytes": 4096}
    settings["a2a_agents"][0]["timeout_s"] = 10
    sock = bound_socket()
    with sock:
        async with gateway_on(sock, **settings) as base:
            client, http = await client_of(base)
            async with aclosing(http), asyncio.timeout(WAIT_S):
                task = await send_later(client, hook, "later 3")
                theirs = await downstream_id(client, task.id)
                config = await agent.webhook(theirs)
                hook_id = config.url.rsplit("/", 1)[1]
                done = {"statusUpdate": {"taskId": theirs, "status": {"state": "TASK_STATE_COMPLETED"}}}
                answers = []
                async with httpx.AsyncClient(timeout=WAIT_S) as raw:
                    for url, token, body in [
                        (config.url, "forged", done),
                        (config.url, None, done),
                        (f"{base}/a2a/helpdesk/webhook/unknown-id", config.token, done),
                        (f"{base}/a2a/elsewhere/webhook/{hook_id}", config.token, done),
                        (config.url, config.token, {"statusUpdate": {"taskId": "another", "status": {}}}),
                        (config.url, config.token, {"message": {"messageId": "m", "role": "ROLE_AGENT"}}),
                        (config.url, config.token, {"artifactUpdate": {"taskId": theirs, "pad": "x" * 5000}}),
                    ]:
                        headers = {"x-a2a-notification-token": token} if token else {}
                        answer = await raw.post(url, json=body, headers=headers)
                        error = answer.json()["error"]
                        answers.append((answer.status_code, error.get("reason") or error["data"]["reason"]))
                still = await client.get_task(GetTaskRequest(id=task.id))
                await hook.completed.wait()
    assert answers == [
        (401, "invalid_webhook_token"),
        (401, "invalid_webhook_token"),
        (404, "unknown_webhook"),
        (404, "unknown_agent"),
        (400, "invalid_webhook_payload"),
        (400, "invalid_webhook_payload"),
        (413, "payload_too_large"),
    ]
    assert still.status.state == TaskState.TASK_STATE_WORKING  # none of them moved it
    assert hook.states().count("TASK_STATE_COMPLETED") == 1  # the agent's own, later
    async with AuditStore.open(settings["audit"]["database_url"]) as store:
        records = [r.record() async for r in store.records("main")]
    webhooks = [r for r in records if r["event"] == "a2a.DownstreamWebhook"]
    refused = [(r["decision"]["effect"], r["outcome"].get("reason")) for r in webhooks]
    assert refused.count(("deny", "invalid_webhook_token")) == 2
    assert refused.count(("deny", "unknown_webhook")) == 1
    assert ("allow", "invalid_webhook_payload") in refused and ("allow", "payload_too_large") in refused
    assert [r["target"]["name"] for r in webhooks if r["outcome"]["status"] == "ok"] != []
    assert {r["target"]["name"] for r in webhooks if r["decision"]["reason"] == "invalid_webhook_token"} == {
        task.id
    }
    never_leaked(agent, hook)


async def test_an_update_seen_by_relay_and_webhook_is_delivered_once(
    world: tuple[Agent, Hook], tmp_path: Path
) -> None:
    """A streamed task followed by both the relay stream and the webhook, through an input-required
    pause: every chunk and status reaches the caller's webhook exactly once, in order."""
    agent, hook = world
    settings = settings_for(tmp_path, agent, streaming=True)
    settings["a2a_agents"][0]["timeout_s"] = 10
    sock = bound_socket()
    with sock:
        async with gateway_on(sock, **settings) as base:
            client, http = await client_of(base)
            async with aclosing(http), asyncio.timeout(WAIT_S):
                task = await send_later(client, hook, "chunks 4")
                while ("TASK_STATE_INPUT_REQUIRED", 204) not in agent.pushed:  # the webhook saw it all
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # room for a duplicate to arrive, if there were one
                answer = Message(
                    message_id=str(uuid.uuid4()),
                    role=Role.ROLE_USER,
                    parts=[Part(text="yes")],
                    task_id=task.id,
                )
                [_ async for _ in client.send_message(SendMessageRequest(message=answer))]
                await hook.completed.wait()
                while ("TASK_STATE_COMPLETED", 204) not in agent.pushed:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                done = await client.get_task(GetTaskRequest(id=task.id))
    # the webhook saw chunks too (all but those before our webhook was registered) and the answer
    assert agent.pushed.count(("artifactUpdate", 204)) >= 2
    chunks = [b["artifactUpdate"]["artifact"]["parts"][0]["text"] for b in hook.hits if "artifactUpdate" in b]
    assert chunks == [f"chunk {i}" for i in range(1, 5)] + ["thanks, yes"]
    steps = [
        b["statusUpdate"]["status"]["message"]["parts"][0]["text"]
        for b in hook.hits
        if "statusUpdate" in b and "message" in b["statusUpdate"]["status"]
    ]
    assert steps == ["working", "more?", "thanks, yes"]
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert [p.text for p in done.artifacts[0].parts] == [f"chunk {i}" for i in range(1, 5)]
    never_leaked(agent, hook)
