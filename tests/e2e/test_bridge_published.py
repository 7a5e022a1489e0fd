"""MCP tools as A2A skills: the reference MCP server `@modelcontextprotocol/server-everything` (stdio)
behind a protected virtual server, published as the A2A agent `tools`, driven by the official Python
A2A client with tokens Interlink issued: the generated card, text and data-part messages, artifacts,
progress as status updates, precise refusals, policy on both sides, and both audit records."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError, InvalidParamsError
from google.protobuf import json_format, struct_pb2

from gateway.app import create_app
from gateway.audit import AuditStore
from gateway.settings import ConfigError, GatewaySettings
from tests.e2e.test_everything import EVERYTHING, everything_upstream
from tests.support import MEMORY_DB, gateway, issued_token

pytestmark = pytest.mark.skipif(
    not EVERYTHING.is_file() or shutil.which("node") is None,
    reason="server-everything not installed: run `npm ci --prefix tests/npm` (.ci/run does)",
)

SECRET = "published-secret"
SCOPES = "a2a mcp"
"""A tool call through the agent needs its scope and the virtual server's."""
ADMIN = "published-admin-token"
EVERYTHING_TOOLS = [
    "everything__echo",
    "everything__get-sum",
    "everything__get-structured-content",
    "everything__trigger-long-running-operation",
    "everything__gzip-file-as-resource",
    "everything__get-tiny-image",
]
POLICY: dict[str, Any] = {
    "rules": [
        {
            "id": "send",
            "effect": "permit",
            "principals": {"agents": ["caller", "orchestrator", "a2a-only", "narrow", "careful"]},
            "actions": ["SendMessage"],
            "resources": ["a2a:tools/*"],
        },
        {
            "id": "careful-sums",
            "effect": "permit",
            "principals": {"agents": ["careful"]},
            "actions": ["tools/call"],
            "resources": ["mcp:everything/everything__get-sum"],
            "approval": True,
        },
        {
            "id": "call",
            "effect": "permit",
            "principals": {"agents": ["caller", "orchestrator", "mcp-only"]},
            "actions": ["tools/call"],
            "resources": ["mcp:everything/*"],
        },
        {
            "id": "narrow-echo",
            "effect": "permit",
            "principals": {"agents": ["narrow"]},
            "actions": ["tools/call"],
            "resources": ["mcp:everything/everything__echo"],
        },
    ]
}


def registration(client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["a2a/tools", "mcp/everything"],
        "scopes": ["a2a", "mcp"],
        **extra,
    }


@dataclass
class Published:
    base: str
    audit_url: str

    async def client(
        self, client_id: str = "caller", *, streaming: bool = False, scope: str = SCOPES
    ) -> tuple[Client, httpx.AsyncClient]:
        token = await issued_token(self.base, client_id, SECRET, "a2a/tools", scope)
        return await self.client_with(token, streaming=streaming)

    async def client_with(self, token: str, *, streaming: bool = False) -> tuple[Client, httpx.AsyncClient]:
        http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
        card = await A2ACardResolver(http, f"{self.base}/a2a/tools").get_agent_card()
        return ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card), http

    async def records(self) -> list[dict[str, Any]]:
        async with AuditStore.open(self.audit_url) as store:
            return [r.record() async for r in store.records("main")]


@pytest.fixture
async def published(tmp_path: Path) -> AsyncIterator[Published]:
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with gateway(
        upstreams=[everything_upstream()],
        virtual_servers=[{"name": "everything", "upstreams": ["everything"], "public": False}],
        a2a_published=[{"name": "tools", "virtual_server": "everything", "tools": EVERYTHING_TOOLS}],
        identity={
            "agents": [
                registration("caller"),
                registration("orchestrator", may_act_for=["caller"]),
                registration("a2a-only"),
                registration("mcp-only"),
                registration("narrow"),
                registration("careful"),
            ],
            "admin_token": {"value": ADMIN},
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}",  # approvals need a file
        },
        policy=POLICY,
        audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "key.pem")},
    ) as base:
        yield Published(base, audit_url)


def message(*parts: Part, skill: str | None = "everything__echo") -> Message:
    msg = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=list(parts))
    if skill is not None:
        msg.metadata.update({"skill": skill})
    return msg


def data(value: dict[str, Any]) -> Part:
    wrapped = struct_pb2.Value()
    json_format.ParseDict(value, wrapped)
    return Part(data=wrapped, media_type="application/json")


async def send(client: Client, msg: Message) -> Task:
    events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
    return events[-1].task


def reason(error: A2AError) -> Any:
    return (error.data or {}).get("reason")


