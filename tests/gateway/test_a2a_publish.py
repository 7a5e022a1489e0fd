"""The published agent's tool look-ups (gateway/a2a_publish.py) over a real virtual server whose only
upstream is an in-process tool provider that counts how often it is listed: made-up skills cannot
force a listing per message, and an unknown skill names only what the caller may use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from mcp_types import CallToolResult, InputRequiredResult, TextContent, Tool

from adapters.mcp.naming import ToolSelection
from adapters.mcp.pool import UpstreamStatus
from adapters.mcp.providers import ProviderCall
from adapters.mcp.virtual import VirtualServer
from gateway.a2a_publish import REFRESH_MIN_S, TOOLS_TTL_S, PublishedAgent
from gateway.auth import PRINCIPAL
from gateway.enforce import Governor
from gateway.errors import UnknownSkill
from gateway.settings import PublishedAgentSettings
from identity.policy import Policy
from identity.tokens import Principal


class CountingProvider:
    """A real tool provider (the virtual server's non-MCP upstream seam) counting its listings."""

    name = "desk"

    def __init__(self) -> None:
        self.listings = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def tools(self, *, refresh: bool = False) -> dict[str, Tool]:
        self.listings += 1
        schema: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
        return {n: Tool(name=n, input_schema=schema) for n in ("echo", "secret")}

    def bridged(self, tool: Tool) -> str | None:
        return None

    def shows(self, scope: Mapping[str, Any], tool: Tool) -> bool:
        return True

    async def call_tool(self, call: ProviderCall) -> CallToolResult | InputRequiredResult:
        return CallToolResult(content=[TextContent(type="text", text="ok")])

    def status(self) -> UpstreamStatus:
        return UpstreamStatus(self.name, "ready", None, None, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def published(provider: CountingProvider, clock: Clock, policy: Policy | None = None) -> PublishedAgent:
    tool_governor = Governor("desk", policy=policy, audit=None, public=False)
    virtual = VirtualServer(
        "desk",
        [],
        selection=ToolSelection(),
        namespacing="prefix",
        max_body_bytes=1_000_000,
        security=None,
        version="test",
        governor=tool_governor,
        providers=[provider],
    )
    return PublishedAgent(
        PublishedAgentSettings(name="tools", virtual_server="desk"),
        virtual,
        Governor("tools", policy=policy, audit=None, public=False, protocol="a2a"),
        "http://interlink.test",
        virtual_scopes=["mcp"],
        tool_governor=tool_governor,
        clock=clock,
    )


def caller(*scopes: str) -> dict[str, Any]:
    principal = Principal(
        subject="caller",
        client_id="caller",
        tenant=None,
        scopes=frozenset(scopes),
        audience="http://interlink.test/a2a/tools",
        issuer="http://interlink.test",
        token_id="t1",
        expires_at=2**40,
    )
    return {PRINCIPAL: principal}


async def test_unknown_skills_re_read_the_tools_at_most_every_refresh_interval() -> None:
    """A burst of made-up skills lists the upstreams once per REFRESH_MIN_S, not once per message;
    a known skill is served from the listing until TOOLS_TTL_S."""
    provider, clock = CountingProvider(), Clock()
    agent = published(provider, clock)
    scope = caller("a2a", "mcp")
    assert (await agent.tool("desk__echo", scope)).name == "desk__echo"
    first = provider.listings
    for _ in range(20):
        with pytest.raises(UnknownSkill):
            await agent.tool("desk__made-up", scope)
    assert provider.listings == first  # all within the same instant: no re-listing
    clock.now += REFRESH_MIN_S
    with pytest.raises(UnknownSkill):
        await agent.tool("desk__made-up", scope)
    assert provider.listings == first + 1  # one re-read for the next interval
    clock.now += REFRESH_MIN_S / 2
    await agent.tool("desk__echo", scope)
    assert provider.listings == first + 1  # a known skill: cached
    clock.now += TOOLS_TTL_S
    await agent.tool("desk__echo", scope)
    assert provider.listings == first + 2


async def test_an_unknown_skill_names_only_the_skills_the_caller_may_use() -> None:
    """Skills hidden from the caller by the policy, or all of them for a token without the virtual
    server's scopes, are not named in an unknown-skill refusal."""
    policy = Policy.model_validate(
        {
            "rules": [
                {"id": "send", "effect": "permit", "actions": ["SendMessage"], "resources": ["a2a:tools/*"]},
                {
                    "id": "echo",
                    "effect": "permit",
                    "actions": ["tools/call"],
                    "resources": ["mcp:desk/desk__echo"],
                },
            ]
        }
    )
    agent = published(CountingProvider(), Clock(), policy)
    with pytest.raises(UnknownSkill) as err:
        await agent.tool("desk__nope", caller("a2a", "mcp"))
    assert "desk__echo" in err.value.message and "desk__secret" not in err.value.message
    with pytest.raises(UnknownSkill) as err:
        await agent.tool("desk__nope", caller("a2a"))
    assert "desk__" not in err.value.message.replace("'desk__nope'", "")
