"""The A2A face end to end: a Python a2a-sdk agent behind Interlink at `/a2a/helpdesk`, driven by the
official Python A2A client with a token Interlink issued: the rewritten card, blocking, streaming,
multi-turn, cancel, per-caller task isolation, policy on skills, audit records, refusals."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    AgentInterface,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf import struct_pb2

from gateway.audit import AuditStore
from tests.a2a_py_agent import serve_agent
from tests.support import bound_socket, gateway, issued_token

SECRET = "a2a-face-secret"
POLICY = {
    "rules": [
        {
            "id": "helpdesk",
            "effect": "permit",
            "principals": {"agents": ["caller", "other"]},
            "actions": ["SendMessage"],
            "resources": ["a2a:helpdesk/*"],
        },
        {
            "id": "no-failing",
            "effect": "forbid",
            "actions": ["SendMessage"],
            "resources": ["a2a:helpdesk/fail"],
        },
    ]
}


def agent(client_id: str, audiences: list[str]) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": audiences,
        "scopes": ["a2a", "mcp"],
    }


@dataclass
class Face:
    base: str
    downstream: str
    audit_url: str

    async def token(
        self, client_id: str = "caller", resource: str = "a2a/helpdesk", scope: str = "a2a"
    ) -> str:
        return await issued_token(self.base, client_id, SECRET, resource, scope)

    async def client(
        self, client_id: str = "caller", *, streaming: bool = True
    ) -> tuple[Any, httpx.AsyncClient]:
        http = httpx.AsyncClient(
            headers={"authorization": f"Bearer {await self.token(client_id)}"}, timeout=30
        )
        card = await A2ACardResolver(http, f"{self.base}/a2a/helpdesk").get_agent_card()
        return ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card), http


@pytest.fixture
async def face(tmp_path: Path) -> AsyncIterator[Face]:
    async with serve_agent() as downstream:
        audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        async with gateway(
            upstreams=[{"name": "demo", "transport": "builtin"}],
            virtual_servers=[{"name": "desk", "upstreams": ["demo"], "public": False}],
            a2a_agents=[
                {
                    "name": "helpdesk",
                    "card_url": f"{downstream}/.well-known/agent-card.json",
                    "allow_private_network": True,
                    "timeout_s": 20,
                }
            ],
            identity={
                "agents": [agent("caller", ["a2a/helpdesk", "mcp/desk"]), agent("other", ["a2a/helpdesk"])]
            },
            policy=POLICY,
            audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "key.pem")},
        ) as base:
            yield Face(base, downstream, audit_url)


def message(text: str, *, task_id: str = "", context_id: str = "", skill: str | None = None) -> Message:
    msg = Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )
    if skill is not None:
        meta = struct_pb2.Struct()
        meta.update({"skill": skill})
        msg.metadata.CopyFrom(meta)
    return msg


async def test_card_points_at_interlink_and_hides_the_agent(face: Face) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{face.base}/a2a/helpdesk/.well-known/agent-card.json")).json()
    assert card["supportedInterfaces"] == [
        {"url": f"{face.base}/a2a/helpdesk", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        {"url": f"{face.base}/a2a/helpdesk/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
    ]
    assert face.downstream not in json.dumps(card)
    assert {s["id"] for s in card["skills"]} >= {"echo", "stream", "ask"}
    flow = card["securitySchemes"]["interlink"]["oauth2SecurityScheme"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{face.base}/oauth2/token"


async def test_blocking_streaming_and_multi_turn(face: Face) -> None:
    blocking, http = await face.client(streaming=False)
    async with aclosing(http):
        events = [e async for e in blocking.send_message(SendMessageRequest(message=message("echo hello")))]
        task = events[-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.artifacts[0].parts[0].text == "hello"

    streaming, http = await face.client()
    async with aclosing(http):
        events = [e async for e in streaming.send_message(SendMessageRequest(message=message("stream 3")))]
        kinds = [e.WhichOneof("payload") for e in events]
        assert kinds[0] == "task" and kinds.count("artifact_update") == 3
        task_id = events[0].task.id
        assert all(getattr(e, k).task_id == task_id for e, k in zip(events[1:], kinds[1:], strict=True))
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED

        asked = [e async for e in streaming.send_message(SendMessageRequest(message=message("ask")))]
        first = asked[0].task
        assert asked[-1].status_update.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        answer = message("Ada", task_id=first.id, context_id=first.context_id)
        [e async for e in streaming.send_message(SendMessageRequest(message=answer))]
        done = await streaming.get_task(GetTaskRequest(id=first.id))
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        assert done.artifacts[-1].parts[0].text == "thanks, Ada"


async def test_http_json_binding(face: Face) -> None:
    """The same agent over the HTTP+JSON binding: send, get, policy refusal as HTTP 403."""
    http = httpx.AsyncClient(headers={"authorization": f"Bearer {await face.token()}"}, timeout=30)
    async with aclosing(http):
        card = await A2ACardResolver(http, f"{face.base}/a2a/helpdesk").get_agent_card()
        config = ClientConfig(streaming=False, httpx_client=http, supported_protocol_bindings=["HTTP+JSON"])
        rest = ClientFactory(config).create(card)
        task = [e async for e in rest.send_message(SendMessageRequest(message=message("echo rest")))][-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert (await rest.get_task(GetTaskRequest(id=task.id))).artifacts[0].parts[0].text == "rest"
        denied = await http.post(
            f"{face.base}/a2a/helpdesk/rest/message:send",
            json={
                "message": {
                    "messageId": "m1",
                    "role": "ROLE_USER",
                    "parts": [{"text": "fail"}],
                    "metadata": {"skill": "fail"},
                }
            },
            headers={"a2a-version": "1.0"},
        )
        assert denied.status_code == 403
        assert "POLICY_DENIED" in denied.text and face.downstream not in denied.text


async def test_cancel_reaches_the_agent(face: Face) -> None:
    client, http = await face.client(streaming=False)
    async with aclosing(http):
        request = SendMessageRequest(
            message=message("slow"), configuration=SendMessageConfiguration(return_immediately=True)
        )
        task = [e async for e in client.send_message(request)][-1].task
        for _ in range(100):
            seen = await client.get_task(GetTaskRequest(id=task.id))
            if "interlink.downstream" in seen.metadata:
                break
            await asyncio.sleep(0.05)
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        downstream_id = seen.metadata["interlink.downstream"]["task_id"]
    direct = httpx.AsyncClient(timeout=10)
    async with aclosing(direct):
        card = await A2ACardResolver(direct, face.downstream).get_agent_card()
        agent_client = ClientFactory(ClientConfig(streaming=False, httpx_client=direct)).create(card)
        there = await agent_client.get_task(GetTaskRequest(id=downstream_id))
    assert there.status.state == TaskState.TASK_STATE_CANCELED


async def test_tasks_are_private_to_their_caller(face: Face) -> None:
    mine, http = await face.client("caller", streaming=False)
    theirs, http2 = await face.client("other", streaming=False)
    async with aclosing(http), aclosing(http2):
        task = [e async for e in mine.send_message(SendMessageRequest(message=message("echo x")))][-1].task
        with pytest.raises(A2AError) as err:
            await theirs.get_task(GetTaskRequest(id=task.id))
        assert type(err.value).__name__ == "TaskNotFoundError"


async def test_policy_on_skills_and_audit(face: Face) -> None:
    client, http = await face.client(streaming=False)
    async with aclosing(http):
        with pytest.raises(A2AError) as err:
            [e async for e in client.send_message(SendMessageRequest(message=message("fail", skill="fail")))]
        assert "denied" in str(err.value)
        [e async for e in client.send_message(SendMessageRequest(message=message("echo ok", skill="echo")))]
    async with AuditStore.open(face.audit_url) as store:
        records = [r.record() async for r in store.records("main")]
    sends = [
        (r["event"], r["target"]["name"], r["decision"]["effect"], r["decision"].get("rule"))
        for r in records
        if r["event"].startswith("a2a.SendMessage")
    ]
    assert sends == [
        ("a2a.SendMessage", "fail", "deny", "no-failing"),
        ("a2a.SendMessage", "echo", "allow", "helpdesk"),
        ("a2a.SendMessage.result", "echo", "allow", "helpdesk"),
    ]
    assert all(r["target"]["protocol"] == "a2a" for r in records if r["event"].startswith("a2a."))
    assert records[-1]["actor"]["agent"] == "caller"


async def test_refusals(face: Face) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}
    headers = {"a2a-version": "1.0"}
    async with httpx.AsyncClient() as http:
        none = await http.post(f"{face.base}/a2a/helpdesk", json=body, headers=headers)
        assert none.status_code == 401
        assert "/.well-known/oauth-protected-resource/a2a/helpdesk" in none.headers["www-authenticate"]
        mcp_token = await face.token(resource="mcp/desk", scope="mcp")
        wrong = await http.post(
            f"{face.base}/a2a/helpdesk", json=body, headers=headers | {"authorization": f"Bearer {mcp_token}"}
        )
        assert wrong.status_code == 401
        unknown = await http.post(f"{face.base}/a2a/nobody", json=body, headers=headers)
        assert unknown.status_code == 404 and unknown.json()["error"]["data"]["reason"] == "unknown_agent"
        prm = (await http.get(f"{face.base}/.well-known/oauth-protected-resource/a2a/helpdesk")).json()
        assert prm["resource"] == f"{face.base}/a2a/helpdesk" and prm["scopes_supported"] == ["a2a"]


async def test_card_at_a_private_address_is_refused_without_allowance(tmp_path: Path) -> None:
    with bound_socket() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/.well-known/agent-card.json"
        async with gateway(
            a2a_agents=[{"name": "sneaky", "card_url": url}],
            audit={"database_url": "sqlite+aiosqlite:///:memory:"},
        ) as base:
            async with httpx.AsyncClient() as http:
                ready = (await http.get(f"{base}/readyz")).json()
    (sneaky,) = ready["a2a_agents"]
    assert sneaky["state"] == "card_error" and sneaky["last_error"] == "only https URLs are fetched"
    assert ready["status"] == "degraded"
    assert url not in json.dumps(ready)


async def test_two_replicas_share_tasks_through_postgres() -> None:
    """A task started on replica A is read and cancelled on replica B (shared PostgreSQL): B forwards
    the cancel to the agent itself, since the proxy executor runs on A."""
    from tests.gateway.test_store import postgres_url

    database = postgres_url()
    async with serve_agent() as downstream:
        public = "http://interlink.test"  # one issuer and audience for both replicas
        common: dict[str, Any] = {
            "a2a_agents": [
                {
                    "name": "helpdesk",
                    "card_url": f"{downstream}/.well-known/agent-card.json",
                    "allow_private_network": True,
                }
            ],
            "identity": {
                "agents": [agent("caller", ["a2a/helpdesk"])],
                "database_url": database,
                "public_url": public,
            },
        }
        async with (
            gateway(**common, audit={"database_url": "sqlite+aiosqlite:///:memory:", "log_id": "a"}) as a,
            gateway(**common, audit={"database_url": "sqlite+aiosqlite:///:memory:", "log_id": "b"}) as b,
        ):
            token = await issued_token(a, "caller", SECRET, "a2a/helpdesk", "a2a", resource_base=public)

            def replica(base: str) -> tuple[Any, httpx.AsyncClient]:
                http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
                card = AgentCard(
                    name="helpdesk",
                    supported_interfaces=[
                        AgentInterface(
                            url=f"{base}/a2a/helpdesk", protocol_binding="JSONRPC", protocol_version="1.0"
                        )
                    ],
                )
                return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card), http

            on_a, http_a = replica(a)
            on_b, http_b = replica(b)
            async with aclosing(http_a), aclosing(http_b):
                request = SendMessageRequest(
                    message=message("slow"), configuration=SendMessageConfiguration(return_immediately=True)
                )
                task = [e async for e in on_a.send_message(request)][-1].task
                async with asyncio.timeout(10):
                    while (
                        "interlink.downstream"
                        not in (seen := await on_b.get_task(GetTaskRequest(id=task.id))).metadata
                    ):
                        await asyncio.sleep(0.05)
                canceled = await on_b.cancel_task(CancelTaskRequest(id=task.id))
                assert canceled.status.state == TaskState.TASK_STATE_CANCELED
                assert (
                    await on_a.get_task(GetTaskRequest(id=task.id))
                ).status.state == TaskState.TASK_STATE_CANCELED
            direct = httpx.AsyncClient(timeout=10)
            async with aclosing(direct):
                card = await A2ACardResolver(direct, downstream).get_agent_card()
                agent_client = ClientFactory(ClientConfig(streaming=False, httpx_client=direct)).create(card)
                there = await agent_client.get_task(
                    GetTaskRequest(id=seen.metadata["interlink.downstream"]["task_id"])
                )
            assert there.status.state == TaskState.TASK_STATE_CANCELED


async def test_multi_turn_with_an_agent_that_does_not_stream() -> None:
    """An agent whose card says it cannot stream answers each turn with a whole task: the answer to
    an input-required question must reach the caller's task (relayed as updates)."""
    async with serve_agent() as downstream:
        card = {
            "name": "plain",
            "description": "answers with whole tasks",
            "version": "1.0.0",
            "supportedInterfaces": [
                {"url": f"{downstream}/a2a/jsonrpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ],
            "capabilities": {"streaming": False},
            "skills": [{"id": "ask", "name": "Ask", "description": "asks", "tags": ["multi-turn"]}],
        }
        async with gateway(
            a2a_agents=[{"name": "plain", "card": card, "public": True, "allow_private_network": True}]
        ) as base:
            http = httpx.AsyncClient(timeout=30)
            async with aclosing(http):
                ours = await A2ACardResolver(http, f"{base}/a2a/plain").get_agent_card()
                client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(ours)
                asked = [e async for e in client.send_message(SendMessageRequest(message=message("ask")))][
                    -1
                ].task
                assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
                answer = message("Grace", task_id=asked.id, context_id=asked.context_id)
                done = [e async for e in client.send_message(SendMessageRequest(message=answer))][-1].task
                assert done.status.state == TaskState.TASK_STATE_COMPLETED
                assert done.artifacts[-1].parts[0].text == "thanks, Grace"


async def test_held_message_waits_in_auth_required_until_approved(tmp_path: Path) -> None:
    """A rule with `approval: true` holds the message: the caller's task moves to AUTH_REQUIRED naming
    the approval; once a human approves, the same message sent again on that task goes through."""
    policy = {
        "rules": [
            {
                "id": "echo-needs-a-human",
                "effect": "permit",
                "actions": ["SendMessage"],
                "resources": ["a2a:helpdesk/echo"],
                "approval": True,
            }
        ]
    }
    async with serve_agent() as downstream:
        async with gateway(
            a2a_agents=[
                {
                    "name": "helpdesk",
                    "card_url": f"{downstream}/.well-known/agent-card.json",
                    "allow_private_network": True,
                }
            ],
            identity={"agents": [agent("caller", ["a2a/helpdesk"])], "admin_token": {"value": "adm"}},
            policy=policy,
            audit={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"},
        ) as base:
            held_face = Face(base, downstream, f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
            client, http = await held_face.client(streaming=False)
            async with aclosing(http):
                first = message("echo approved", skill="echo")
                held = [e async for e in client.send_message(SendMessageRequest(message=first))][-1].task
                assert held.status.state == TaskState.TASK_STATE_AUTH_REQUIRED
                note = held.status.message.parts[0].text
                approval = re.search(r"apr_[\w-]+", note)[0]  # type: ignore[index]
                async with httpx.AsyncClient(headers={"authorization": "Bearer adm"}) as admin:
                    decided = await admin.post(
                        f"{base}/admin/approvals/{approval}/approve", json={"approver": "alice"}
                    )
                assert decided.status_code == 200
                again = message("echo approved", task_id=held.id, context_id=held.context_id, skill="echo")
                again.metadata.update({"io.interlink/approval": approval})
                done = [e async for e in client.send_message(SendMessageRequest(message=again))][-1].task
                assert done.id == held.id and done.status.state == TaskState.TASK_STATE_COMPLETED
                assert done.artifacts[-1].parts[0].text == "approved"
            async with AuditStore.open(held_face.audit_url) as store:
                records = [r.record() async for r in store.records("main")]
    sends = [
        (r["decision"]["effect"], r["decision"]["reason"], r["decision"].get("approval_id"))
        for r in records
        if r["event"] == "a2a.SendMessage"
    ]
    assert sends == [("deny", "approval_required", approval), ("allow", "approved", approval)]


async def test_list_and_subscribe_through_the_face(face: Face) -> None:
    """ListTasks shows a caller its own tasks only; SubscribeToTask follows a running task's events."""
    from a2a.types import ListTasksRequest, SubscribeToTaskRequest

    mine, http = await face.client("caller")
    blocking, http3 = await face.client("caller", streaming=False)
    theirs, http2 = await face.client("other", streaming=False)
    async with aclosing(http), aclosing(http2), aclosing(http3):
        done = [e async for e in mine.send_message(SendMessageRequest(message=message("echo listed")))]
        listed = await mine.list_tasks(ListTasksRequest())
        assert done[0].task.id in {t.id for t in listed.tasks}
        assert done[0].task.id not in {t.id for t in (await theirs.list_tasks(ListTasksRequest())).tasks}

        request = SendMessageRequest(
            message=message("stream 20"), configuration=SendMessageConfiguration(return_immediately=True)
        )
        started = [e async for e in blocking.send_message(request)]
        task_id = started[0].task.id
        async with asyncio.timeout(15):
            events = [e async for e in mine.subscribe(SubscribeToTaskRequest(id=task_id))]
        kinds = [e.WhichOneof("payload") for e in events]
        assert "artifact_update" in kinds or "status_update" in kinds
        # The stream may end a moment before the final state is stored: read until it is (bounded).
        async with asyncio.timeout(10):
            while (final := await mine.get_task(GetTaskRequest(id=task_id))).status.state != (
                TaskState.TASK_STATE_COMPLETED
            ):
                await asyncio.sleep(0.05)
        assert [p.text for p in final.artifacts[0].parts] == [f"chunk {i}" for i in range(1, 21)]
