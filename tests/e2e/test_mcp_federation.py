"""End to end: the official MCP client reaches several real upstreams through one virtual server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

from adapters.mcp.errors import RESOURCE_NOT_FOUND
from tests.support import hold

MODES = ["auto", "legacy"]
"""`auto` negotiates 2026-07-28 (stateless); `legacy` the 2025-11-25 initialize handshake."""


@pytest.fixture(params=MODES)
async def client(request: pytest.FixtureRequest, federation: str) -> AsyncIterator[Client]:
    async with hold(Client(f"{federation}/mcp/all", mode=request.param)) as c:
        yield c


async def test_tools_of_every_upstream_are_listed_with_namespaces(client: Client) -> None:
    """Tools of the stdio, HTTP and in-process upstreams appear once each, prefixed by upstream."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"stdio__echo", "stdio__search", "web__echo", "web__search", "demo__lookup_person"} <= names
    assert not any(n.endswith("__crash") for n in names), "excluded by the virtual server's filter"


async def test_calls_reach_the_right_upstream(client: Client) -> None:
    """The same tool name on two upstreams is told apart by its prefix and answered by its owner."""
    r1 = await client.call_tool("stdio__add", {"a": 2, "b": 3})
    r2 = await client.call_tool("demo__lookup_person", {"query": "grace"})
    assert r1.structured_content == {"result": 5}
    assert r2.structured_content is not None
    assert r2.structured_content["result"][0]["employee_id"] == "E101"


async def test_unknown_and_filtered_tools_are_invalid_params(client: Client) -> None:
    """An unknown tool, an unknown upstream prefix and a filtered-out tool all give -32602 unknown_tool."""
    for name in ("stdio__nope", "nobody__echo", "stdio__crash", "no_prefix"):
        with pytest.raises(MCPError) as err:
            await client.call_tool(name, {})
        assert err.value.code == INVALID_PARAMS
        assert err.value.data["reason"] == "unknown_tool"


async def test_wrong_argument_types_are_a_tool_error_before_the_upstream(client: Client) -> None:
    """Arguments that break the input schema come back as an isError result naming the field."""
    result = await client.call_tool("stdio__add", {"a": "2", "b": 3})
    assert result.is_error
    assert result.meta is not None and result.meta["io.interlink/reason"] == "invalid_arguments"
    assert "$.a" in result.content[0].text  # type: ignore[union-attr]


async def test_progress_is_forwarded(client: Client) -> None:
    """Upstream progress notifications reach the caller's progress callback in order."""
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    result = await client.call_tool("web__slow", {"seconds": 0.1}, progress_callback=on_progress)
    assert not result.is_error
    assert seen == ["step 1", "step 2", "step 3", "step 4"]


async def test_resources_templates_and_reads_are_federated(client: Client) -> None:
    """Resources and templates of all upstreams are listed and each read goes to the owner."""
    uris = {r.uri for r in (await client.list_resources()).resources}
    assert "test://readme" in uris
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert "directory://people/{employee_id}" in templates
    readme = await client.read_resource("test://readme")
    assert readme.contents[0].text == "test upstream readme"  # type: ignore[union-attr]
    person = await client.read_resource("directory://people/E102")
    assert "Alan Turing" in person.contents[0].text  # type: ignore[union-attr]


async def test_unknown_resource_is_resource_not_found(client: Client) -> None:
    """A URI no upstream serves gives MCP's resource-not-found code with reason unknown_resource."""
    with pytest.raises(MCPError) as err:
        await client.read_resource("nowhere://x")
    assert err.value.code == RESOURCE_NOT_FOUND
    assert err.value.data["reason"] == "unknown_resource"


async def test_prompts_and_completions_are_federated(client: Client) -> None:
    """Prompts are namespaced like tools; completions route by prompt name or template owner."""
    names = {p.name for p in (await client.list_prompts()).prompts}
    assert "demo__triage_ticket" in names
    prompt = await client.get_prompt("demo__triage_ticket", {"ticket_id": "T-0042"})
    assert "T-0042" in prompt.messages[0].content.text  # type: ignore[union-attr]
    done = await client.complete(
        ResourceTemplateReference(type="ref/resource", uri="directory://people/{employee_id}"),
        {"name": "employee_id", "value": "E10"},
    )
    assert done.completion.values == ["E100", "E101", "E102", "E103"]
    with pytest.raises(MCPError) as err:
        await client.complete(
            PromptReference(type="ref/prompt", name="nobody__x"), {"name": "a", "value": ""}
        )
    assert err.value.data["reason"] == "unknown_prompt"


async def test_health_and_readiness(federation: str) -> None:
    """/healthz is ok and /readyz lists every upstream with its state."""
    async with httpx2.AsyncClient(base_url=federation) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready: dict[str, Any] = (await http.get("/readyz")).json()
    states = {u["name"]: u["state"] for u in ready["upstreams"]}
    assert set(states) == {"stdio", "web", "demo"}
    assert ready["status"] in ("ok", "degraded")
