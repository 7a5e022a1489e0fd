"""A2A agents as MCP tools (`transport: a2a`), end to end: the official `mcp.Client` calls, through
Interlink's virtual server `tools`, the skills of a JavaScript agent (`@a2a-js/sdk`,
tests/a2a_js/agent.mjs) and of a Python agent (`a2a-sdk`, tests/a2a_py_agent.py), with tokens
Interlink issued. Covers the listing, text/data/file results, progress, input-required (elicitation
and continuation), forged and foreign continuations, failure and cancellation both ways, a dead
agent and a non-streaming one, the delegated credential, policy on both sides, and the two audit
records of a bridged call naming each other and the actor chain."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import CancelTaskRequest, ListTasksRequest, TaskState
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult, EmbeddedResource, ResourceLink
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.audit import AuditStore
from tests.a2a_py_agent import serve_agent
from tests.e2e.test_a2a_js_peers import JS_SDK, js_agent
from tests.support import bound_socket, gateway, hold, issued_token

SECRET = "bridge-secret"
WAIT_S = 20.0
A2A = "io.interlink/a2a"
REASON = "io.interlink/reason"

pytestmark = pytest.mark.skipif(
    not JS_SDK.is_file(), reason="@a2a-js/sdk not installed (npm ci --prefix tests/npm)"
)

POLICY = {
    "rules": [
        {
            "id": "bridge-tools",
            "effect": "permit",
            "principals": {"agents": ["caller", "other", "orchestrator", "narrow"]},
            "actions": ["tools/call"],
            "resources": ["mcp:tools/*"],
        },
        {
            "id": "no-reports-for-other",
            "effect": "forbid",
            "principals": {"agents": ["other"]},
            "actions": ["tools/call"],
            "resources": ["mcp:tools/py-tools__report"],
        },
        {
            "id": "agents",
            "effect": "permit",
            "principals": {"agents": ["caller", "other", "orchestrator"]},
            "actions": ["SendMessage"],
            "resources": ["a2a:py/*", "a2a:js/*"],
        },
    ]
}


class Recorder:
    """Keeps the Authorization header of every request the Python agent receives (the witness)."""

    seen: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Recorder.seen.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


def registration(client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": "team",
        "secret": {"value": SECRET},
        "audiences": ["mcp/tools"],
        "scopes": ["mcp", "a2a"],
        **extra,
    }


@dataclass
class Bridge:
    base: str
    py: str
    """The Python agent's base URL (only the test talks to it directly)."""
    audit_url: str

    async def token(self, client_id: str = "caller", scope: str = "mcp a2a") -> str:
        """A token for the virtual server; a bridged protected agent needs its `a2a` scope too."""
        return await issued_token(self.base, client_id, SECRET, "mcp/tools", scope)

    @asynccontextmanager
    async def client(self, token: str, **options: Any) -> AsyncIterator[Client]:
        """The official MCP client on the virtual server `tools`, with `token`."""
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=WAIT_S)
        transport = streamable_http_client(f"{self.base}/mcp/tools", http_client=http)
        async with http, hold(Client(transport, **options)) as client:
            yield client

    async def records(self) -> list[dict[str, Any]]:
        async with AuditStore.open(self.audit_url) as store, asyncio.timeout(WAIT_S):
            return [r.record() async for r in store.records("main")]


@pytest.fixture(scope="module")
def js_url() -> Iterator[str]:
    with js_agent() as url:
        yield url


@pytest.fixture
async def bridge(js_url: str, tmp_path: Path) -> AsyncIterator[Bridge]:
    Recorder.seen = []
    async with serve_agent(middleware=[Middleware(Recorder)]) as py:
        audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"

        def agent(name: str, url: str) -> dict[str, Any]:
            return {
                "name": name,
                "card_url": f"{url}/.well-known/agent-card.json",
                "allow_private_network": True,
                "timeout_s": 10,
                "auth": {"kind": "interlink", "scopes": ["agent.tasks"]},
            }

        async with gateway(
            a2a_agents=[agent("py", py), agent("js", js_url)],
            upstreams=[
                {"name": "py-tools", "transport": "a2a", "agent": "py"},
                {"name": "js-tools", "transport": "a2a", "agent": "js", "skills": ["echo", "stream", "ask"]},
            ],
            virtual_servers=[{"name": "tools", "upstreams": ["py-tools", "js-tools"], "public": False}],
            identity={
                "agents": [
                    registration("caller"),
                    registration("other"),
                    registration("narrow"),
                    registration("user"),
                    registration("orchestrator", may_act_for=["user"]),
                ]
            },
            policy=POLICY,
            audit={"database_url": audit_url},
        ) as base:
            yield Bridge(base, py, audit_url)