async def test_card_is_generated_from_the_tools(published: Published) -> None:
    """One skill per selected tool (id, title, description, tags, input modes), Interlink's endpoints
    and OAuth scheme, nothing of the upstream; listed in the index, /readyz and RFC 9728 metadata."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{published.base}/a2a/tools/.well-known/agent-card.json")
        index = (await http.get(f"{published.base}/")).json()
        ready = (await http.get(f"{published.base}/readyz")).json()
        prm = (await http.get(f"{published.base}/.well-known/oauth-protected-resource/a2a/tools")).json()
    card = response.json()
    assert card["supportedInterfaces"] == [
        {"url": f"{published.base}/a2a/tools", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        {"url": f"{published.base}/a2a/tools/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
    ]
    skills = {s["id"]: s for s in card["skills"]}
    assert sorted(skills) == sorted(EVERYTHING_TOOLS)
    echo = skills["everything__echo"]
    assert echo["name"] == "Echo Tool" and echo["description"] == "Echoes back the input string"
    assert echo["inputModes"] == ["application/json", "text/plain"] and "read-only" in echo["tags"]
    assert skills["everything__get-sum"]["inputModes"] == ["application/json"]  # two numbers: no text
    assert "interlink" in card["securitySchemes"] and card["capabilities"]["extendedAgentCard"] is True
    assert str(EVERYTHING) not in response.text and "stdio" not in response.text
    assert index["a2a"] == {"tools": "/a2a/tools"}
    assert {"name": "tools", "state": "ready"}.items() <= ready["a2a_agents"][0].items()
    assert prm["resource"] == f"{published.base}/a2a/tools" and prm["scopes_supported"] == ["a2a"]


async def test_echo_by_text_and_by_data_part(published: Published) -> None:
    """Plain text fills the only string parameter; a data part is the arguments; both complete with
    the tool's text as the artifact, over JSON-RPC and over HTTP+JSON."""
    client, http = await published.client()
    async with aclosing(http):
        by_text = await send(client, message(Part(text="through interlink")))
        assert by_text.status.state == TaskState.TASK_STATE_COMPLETED
        assert by_text.artifacts[0].parts[0].text == "Echo: through interlink"
        by_data = await send(client, message(data({"message": "as data"})))
        assert by_data.artifacts[0].parts[0].text == "Echo: as data"
        as_json_text = await send(client, message(Part(text='{"message": "json text"}')))
        assert as_json_text.artifacts[0].parts[0].text == "Echo: json text"
        card = await A2ACardResolver(http, f"{published.base}/a2a/tools").get_agent_card()
        config = ClientConfig(streaming=False, httpx_client=http, supported_protocol_bindings=["HTTP+JSON"])
        rest = ClientFactory(config).create(card)
        over_rest = await send(rest, message(Part(text="rest")))
        assert over_rest.artifacts[0].parts[0].text == "Echo: rest"


async def test_numbers_structured_content_and_images(published: Published) -> None:
    """A numeric tool by data part; structured content becomes a data part; an image a file part."""
    client, http = await published.client()
    async with aclosing(http):
        total = await send(client, message(data({"a": 19, "b": 23}), skill="everything__get-sum"))
        assert total.status.state == TaskState.TASK_STATE_COMPLETED
        assert "42" in total.artifacts[0].parts[0].text
        weather = await send(
            client, message(data({"location": "Chicago"}), skill="everything__get-structured-content")
        )
        parts = weather.artifacts[0].parts
        structured = [p for p in parts if p.WhichOneof("content") == "data"]
        assert len(structured) == 1 and structured[0].media_type == "application/json"
        assert set(json_format.MessageToDict(structured[0].data)) == {"temperature", "conditions", "humidity"}
        image = await send(client, message(Part(text="any text"), skill="everything__get-tiny-image"))
        files = [p for p in image.artifacts[0].parts if p.WhichOneof("content") == "raw"]
        assert files and files[0].media_type == "image/png" and files[0].raw.startswith(b"\x89PNG")


async def test_progress_arrives_as_status_updates(published: Published) -> None:
    """A long-running tool's MCP progress notifications reach a streaming caller as WORKING updates."""
    client, http = await published.client(streaming=True)
    async with aclosing(http):
        msg = message(data({"duration": 0.3, "steps": 3}), skill="everything__trigger-long-running-operation")
        events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and "artifact_update" in kinds
    progress = [
        json_format.MessageToDict(e.status_update.metadata)
        for e in events
        if e.WhichOneof("payload") == "status_update" and "progress" in e.status_update.metadata
    ]
    assert progress == [{"progress": 1, "total": 3}, {"progress": 2, "total": 3}, {"progress": 3, "total": 3}]
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


