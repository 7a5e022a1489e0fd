"""The npm reference server `@modelcontextprotocol/server-everything` (TypeScript, 2025-11-25 era) behind
Interlink, driven by the official Python client on both protocol eras."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import METHOD_NOT_FOUND, PromptReference

from gateway.settings import load_settings
from tests.support import gateway, hold

ROOT = Path(__file__).parents[2]
EVERYTHING = ROOT / "tests/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

pytestmark = pytest.mark.skipif(
    not EVERYTHING.is_file() or shutil.which("node") is None,
    reason="server-everything not installed: run `npm ci --prefix tests/npm` (.ci/run does)",
)


def everything_upstream() -> dict[str, object]:
    return {
        "name": "everything",
        "transport": "stdio",
        "command": "node",
        "args": [str(EVERYTHING), "stdio"],
        "start": "eager",
        "connect_timeout_s": 30,
    }


@pytest.fixture(params=["auto", "legacy"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    async with gateway(
        upstreams=[everything_upstream(), {"name": "demo", "transport": "builtin"}],
        virtual_servers=[{"name": "everything", "upstreams": ["everything", "demo"]}],
    ) as url:
        async with hold(Client(f"{url}/mcp/everything", mode=request.param)) as c:
            yield c


async def test_tools_are_listed_and_called(client: Client) -> None:
    """The reference server's tools are namespaced next to the demo's, and calls return its content."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"everything__echo", "everything__get-sum", "demo__create_ticket"} <= names
    echo = await client.call_tool("everything__echo", {"message": "through interlink"})
    assert echo.content[0].text == "Echo: through interlink"  # type: ignore[union-attr]
    total = await client.call_tool("everything__get-sum", {"a": 19, "b": 23})
    assert "42" in total.content[0].text  # type: ignore[union-attr]
    structured = await client.call_tool("everything__get-structured-content", {"location": "New York"})
    assert structured.structured_content is not None


async def test_long_running_operation_reports_progress(client: Client) -> None:
    """Progress notifications from the TypeScript server reach the Python caller."""
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    args = {"duration": 0.3, "steps": 3}
    result = await client.call_tool(
        "everything__trigger-long-running-operation", args, progress_callback=on_progress
    )
    assert not result.is_error
    assert seen == [(1, 3), (2, 3), (3, 3)]


async def test_resources_prompts_and_completion(client: Client) -> None:
    """Static resources, templates, prompts and prompt-argument completion pass through."""
    resources = (await client.list_resources()).resources
    assert resources, "server-everything lists static resources"
    content = await client.read_resource(resources[0].uri)
    assert content.contents[0].uri == resources[0].uri
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert any(t.startswith("demo://resource/dynamic/") for t in templates)
    dynamic = await client.read_resource("demo://resource/dynamic/text/7")
    assert dynamic.contents
    prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert "everything__simple-prompt" in prompts
    got = await client.get_prompt("everything__args-prompt", {"city": "Paris"})
    assert "Paris" in str(got.messages[0].content)
    done = await client.complete(
        PromptReference(type="ref/prompt", name="everything__completable-prompt"),
        {"name": "department", "value": "E"},
    )
    assert "Engineering" in done.completion.values


async def test_upstream_elicitation_is_declined_clearly(client: Client) -> None:
    """A handshake-era upstream's elicitation request is declined with a message saying so (documented)."""
    result = await client.call_tool("everything__trigger-elicitation-request", {})
    assert result.is_error
    assert "does not relay elicitation" in result.content[0].text  # type: ignore[union-attr]


def test_example_config_validates() -> None:
    """examples/everything.yaml is a valid config fronting the reference server and the demo."""
    settings = load_settings(ROOT / "examples/everything.yaml")
    assert [v.name for v in settings.virtual_servers] == ["everything", "demo", "all"]


async def test_single_upstream_decides_about_unlisted_uris() -> None:
    """With one upstream there is nothing to disambiguate: a URI it does not list still goes to it,
    so callers see exactly what they would see connected directly (here: subscribe accepts it)."""
    async with gateway(
        upstreams=[everything_upstream()],
        virtual_servers=[{"name": "solo", "upstreams": ["everything"], "namespacing": "none"}],
    ) as url:
        async with hold(Client(f"{url}/mcp/solo", mode="legacy")) as c:
            with pytest.warns(MCPDeprecationWarning):
                await c.session.subscribe_resource("test://not-listed-anywhere")
            with pytest.raises(MCPError) as err:
                await c.read_resource("test://not-listed-anywhere")
            assert (err.value.data or {}).get("reason") != "unknown_resource", "the upstream answered"


async def test_logging_is_not_relayed() -> None:
    """Upstream log messages travel on a connection shared by all callers and cannot be attributed to
    one of them, so Interlink does not offer `logging` (README): setLevel is method-not-found."""
    async with gateway(
        upstreams=[everything_upstream()],
        virtual_servers=[{"name": "solo", "upstreams": ["everything"], "namespacing": "none"}],
    ) as url:
        async with hold(Client(f"{url}/mcp/solo", mode="legacy")) as c:
            assert c.server_capabilities.logging is None
            with pytest.raises(MCPError) as err, warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await c.session.set_logging_level("info")
            assert err.value.code == METHOD_NOT_FOUND