def texts(result: CallToolResult) -> list[str]:
    return [getattr(c, "text", "") for c in result.content]


def a2a_meta(result: CallToolResult) -> dict[str, Any]:
    return dict((result.meta or {})[A2A])


# -- listing ----------------------------------------------------------------------------------------


async def test_skills_are_listed_as_tools_from_both_cards(bridge: Bridge) -> None:
    """Each selected card skill is a tool named `<upstream>__<skill>`, titled from the skill and the
    agent, with the one-message input schema; /readyz shows both bridges ready."""
    async with bridge.client(await bridge.token()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {n for n in tools if n.startswith("js-tools__")} == {
        "js-tools__echo",
        "js-tools__stream",
        "js-tools__ask",
    }
    assert {"py-tools__echo", "py-tools__slow", "py-tools__report", "py-tools__fail"} <= set(tools)
    echo = tools["js-tools__echo"]
    assert echo.title == "Echo (js-helpdesk)"
    assert echo.description is not None and "'echo hello'" in echo.description
    assert echo.input_schema["required"] == ["text"]
    assert set(echo.input_schema["properties"]) == {"text", "data", "context_id"}
    async with httpx.AsyncClient() as http:
        ready = (await http.get(f"{bridge.base}/readyz")).json()
    states = {u["name"]: u["state"] for u in ready["upstreams"]}
    assert states == {"py-tools": "ready", "js-tools": "ready"}


# -- results ----------------------------------------------------------------------------------------


async def test_js_agent_streams_progress_and_text(bridge: Bridge) -> None:
    """The JavaScript agent's streamed status updates reach the MCP client as progress notifications;
    its artifact chunks and final message become text content."""
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        echoed = await client.call_tool("js-tools__echo", {"text": "echo hello from MCP"})
        streamed = await client.call_tool(
            "js-tools__stream", {"text": "stream 3"}, progress_callback=on_progress
        )
    assert not echoed.is_error and texts(echoed)[:2] == ["hello from MCP", "done"]
    assert a2a_meta(echoed)["state"] == "TASK_STATE_COMPLETED" and a2a_meta(echoed)["agent"] == "js"
    assert texts(streamed)[:4] == ["chunk 1", "chunk 2", "chunk 3", "streamed 3"]
    assert [m for _v, m in seen] == ["working", "step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert [v for v, _m in seen] == [1, 2, 3, 4]


async def test_data_file_and_link_artifacts(bridge: Bridge) -> None:
    """A data part becomes structured content (and its JSON as text), a file with bytes an embedded
    resource, a file with a URL a resource link; structured input travels as a data part."""
    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        result = await client.call_tool("py-tools__report", {"text": "report", "data": {"year": 2026}})
    assert not result.is_error
    assert result.structured_content == {"total": 42, "items": [1, 2]}
    assert json.loads(texts(result)[0]) == {"total": 42, "items": [1, 2]}
    embedded = [c for c in result.content if isinstance(c, EmbeddedResource)]
    links = [c for c in result.content if isinstance(c, ResourceLink)]
    assert len(embedded) == 1 and getattr(embedded[0].resource, "text", None) == "a,b\n1,2\n"
    assert embedded[0].resource.mime_type == "text/csv" and str(embedded[0].resource.uri).endswith(
        "/report.csv"
    )
    assert [(str(link.uri), link.name) for link in links] == [
        ("https://example.com/report.pdf", "report.pdf")
    ]


# -- input-required ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("tool", "mode"), [("js-tools__ask", "auto"), ("py-tools__ask", "legacy")])
async def test_input_required_becomes_elicitation(bridge: Bridge, tool: str, mode: str) -> None:
    """A caller that can answer elicitations is asked the agent's question (2026-07-28: an
    InputRequiredResult the client answers and retries; 2025-11-25: a real elicitation/create the
    gateway sends), and the answer goes to the waiting task."""
    asked: list[str] = []

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"reply": "Ada"})

    async with bridge.client(await bridge.token(), mode=mode, elicitation_callback=answer) as client:
        async with asyncio.timeout(WAIT_S):
            result = await client.call_tool(tool, {"text": "ask"})
    assert asked == ["what is your name?"]
    assert not result.is_error and texts(result)[0] == "thanks, Ada"


