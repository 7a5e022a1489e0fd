"""Upstream changes reach callers of both protocol eras: tools/prompts/resources `list_changed`
and `resources/updated`, from upstreams of both eras."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types import ResourceUpdatedNotification, ToolListChangedNotification

from tests.support import gateway, hold, stdio_upstream

EVERYTHING = (
    Path(__file__).parents[1] / "npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
WAIT_S = 10.0


@pytest.fixture(params=["auto", "legacy"])
async def growing(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A gateway whose upstream `up` adds tools at run time; the upstream speaks the given era."""
    upstream = stdio_upstream("up", start="eager", protocol=request.param)
    async with gateway(upstreams=[upstream], virtual_servers=[{"name": "v", "upstreams": ["up"]}]) as url:
        yield f"{url}/mcp/v"


class Inbox:
    """Collects a legacy client's notifications; `wait_for` bounds every wait."""

    def __init__(self) -> None:
        self.messages: list[IncomingMessage] = []
        self._arrived = asyncio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, kind: type, timeout: float = WAIT_S) -> IncomingMessage:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if isinstance(message, kind):
                        return message
                self._arrived.clear()
                await self._arrived.wait()


async def test_modern_listener_sees_tools_change(growing: str) -> None:
    """A 2026-07-28 caller's `subscriptions/listen` stream gets ToolsListChanged after another caller
    makes the upstream add a tool, and the next tools/list shows it."""
    async with Client(growing) as watcher, Client(growing) as actor:
        async with watcher.listen(tools_list_changed=True) as events:
            await actor.call_tool("up__grow", {"name": "fresh"})
            async with asyncio.timeout(WAIT_S):
                event = await anext(aiter(events))
            assert isinstance(event, ToolsListChanged)
        names = {t.name for t in (await watcher.list_tools()).tools}
        assert "up__fresh" in names


async def test_legacy_session_gets_tool_list_changed(growing: str) -> None:
    """A 2025-11-25 session gets notifications/tools/list_changed on its stream."""
    inbox = Inbox()
    async with hold(Client(growing, mode="legacy", message_handler=inbox)) as watcher:
        await watcher.list_tools()
        async with Client(growing) as actor:
            await actor.call_tool("up__grow", {"name": "later"})
        await inbox.wait_for(ToolListChangedNotification)
        assert "up__later" in {t.name for t in (await watcher.list_tools()).tools}


@pytest.fixture
async def everything() -> AsyncIterator[str]:
    if not EVERYTHING.is_file():
        pytest.skip("server-everything is not installed: run `npm ci --prefix tests/npm`")
    upstream = {"name": "ev", "transport": "stdio", "command": "node", "args": [str(EVERYTHING), "stdio"]}
    async with gateway(upstreams=[upstream], virtual_servers=[{"name": "v", "upstreams": ["ev"]}]) as url:
        yield f"{url}/mcp/v"


async def _some_resource(client: Client) -> str:
    return str((await client.list_resources()).resources[0].uri)


async def test_legacy_subscriber_gets_resource_updates(everything: str) -> None:
    """resources/subscribe through the gateway reaches the owning upstream, and its
    notifications/resources/updated come back to the subscribed session only."""
    inbox, bystander_inbox = Inbox(), Inbox()
    async with (
        hold(Client(everything, mode="legacy", message_handler=inbox)) as client,
        hold(Client(everything, mode="legacy", message_handler=bystander_inbox)) as bystander,
    ):
        uri = await _some_resource(client)
        await bystander.list_tools()
        with pytest.warns(MCPDeprecationWarning):  # the 2025-11-25 way, replaced by listen()
            await client.session.subscribe_resource(uri)
        await client.call_tool("ev__toggle-subscriber-updates", {})
        note = await inbox.wait_for(ResourceUpdatedNotification)
        assert isinstance(note, ResourceUpdatedNotification)
        assert str(note.params.uri) == uri
        with pytest.warns(MCPDeprecationWarning):
            await client.session.unsubscribe_resource(uri)
        assert not any(isinstance(m, ResourceUpdatedNotification) for m in bystander_inbox.messages)


async def test_modern_listener_gets_resource_updates(everything: str) -> None:
    """A 2026-07-28 listen stream naming a URI gets ResourceUpdated for it from a legacy upstream."""
    async with Client(everything) as client:
        uri = await _some_resource(client)
        async with client.listen(resource_subscriptions=[uri]) as events:
            await client.call_tool("ev__toggle-subscriber-updates", {})
            async with asyncio.timeout(WAIT_S):
                event = await anext(aiter(events))
        assert event == ResourceUpdated(uri=uri)
