"""Push notifications on the A2A face: a caller registers a webhook for its task and Interlink POSTs
every update of that task to it (the caller's token in `X-A2A-Notification-Token`), including for a
`return_immediately` send; configs are the caller's own (another caller cannot see or delete them),
stored encrypted, recorded in the audit trail; and webhook URLs that point inside (SSRF) are refused
before anything is sent to them."""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import A2AError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit import AuditStore
from tests.a2a_py_agent import serve_agent
from tests.support import gateway, serve

SECRET = "a2a-push-secret"
TOKEN = "caller-webhook-token-7f3a"
INTRANET = "intranet.interlink.test"
"""A name the test's resolver answers with a 10.x address."""


def agent(client_id: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["a2a/helpdesk", "a2a/strict"],
        "scopes": ["a2a"],
    }


@dataclass
class Webhook:
    """A caller's webhook receiver on loopback: what it was sent, and when a task completed."""

    url: str = ""
    hits: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    completed: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, request: Request) -> Response:
        body = await request.json()
        self.hits.append((request.headers.get("x-a2a-notification-token"), body))
        if body.get("statusUpdate", {}).get("status", {}).get("state") == "TASK_STATE_COMPLETED":
            self.completed.set()
        return Response(status_code=204)


@dataclass
class Face:
    base: str
    audit_url: str
    database: Path
    hook: Webhook

    async def client(
        self, client_id: str = "caller", name: str = "helpdesk"
    ) -> tuple[Any, httpx.AsyncClient]:
        basic = base64.b64encode(f"{client_id}:{SECRET}".encode()).decode()
        form = {"grant_type": "client_credentials", "resource": f"{self.base}/a2a/{name}", "scope": "a2a"}
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{self.base}/oauth2/token", data=form, headers={"authorization": f"Basic {basic}"}
            )
        token = answer.json()["access_token"]
        http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
        card = await A2ACardResolver(http, f"{self.base}/a2a/{name}").get_agent_card()
        return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card), http


@pytest.fixture
async def face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Face]:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:  # a name that resolves to 10.x
        if host in (INTRANET, INTRANET.encode()):
            return real("10.0.0.7", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    hook = Webhook()
    async with (
        serve_agent() as downstream,
        serve(Starlette(routes=[Route("/hook", hook.receive, methods=["POST"])])) as hook_base,
    ):
        hook.url = f"{hook_base}/hook"
        audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        database = tmp_path / "interlink.db"
        card_url = f"{downstream}/.well-known/agent-card.json"
        async with gateway(
            a2a_agents=[
                {
                    "name": "helpdesk",
                    "card_url": card_url,
                    "allow_private_network": True,
                    "allow_private_webhooks": True,  # the receiver is on loopback
                    "timeout_s": 20,
                },
                {"name": "strict", "card_url": card_url, "allow_private_network": True, "timeout_s": 20},
            ],
            identity={
                "database_url": f"sqlite+aiosqlite:///{database}",
                "agents": [agent("caller"), agent("other")],
            },
            policy={
                "rules": [
                    {
                        "id": "agents",
                        "effect": "permit",
                        "principals": {"agents": ["caller", "other"]},
                        "actions": ["SendMessage"],
                        "resources": ["a2a:helpdesk/*", "a2a:strict/*"],
                    }
                ]
            },
            audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "key.pem")},
        ) as base:
            yield Face(base, audit_url, database, hook)


def message(text: str) -> Message:
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


async def send(client: Any, request: SendMessageRequest) -> Task:
    events = [event async for event in client.send_message(request)]
    assert len(events) == 1 and events[0].WhichOneof("payload") == "task", events
    task: Task = events[0].task
    return task


async def test_card_offers_push_notifications(face: Face) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{face.base}/a2a/helpdesk/.well-known/agent-card.json")).json()
    assert card["capabilities"]["pushNotifications"] is True