async def test_declined_elicitation_cancels_the_task(bridge: Bridge) -> None:
    """Declining the question ends the call as a tool error and cancels the agent's waiting task."""

    async def decline(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="decline")

    async with bridge.client(await bridge.token(), elicitation_callback=decline) as client:
        async with asyncio.timeout(WAIT_S):
            result = await client.call_tool("py-tools__ask", {"text": "ask"})
    assert result.is_error and (result.meta or {})[REASON] == "input_declined"
    assert await downstream_states(bridge.py) == [TaskState.TASK_STATE_CANCELED]
    cancels = [r for r in await bridge.records() if r["event"] == "a2a.CancelTask"]
    assert [(r["actor"]["agent"], r["target"]["server"], r["target"]["name"]) for r in cancels] == [
        ("caller", "py", "ask")
    ]
    assert cancels[0]["outcome"]["status"] == "ok"


async def test_a_refusal_by_the_agent_is_an_error_on_both_sides(bridge: Bridge) -> None:
    """Answering a task that ended meanwhile: the agent refuses (a JSON-RPC error); the caller gets
    a tool error `downstream_error` and the A2A record of the message is an error, not ok."""
    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        asked = await client.call_tool("py-tools__ask", {"text": "ask"})
        async with httpx.AsyncClient(timeout=WAIT_S) as http:
            card = await A2ACardResolver(http, bridge.py).get_agent_card()
            direct = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            (task,) = (await direct.list_tasks(ListTasksRequest())).tasks
            await direct.cancel_task(CancelTaskRequest(id=task.id))
        answer = {"text": "Ada", "context_id": a2a_meta(asked)["context_id"]}
        refused = await client.call_tool("py-tools__ask", answer)
    assert refused.is_error and (refused.meta or {})[REASON] == "downstream_error"
    results = [r for r in await bridge.records() if r["event"] == "a2a.SendMessage.result"]
    assert [r["outcome"]["status"] for r in results] == ["ok", "error"]
    assert results[-1]["outcome"]["reason"] == "downstream_error"


async def test_input_required_continuation_is_bound_to_its_caller(bridge: Bridge) -> None:
    """Without elicitation the result tells the model how to answer (same tool, `context_id`); the
    continuation works for its caller only: another caller, another agent's tool, or a forged one
    is refused as invalid arguments, and nothing reaches the agent."""
    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        asked = await client.call_tool("js-tools__ask", {"text": "ask"})
        token = a2a_meta(asked)["context_id"]
        assert not asked.is_error and a2a_meta(asked)["state"] == "TASK_STATE_INPUT_REQUIRED"
        assert texts(asked)[0] == "what is your name?"
        assert "js-tools__ask" in texts(asked)[-1] and f'context_id="{token}"' in texts(asked)[-1]
        on_other_agent = await client.call_tool("py-tools__ask", {"text": "Grace", "context_id": token})
        forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
        tampered = await client.call_tool("js-tools__ask", {"text": "Grace", "context_id": forged})
        raw = await client.call_tool("js-tools__ask", {"text": "Grace", "context_id": "ctx-123"})
    async with bridge.client(await bridge.token("other")) as thief, asyncio.timeout(WAIT_S):
        stolen = await thief.call_tool("js-tools__ask", {"text": "Mallory", "context_id": token})
    for refused in (on_other_agent, tampered, raw, stolen):
        assert refused.is_error and (refused.meta or {})[REASON] == "invalid_arguments", refused
        assert "Mallory" not in json.dumps(refused.model_dump())
    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        done = await client.call_tool("js-tools__ask", {"text": "Grace", "context_id": token})
        assert not done.is_error and texts(done)[0] == "thanks, Grace"
        follow = a2a_meta(done)["context_id"]  # the conversation goes on in the same context
        again = await client.call_tool("js-tools__echo", {"text": "echo more", "context_id": follow})
    assert not again.is_error and texts(again)[0] == "more"


