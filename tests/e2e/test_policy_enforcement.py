"""The policy on a protected virtual server: tools/list shows an agent only what it may use; a denied
call is refused with reason policy_denied naming the rule and never reaches the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests import upstream_server
from tests.e2e.test_identity import RecordingApp
from tests.support import gateway, hold, issued_token, serve

SECRET = "policy-test-secret"
POLICY = {
    "version": "7",
    "rules": [
        {
            "id": "read-directory",
            "effect": "permit",
            "principals": {"agents": ["clerk"]},
            "actions": ["tools/call"],
            "resources": ["mcp:desk/demo__lookup_person", "mcp:desk/web__echo"],
        },
        {
            "id": "small-tickets",
            "effect": "permit",
            "principals": {"agents": ["clerk"]},
            "actions": ["tools/call"],
            "resources": ["mcp:desk/demo__create_ticket"],
            "args": [{"path": "priority", "op": "in", "value": ["low", "normal"]}],
        },
        {
            "id": "never-echo-secrets",
            "effect": "forbid",
            "actions": ["tools/call"],
            "resources": ["mcp:desk/web__echo"],
            "args": [{"path": "text", "op": "matches", "value": ".*secret.*"}],
        },
    ],
}


@pytest.fixture
async def desk() -> AsyncIterator[tuple[str, RecordingApp]]:
    recorder = RecordingApp(upstream_server.build().streamable_http_app())
    async with serve(recorder) as upstream:
        agent = {
            "client_id": "clerk",
            "name": "Clerk",
            "owner": "helpdesk",
            "secret": {"value": SECRET},
            "audiences": ["mcp/desk"],
            "scopes": ["mcp"],
        }
        async with gateway(
            upstreams=[
                {"name": "demo", "transport": "builtin"},
                {"name": "web", "transport": "http", "url": f"{upstream}/mcp"},
            ],
            virtual_servers=[{"name": "desk", "upstreams": ["demo", "web"], "public": False}],
            identity={"agents": [agent]},
            policy=POLICY,
        ) as base:
            yield base, recorder


@pytest.fixture(params=["auto", "legacy"])
async def clerk(request: pytest.FixtureRequest, desk: tuple[str, RecordingApp]) -> AsyncIterator[Client]:
    base, _recorder = desk
    token = {"access_token": await issued_token(base, "clerk", SECRET, "mcp/desk", "mcp")}
    auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {token['access_token']}"})
    async with (
        auth,
        hold(Client(streamable_http_client(f"{base}/mcp/desk", http_client=auth), mode=request.param)) as c,
    ):
        yield c


async def test_list_shows_only_what_the_agent_may_use(clerk: Client) -> None:
    names = {t.name for t in (await clerk.list_tools()).tools}
    assert names == {"demo__lookup_person", "demo__create_ticket", "web__echo"}


async def test_permitted_calls_work(clerk: Client) -> None:
    found = await clerk.call_tool("demo__lookup_person", {"query": "ada"})
    assert (
        found.structured_content is not None
        and found.structured_content["result"][0]["employee_id"] == "E100"
    )
    ticket = await clerk.call_tool(
        "demo__create_ticket", {"title": "t", "description": "d", "priority": "low"}
    )
    assert not ticket.is_error


@pytest.mark.parametrize(
    ("tool", "args", "rule"),
    [
        ("demo__get_ticket", {"ticket_id": "T-0001"}, None),  # no rule permits it: default deny
        ("demo__create_ticket", {"title": "t", "description": "d", "priority": "urgent"}, None),
        ("demo__create_ticket", {"title": "t", "description": "d"}, "small-tickets"),  # missing arg: error
        ("web__echo", {"text": "my secret"}, "never-echo-secrets"),
    ],
)
async def test_denied_calls(clerk: Client, tool: str, args: dict[str, Any], rule: str | None) -> None:
    with pytest.raises(MCPError) as err:
        await clerk.call_tool(tool, args)
    assert err.value.code == -32013
    assert err.value.data["reason"] == "policy_denied"
    assert err.value.data.get("rule") == rule


async def test_denied_calls_never_reach_the_upstream(desk: tuple[str, RecordingApp], clerk: Client) -> None:
    _base, recorder = desk
    await clerk.list_tools()
    before = len(recorder.headers)
    with pytest.raises(MCPError):
        await clerk.call_tool("web__echo", {"text": "top secret"})
    assert len(recorder.headers) == before
    await clerk.call_tool("web__echo", {"text": "fine"})
    assert len(recorder.headers) > before


async def test_invalid_arguments_are_refused_before_policy(clerk: Client) -> None:
    """Arguments are validated against the tool's schema first (a tool error the model can fix)."""
    result = await clerk.call_tool("demo__create_ticket", {"title": 5, "description": "d", "priority": "low"})
    assert result.is_error and result.meta is not None
    assert result.meta["io.interlink/reason"] == "invalid_arguments"