async def test_webhook_receives_the_updates_of_a_return_immediately_task(face: Face) -> None:
    client, http = await face.client()
    async with aclosing(http):
        push = TaskPushNotificationConfig(url=face.hook.url, token=TOKEN)
        configuration = SendMessageConfiguration(return_immediately=True, task_push_notification_config=push)
        task = await send(
            client, SendMessageRequest(message=message("stream 3"), configuration=configuration)
        )
        assert task.status.state == TaskState.TASK_STATE_SUBMITTED
        async with asyncio.timeout(15):
            await face.hook.completed.wait()
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task.id)
        )
        [config] = listed.configs
        assert (config.url, config.token, config.id) == (face.hook.url, TOKEN, task.id)
    assert {token for token, _ in face.hook.hits} == {TOKEN}
    kinds = [next(iter(body)) for _, body in face.hook.hits]
    assert kinds.count("artifactUpdate") == 3 and kinds[-1] == "statusUpdate", kinds
    ids = {
        (body[kind].get("taskId") or body[kind].get("id"))
        for (_, body), kind in zip(face.hook.hits, kinds, strict=True)
    }
    assert ids == {task.id}  # the caller's task id, never the downstream one
    chunks = [
        b["artifactUpdate"]["artifact"]["parts"][0]["text"]
        for _, b in face.hook.hits
        if "artifactUpdate" in b
    ]
    assert chunks == ["chunk 1", "chunk 2", "chunk 3"]
    stored = face.database.read_bytes()
    assert TOKEN.encode() not in stored and face.hook.url.encode() not in stored  # encrypted at rest
    assert (face.database.parent / "a2a-push-key").stat().st_mode & 0o077 == 0


async def test_configs_are_the_callers_own_and_recorded(face: Face) -> None:
    client, http = await face.client()
    intruder, other_http = await face.client("other")
    async with aclosing(http), aclosing(other_http):
        task = await send(client, SendMessageRequest(message=message("echo hi")))
        created = await client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task.id, id="mine", url=face.hook.url, token=TOKEN)
        )
        assert (created.id, created.url) == ("mine", face.hook.url)
        mine = GetTaskPushNotificationConfigRequest(task_id=task.id, id="mine")
        for attempt in (
            intruder.get_task_push_notification_config(mine),
            intruder.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            ),
            intruder.delete_task_push_notification_config(
                DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="mine")
            ),
            intruder.create_task_push_notification_config(
                TaskPushNotificationConfig(task_id=task.id, url=face.hook.url, token="stolen")
            ),
        ):
            with pytest.raises(A2AError) as err:
                await attempt
            assert "TaskNotFound" in type(err.value).__name__ or "not found" in str(err.value).lower()
        assert (await client.get_task_push_notification_config(mine)).token == TOKEN  # untouched
        await client.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="mine")
        )
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task.id)
        )
        assert list(listed.configs) == []
    async with AuditStore.open(face.audit_url) as store:
        records = [r.record() async for r in store.records("main")]
    pushes = [
        (r["event"], r["actor"]["agent"], r["target"]["name"])
        for r in records
        if "PushNotificationConfig" in r["event"] and not r["event"].endswith(".result")
    ]
    assert ("a2a.CreateTaskPushNotificationConfig", "caller", task.id) in pushes
    assert ("a2a.DeleteTaskPushNotificationConfig", "caller", task.id) in pushes
    assert ("a2a.DeleteTaskPushNotificationConfig", "other", task.id) in pushes  # the refused attempt too


REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254/latest/meta-data/",
    "http://localhost:{port}/hook",
    "https://localhost:{port}/hook",
    "http://127.0.0.1:{port}/hook",
    "https://127.0.0.1:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "https://[::ffff:127.0.0.1]:{port}/hook",
    "http://0x7f000001:{port}/hook",
    "https://0x7f000001:{port}/hook",
    "http://2130706433:{port}/hook",
    "https://2130706433:{port}/hook",
    f"https://{INTRANET}/hook",
    "https://[::1]:{port}/hook",
    "https://user:secret@example.com/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_POST",
    "ftp://example.com/hook",
    "https:///hook",
]


@pytest.mark.parametrize("template", REFUSED)
async def test_webhook_urls_inside_are_refused(face: Face, template: str) -> None:
    """On an agent without `allow_private_webhooks`, both ways of registering a webhook refuse it
    with a clear error, and nothing reaches the (loopback) receiver."""
    url = template.replace("{port}", face.hook.url.rsplit(":", 1)[1].split("/")[0])
    client, http = await face.client(name="strict")
    async with aclosing(http):
        task = await send(client, SendMessageRequest(message=message("echo hi")))
        with pytest.raises(A2AError) as err:
            await client.create_task_push_notification_config(
                TaskPushNotificationConfig(task_id=task.id, url=url, token=TOKEN)
            )
        assert "webhook URL refused" in str(err.value)
        configuration = SendMessageConfiguration(
            return_immediately=True, task_push_notification_config=TaskPushNotificationConfig(url=url)
        )
        with pytest.raises(A2AError) as err:
            await send(client, SendMessageRequest(message=message("stream 2"), configuration=configuration))
        assert "webhook URL refused" in str(err.value)
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task.id)
        )
        assert list(listed.configs) == []
    await asyncio.sleep(0.2)
    assert face.hook.hits == []