async def test_data_a_data_part_cannot_carry_is_invalid_arguments(bridge: Bridge) -> None:
    """An integer beyond a double (JSON allows it; a protobuf Value does not) is an invalid-arguments
    tool error, recorded as such, and nothing reaches the agent."""
    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        result = await client.call_tool("py-tools__echo", {"text": "echo n", "data": {"n": 10**309}})
    assert result.is_error and (result.meta or {})[REASON] == "invalid_arguments"
    assert "data" in texts(result)[0]
    assert not [h for h in Recorder.seen if h.startswith("Bearer ")]
    records = await bridge.records()
    outcome = [r["outcome"] for r in records if r["event"].startswith("mcp.tools/call")][-1]
    assert (outcome["status"], outcome["reason"]) == ("denied", "invalid_arguments")
    assert not [r for r in records if r["event"].startswith("a2a.")]


# -- failure and cancellation -----------------------------------------------------------------------


async def test_failed_task_is_a_tool_error(bridge: Bridge) -> None:
    """FAILED downstream: an `isError` result with the agent's message and reason downstream_failed."""
    async with bridge.client(await bridge.token()) as client, asyncio.timeout(WAIT_S):
        result = await client.call_tool("py-tools__fail", {"text": "fail"})
    assert result.is_error and "failed on purpose" in texts(result)
    assert (result.meta or {})[REASON] == "downstream_failed"


async def downstream_states(py: str) -> list[int]:
    """The states of every task the Python agent holds (asked directly; it has no auth)."""
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        card = await A2ACardResolver(http, py).get_agent_card()
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        return [t.status.state for t in (await client.list_tasks(ListTasksRequest())).tasks]


async def test_caller_cancelling_cancels_the_downstream_task(bridge: Bridge) -> None:
    """The MCP caller abandoning the call (notifications/cancelled) makes Interlink cancel the
    agent's task (CancelTask)."""
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with bridge.client(await bridge.token()) as client:
        call = asyncio.create_task(
            client.call_tool("py-tools__slow", {"text": "slow"}, progress_callback=on_progress)
        )
        async with asyncio.timeout(WAIT_S):
            await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(WAIT_S):
            while await downstream_states(bridge.py) != [TaskState.TASK_STATE_CANCELED]:
                await asyncio.sleep(0.05)


async def test_downstream_cancel_is_a_tool_error(bridge: Bridge) -> None:
    """A task cancelled at the agent ends the MCP call as an `isError` result, reason downstream_canceled."""
    async with bridge.client(await bridge.token()) as client:
        call = asyncio.create_task(client.call_tool("py-tools__slow", {"text": "slow"}))
        async with httpx.AsyncClient(timeout=WAIT_S) as http, asyncio.timeout(WAIT_S):
            card = await A2ACardResolver(http, bridge.py).get_agent_card()
            direct = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            while not (tasks := (await direct.list_tasks(ListTasksRequest())).tasks):
                await asyncio.sleep(0.05)
            await direct.cancel_task(CancelTaskRequest(id=tasks[0].id))
            result = await call
    assert result.is_error and (result.meta or {})[REASON] == "downstream_canceled"
    assert a2a_meta(result)["state"] == "TASK_STATE_CANCELED"


# -- identity, policy, audit ------------------------------------------------------------------------


