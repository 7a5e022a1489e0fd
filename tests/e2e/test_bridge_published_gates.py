"""MCP tools as A2A skills, the published agent's gates: our test MCP server (stdio) behind a protected
virtual server with no policy, published as the A2A agent `tools` and driven by the official Python
A2A client. The virtual server's required scopes still apply to a bridged call (its card and its
tool calls), and a result A2A cannot carry ends the task FAILED instead of leaving it WORKING."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types import GetExtendedAgentCardRequest, Message, Part, Role, SendMessageRequest, Task, TaskState

from gateway.audit import AuditStore
from tests.support import gateway, issued_token, stdio_upstream

SECRET = "gates-secret"
TOOLS = ["desk__echo", "desk__add"]


@dataclass
class Gates:
    base: str
    audit_url: str

    async def client(self, scope: str) -> tuple[Client, httpx.AsyncClient]:
        token = await issued_token(self.base, "caller", SECRET, "a2a/tools", scope)
        http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
        card = await A2ACardResolver(http, f"{self.base}/a2a/tools").get_agent_card()
        return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card), http

    async def records(self, event: str) -> list[dict[str, Any]]:
        async with AuditStore.open(self.audit_url) as store:
            return [r.record() async for r in store.records("main") if r.record()["event"] == event]


@pytest.fixture
async def gates(tmp_path: Path) -> AsyncIterator[Gates]:
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    agent = {
        "client_id": "caller",
        "name": "caller",
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["a2a/tools", "mcp/desk"],
        "scopes": ["a2a", "mcp"],
    }
    async with gateway(
        upstreams=[stdio_upstream("desk")],
        virtual_servers=[{"name": "desk", "upstreams": ["desk"], "public": False}],
        a2a_published=[{"name": "tools", "virtual_server": "desk", "tools": TOOLS}],
        identity={"agents": [agent]},
        audit={"database_url": audit_url},
    ) as base:
        yield Gates(base, audit_url)


def message(text: str, skill: str) -> Message:
    msg = Message(message_id=f"m-{skill}-{len(text)}", role=Role.ROLE_USER, parts=[Part(text=text)])
    msg.metadata.update({"skill": skill})
    return msg


async def send(client: Client, msg: Message) -> Task:
    async with asyncio.timeout(20):
        events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
    return events[-1].task


async def test_a_token_without_the_virtual_servers_scopes_calls_no_tool(gates: Gates) -> None:
    """With no policy, a token holding only the agent's scope `a2a` is refused every tool of the
    protected virtual server (REJECTED like the MCP side's policy refusals, recorded there as
    `insufficient_scope`) and its extended card shows no skill; with `mcp` too it may use them."""
    narrow, http = await gates.client("a2a")
    async with aclosing(http):
        task = await send(narrow, message("hello", "desk__echo"))
        extended = await narrow.get_extended_agent_card(GetExtendedAgentCardRequest())
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    assert task.status.message.metadata["reason"] == "policy_denied"
    assert "lacks scope mcp" in task.status.message.parts[0].text
    assert not task.artifacts and list(extended.skills) == []
    [refused] = await gates.records("mcp.tools/call")
    assert (refused["decision"]["effect"], refused["decision"]["reason"]) == ("deny", "insufficient_scope")
    assert (refused["outcome"]["status"], refused["actor"]["agent"]) == ("denied", "caller")
    assert refused["target"]["bridge"] == "a2a:tools/desk__echo"
    assert await gates.records("mcp.tools/call.result") == []  # the upstream never saw the call

    full, http = await gates.client("a2a mcp")
    async with aclosing(http):
        done = await send(full, message("hello", "desk__echo"))
        extended = await full.get_extended_agent_card(GetExtendedAgentCardRequest())
        card = await A2ACardResolver(http, f"{gates.base}/a2a/tools").get_agent_card()
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert sorted(s.id for s in extended.skills) == sorted(TOOLS)
    assert list(card.security_requirements[0].schemes["interlink"].list) == ["a2a", "mcp"]


async def test_a_result_a2a_cannot_carry_fails_the_task(gates: Gates) -> None:
    """A structured result holding an integer beyond a double's range (protobuf cannot carry it)
    ends the task FAILED with a safe message, never WORKING; the tool call itself succeeded."""
    client, http = await gates.client("a2a mcp")
    huge = 10**309
    async with aclosing(http):
        task = await send(client, message(f'{{"a": {huge}, "b": 1}}', "desk__add"))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert task.status.message.metadata["reason"] == "unconvertible_result"
    text = task.status.message.parts[0].text
    assert "A2A cannot carry its result" in text and str(huge)[:20] not in text
    [result] = await gates.records("mcp.tools/call.result")
    assert result["outcome"]["status"] == "ok"