@pytest.mark.parametrize(
    ("msg", "why", "says"),
    [
        (
            message(Part(text="nineteen"), skill="everything__get-sum"),
            "invalid_arguments",
            "a (number, required)",
        ),
        (message(data({"a": "x", "b": 1}), skill="everything__get-sum"), "invalid_arguments", "$.a"),
        (message(data({"message": "x"}), skill="everything__nope"), "unknown_skill", "everything__echo"),
        (message(data({"message": "x"}), skill=None), "unknown_skill", "metadata.skill"),
        (message(Part(raw=b"%PDF", media_type="application/pdf")), "invalid_arguments", "files"),
    ],
)
async def test_unmappable_messages_are_refused_precisely(
    published: Published, msg: Message, why: str, says: str
) -> None:
    """An unknown skill or a message that does not map to the tool's arguments is an invalid-params
    error (JSON-RPC -32602) with a stable reason and a message naming what is expected."""
    client, http = await published.client()
    async with aclosing(http):
        with pytest.raises(InvalidParamsError) as err:
            await send(client, msg)
    assert reason(err.value) == why and says in err.value.message
    records = [r for r in await published.records() if r["event"] == "a2a.SendMessage"]
    assert [(r["decision"]["effect"], r["decision"]["reason"]) for r in records] == [("deny", why)]


async def test_tool_error_fails_the_task(published: Published) -> None:
    """A tool's own error result (isError) ends the task FAILED with the tool's text."""
    client, http = await published.client()
    async with aclosing(http):
        msg = message(data({"data": "file:///etc/passwd"}), skill="everything__gzip-file-as-resource")
        task = await send(client, msg)
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert "Unsupported URL protocol" in task.status.message.parts[0].text
    assert task.status.message.metadata["reason"] == "tool_error"


async def test_policy_applies_on_both_sides(published: Published) -> None:
    """SendMessage permitted but tools/call not: REJECTED by the MCP side's policy; tools/call
    permitted but SendMessage not: refused by the A2A side; the extended card shows a caller only
    the skills it may use on both sides."""
    a2a_only, http = await published.client("a2a-only")
    async with aclosing(http):
        task = await send(a2a_only, message(Part(text="hi")))
        assert task.status.state == TaskState.TASK_STATE_REJECTED
        assert task.status.message.metadata["reason"] == "policy_denied"
        extended = await a2a_only.get_extended_agent_card(GetExtendedAgentCardRequest())
        assert list(extended.skills) == []
    mcp_only, http = await published.client("mcp-only")
    async with aclosing(http):
        with pytest.raises(A2AError) as err:
            await send(mcp_only, message(Part(text="hi")))
        assert "-32013" in str(err.value) and "denied" in str(err.value)  # policy_denied
    narrow, http = await published.client("narrow")
    async with aclosing(http):
        extended = await narrow.get_extended_agent_card(GetExtendedAgentCardRequest())
        assert [s.id for s in extended.skills] == ["everything__echo"]
    records = await published.records()
    mcp_calls = [
        (r["actor"]["agent"], r["decision"]["reason"]) for r in records if r["event"] == "mcp.tools/call"
    ]
    assert mcp_calls == [("a2a-only", "default_deny")]  # mcp-only never got past the A2A side


async def test_audit_records_name_both_protocols_and_the_actor_chain(published: Published) -> None:
    """A delegated caller (orchestrator acting for caller): the A2A record names the MCP tool, the
    MCP record names the A2A skill, and both carry the agent, its subject and the delegation chain."""
    subject = await issued_token(published.base, "caller", SECRET, "a2a/tools", SCOPES)
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "resource": f"{published.base}/a2a/tools",
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{published.base}/oauth2/token", data=form, auth=("orchestrator", SECRET))
    assert response.status_code == 200, response.text
    client, http = await published.client_with(response.json()["access_token"])
    async with aclosing(http):
        task = await send(client, message(Part(text="audited")))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    records = await published.records()
    sides = {
        r["event"]: r
        for r in records
        if r["event"]
        in ("a2a.SendMessage", "a2a.SendMessage.result", "mcp.tools/call", "mcp.tools/call.result")
    }
    assert set(sides) == {
        "a2a.SendMessage",
        "a2a.SendMessage.result",
        "mcp.tools/call",
        "mcp.tools/call.result",
    }
    a2a, mcp = sides["a2a.SendMessage"], sides["mcp.tools/call"]
    assert (a2a["target"]["protocol"], a2a["target"]["name"], a2a["target"]["bridge"]) == (
        "a2a",
        "everything__echo",
        "mcp:everything/everything__echo",
    )
    assert (mcp["target"]["protocol"], mcp["target"]["name"], mcp["target"]["bridge"]) == (
        "mcp",
        "everything__echo",
        "a2a:tools/everything__echo",
    )
    for record in (a2a, mcp):
        actor = record["actor"]
        assert (actor["agent"], actor.get("subject"), actor["act"]) == (
            "orchestrator",
            "caller",
            ["orchestrator"],
        )
        assert record["decision"]["effect"] == "allow"
    assert sides["mcp.tools/call.result"]["outcome"]["status"] == "ok"
    assert sides["a2a.SendMessage.result"]["outcome"]["status"] == "ok"