async def test_delegation_policy_and_audit_on_both_sides(bridge: Bridge) -> None:
    """An orchestrator acting for a user (token exchange) calls a bridged tool: the agent receives
    Interlink's token (subject: the user; `act`: Interlink, then the orchestrator), never the
    caller's; the MCP record names `a2a:py/echo` and the A2A record `mcp:tools/py-tools__echo`, both
    with the full actor chain. A caller the MCP policy permits but the A2A policy does not is
    refused, and the agent never sees the message."""
    user = await issued_token(bridge.base, "user", SECRET, "mcp/tools", "mcp a2a")
    async with httpx.AsyncClient() as http:
        exchanged = await http.post(
            f"{bridge.base}/oauth2/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": user,
                "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "resource": f"{bridge.base}/mcp/tools",
            },
            auth=("orchestrator", SECRET),
        )
    assert exchanged.status_code == 200, exchanged.text
    acting = exchanged.json()["access_token"]
    async with bridge.client(acting) as client, asyncio.timeout(WAIT_S):
        result = await client.call_tool("py-tools__echo", {"text": "echo delegated"})
    assert texts(result)[0] == "delegated"
    sent = [h for h in Recorder.seen if h.startswith("Bearer ")]
    assert sent and all(acting not in h and user not in h for h in Recorder.seen)
    claims = json.loads(base64.urlsafe_b64decode(sent[-1].split(".")[1] + "=="))
    assert (claims["sub"], claims["client_id"]) == ("user", "interlink")
    assert claims["act"] == {"sub": "interlink", "act": {"sub": "orchestrator"}}

    narrow = await bridge.token("narrow")
    seen_before = len(Recorder.seen)
    async with bridge.client(narrow) as client, asyncio.timeout(WAIT_S):
        with pytest.raises(MCPError) as denied:
            await client.call_tool("py-tools__echo", {"text": "echo sneaky"})
    assert denied.value.error.data["reason"] == "policy_denied"
    assert len(Recorder.seen) == seen_before

    records = await bridge.records()
    calls = [r for r in records if r["event"] in ("mcp.tools/call", "a2a.SendMessage")]
    mcp_call, a2a_send = calls[0], calls[1]
    assert mcp_call["target"]["name"] == "py-tools__echo" and mcp_call["target"]["bridge"] == "a2a:py/echo"
    assert a2a_send["target"]["name"] == "echo" and a2a_send["target"]["bridge"] == "mcp:tools/py-tools__echo"
    assert a2a_send["target"]["protocol"] == "a2a" and a2a_send["target"]["server"] == "py"
    for record in (mcp_call, a2a_send):
        actor = record["actor"]
        assert (actor["agent"], actor.get("subject"), actor["act"]) == (
            "orchestrator",
            "user",
            ["orchestrator"],
        )
        assert record["decision"]["effect"] == "allow"
    refused = [r for r in records if r["actor"].get("agent") == "narrow" and r["event"] == "a2a.SendMessage"]
    assert [(r["decision"]["effect"], r["target"]["bridge"]) for r in refused] == [
        ("deny", "mcp:tools/py-tools__echo")
    ]


async def test_a_token_without_the_agents_scopes_is_refused(bridge: Bridge) -> None:
    """A protected agent needs its `required_scopes` (here `a2a`) on the caller's token, bridged or
    not: a token for the virtual server with `mcp` only is refused (`policy_denied`, naming the
    scope), Interlink mints no credential and the agent sees nothing, and the A2A record says why.
    The agent's tools are not even listed to such a caller (lists show only what may be used)."""
    async with bridge.client(await bridge.token(scope="mcp")) as client, asyncio.timeout(WAIT_S):
        listed = {t.name for t in (await client.list_tools()).tools}
        assert not [n for n in listed if n.startswith(("py-tools__", "js-tools__"))]
        with pytest.raises(MCPError) as denied:
            await client.call_tool("py-tools__echo", {"text": "echo without a2a"})
    assert denied.value.error.data["reason"] == "policy_denied"
    assert denied.value.error.data["required_scope"] == "a2a"
    assert not [h for h in Recorder.seen if h.startswith("Bearer ")]
    (refused,) = [r for r in await bridge.records() if r["event"].startswith("a2a.SendMessage")]
    assert (refused["decision"]["effect"], refused["decision"]["reason"]) == ("deny", "insufficient_scope")
    assert refused["outcome"]["status"] == "denied"
    assert (refused["actor"]["agent"], refused["target"]["bridge"]) == ("caller", "mcp:tools/py-tools__echo")


async def test_mcp_policy_hides_and_refuses_a_tool(bridge: Bridge) -> None:
    """A tool the MCP policy forbids is not listed and its call is refused before the A2A side."""
    async with bridge.client(await bridge.token("other")) as client, asyncio.timeout(WAIT_S):
        assert "py-tools__report" not in {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError) as denied:
            await client.call_tool("py-tools__report", {"text": "report"})
    assert denied.value.error.data["reason"] == "policy_denied"
    assert not [r for r in await bridge.records() if r["event"].startswith("a2a.SendMessage")]


# -- an agent that does not stream, and a dead one ----------------------------------------------------


async def test_blocking_slow_and_dead_agents() -> None:
    """An agent whose card says it does not stream is called blocking; a call longer than the
    upstream's `call_timeout_s` gives `upstream_timeout` and cancels the agent's task; an agent that
    is gone gives `upstream_unavailable` naming it (never its URL); an agent without a usable card
    lists no tools and shows in /readyz."""
    with bound_socket() as dead_sock:
        dead = f"http://127.0.0.1:{dead_sock.getsockname()[1]}"
        async with serve_agent() as py:

            def card(url: str, streaming: bool) -> dict[str, Any]:
                return {
                    "name": "plain",
                    "supportedInterfaces": [
                        {"url": f"{url}/a2a/jsonrpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
                    ],
                    "capabilities": {"streaming": streaming},
                    "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["echo"]}],
                }

            async with gateway(
                a2a_agents=[
                    {"name": "plain", "card": card(py, False), "public": True, "allow_private_network": True},
                    {"name": "live", "card": card(py, True), "public": True, "allow_private_network": True},
                    {"name": "dead", "card": card(dead, True), "public": True, "allow_private_network": True},
                    {"name": "nocard", "card_url": f"{dead}/.well-known/agent-card.json", "public": True},
                ],
                upstreams=[
                    {"name": "plain-tools", "transport": "a2a", "agent": "plain"},
                    {"name": "live-tools", "transport": "a2a", "agent": "live", "call_timeout_s": 1},
                    {"name": "dead-tools", "transport": "a2a", "agent": "dead"},
                    {"name": "nocard-tools", "transport": "a2a", "agent": "nocard"},
                ],
                virtual_servers=[
                    {"name": "v", "upstreams": ["plain-tools", "live-tools", "dead-tools", "nocard-tools"]}
                ],
            ) as base:
                async with hold(Client(f"{base}/mcp/v")) as client, asyncio.timeout(WAIT_S):
                    names = {t.name for t in (await client.list_tools()).tools}
                    result = await client.call_tool("plain-tools__echo", {"text": "echo blocking"})
                    with pytest.raises(MCPError) as gone:
                        await client.call_tool("dead-tools__echo", {"text": "echo anyone?"})
                    with pytest.raises(MCPError) as late:
                        await client.call_tool("live-tools__echo", {"text": "slow"})
                    assert late.value.error.data["reason"] == "upstream_timeout"
                    while TaskState.TASK_STATE_CANCELED not in await downstream_states(py):
                        await asyncio.sleep(0.05)
                async with httpx.AsyncClient() as http:
                    ready = (await http.get(f"{base}/readyz")).json()
    assert names == {"plain-tools__echo", "live-tools__echo", "dead-tools__echo"}
    assert texts(result)[:2] == ["blocking", "done"]
    assert gone.value.error.data["reason"] == "upstream_unavailable"
    assert "'dead'" in gone.value.error.message and dead not in json.dumps(gone.value.error.model_dump())
    states = {u["name"]: (u["state"], u["last_error"]) for u in ready["upstreams"]}
    assert states["plain-tools"] == ("ready", None)
    assert states["nocard-tools"][0] == "backoff" and "nocard" in (states["nocard-tools"][1] or "")
    assert dead not in json.dumps(ready)