def test_a_public_agent_cannot_publish_a_protected_virtual_server() -> None:
    """Anonymous A2A callers would reach tools that need an identity: refused at start-up."""
    settings = GatewaySettings(
        upstreams=[everything_upstream()],
        virtual_servers=[{"name": "everything", "upstreams": ["everything"]}],
        a2a_published=[{"name": "tools", "virtual_server": "everything", "public": True}],
        identity={"database_url": MEMORY_DB},
        audit={"database_url": MEMORY_DB},
    )
    with pytest.raises(ConfigError, match="a public agent cannot publish protected virtual server"):
        create_app(settings)


async def test_a_call_held_on_the_mcp_side_waits_for_approval(published: Published) -> None:
    """An MCP rule that needs a human's approval holds the task in AUTH_REQUIRED, naming the
    approval; once approved, the same message sent again on the task with it completes the task."""
    client, http = await published.client("careful")
    async with aclosing(http):
        held = await send(client, message(data({"a": 1, "b": 2}), skill="everything__get-sum"))
        assert held.status.state == TaskState.TASK_STATE_AUTH_REQUIRED
        found = re.search(r'"io.interlink/approval": "([^"]+)"', held.status.message.parts[0].text)
        assert found is not None, held.status.message.parts[0].text
        admin = {"authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=published.base, headers=admin) as api:
            approved = await api.post(f"/admin/approvals/{found[1]}/approve", json={"approver": "alice"})
            assert approved.status_code == 200, approved.text
        retry = message(data({"a": 1, "b": 2}), skill="everything__get-sum")
        retry.task_id, retry.context_id = held.id, held.context_id
        retry.metadata.update({"io.interlink/approval": found[1]})
        done = await send(client, retry)
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert "3" in done.artifacts[0].parts[0].text
    decisions = [r["decision"]["reason"] for r in await published.records() if r["event"] == "mcp.tools/call"]
    assert decisions == ["approval_required", "approved"]


async def test_cancel_stops_the_tool_call(published: Published) -> None:
    """CancelTask on a running tool ends the task CANCELED and cancels the MCP call (recorded)."""
    client, http = await published.client()
    async with aclosing(http):
        msg = message(data({"duration": 20, "steps": 20}), skill="everything__trigger-long-running-operation")
        request = SendMessageRequest(
            message=msg, configuration=SendMessageConfiguration(return_immediately=True)
        )
        task = [e async for e in client.send_message(request)][-1].task
        async with asyncio.timeout(10):
            while (
                await client.get_task(GetTaskRequest(id=task.id))
            ).status.state != TaskState.TASK_STATE_WORKING:
                await asyncio.sleep(0.05)
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    async with asyncio.timeout(10):
        while True:
            results = [r for r in await published.records() if r["event"] == "mcp.tools/call.result"]
            if results:
                break
            await asyncio.sleep(0.05)
    outcome = results[0]["outcome"]
    assert (outcome["status"], outcome["reason"]) == ("error", "cancelled")


async def test_the_policy_speaks_before_skills_are_named_or_arguments_described(published: Published) -> None:
    """A caller the policy refuses `SendMessage` gets the policy's refusal for an unknown skill or
    bad arguments (nothing named or described); one that may send but use only some tools hears of
    those tools alone, and of no schema of the others."""
    mcp_only, http = await published.client("mcp-only")
    async with aclosing(http):
        for msg in (
            message(data({"message": "x"}), skill="everything__nope"),
            message(Part(text="nineteen"), skill="everything__get-sum"),
        ):
            with pytest.raises(A2AError) as err:
                await send(mcp_only, msg)
            assert "-32013" in str(err.value) and "everything__echo" not in str(err.value)  # policy_denied
    narrow, http = await published.client("narrow")
    async with aclosing(http):
        with pytest.raises(InvalidParamsError) as unknown:
            await send(narrow, message(data({"message": "x"}), skill="everything__nope"))
        with pytest.raises(InvalidParamsError) as bad:
            await send(narrow, message(Part(text="nineteen"), skill="everything__get-sum"))
    assert reason(unknown.value) == "unknown_skill"
    assert "everything__echo" in unknown.value.message and "everything__get-sum" not in unknown.value.message
    assert reason(bad.value) == "invalid_arguments" and "number" not in (bad.value.message or "")
    records = [r for r in await published.records() if r["event"] == "a2a.SendMessage"]
    assert [(r["actor"]["agent"], r["decision"]["reason"]) for r in records] == [
        ("mcp-only", "default_deny"),
        ("mcp-only", "default_deny"),
        ("narrow", "unknown_skill"),
        ("narrow", "invalid_arguments"),
    ]
