"""A2A agents as MCP tools (`transport: a2a`): the bridge's bounds, end to end with real agents on
the Python `a2a-sdk` behind Interlink and the official `mcp.Client`. An agent flooding artifact
chunks is cut off (`downstream_response_too_large`) and its task cancelled; a failure that opens
the agent's circuit still cancels the downstream task; waiting for a free concurrency slot is not
held against the agent; the bridge's own CancelTask calls are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    ListTasksRequest,
    Part,
    TaskState,
)
from mcp import Client
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette

from adapters.bridge.exchange import MAX_RESPONSE_BYTES, MAX_RESPONSE_PARTS
from gateway.audit import AuditStore
from tests.a2a_py_agent import serve_agent
from tests.support import bound_socket, gateway, hold, serve

WAIT_S = 30.0
REASON = "io.interlink/reason"
CHUNK = 256 * 1024
FLOOD_END_S = 10.0
"""The flooding agent completes this long after its last chunk (unless cancelled)."""


class FloodExecutor(AgentExecutor):
    """ "bytes": 256 KiB text chunks appended to one artifact, "parts": one-letter chunks; either
    some beyond the bridge's bound, then COMPLETED `FLOOD_END_S` later (an unbounded bridge would
    return all of it)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None and context_id is not None
        await event_queue.enqueue_event(new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED))
        up = TaskUpdater(event_queue, task_id, context_id)
        await up.start_work()
        if context.get_user_input().strip() == "bytes":
            chunk, count = "x" * CHUNK, MAX_RESPONSE_BYTES // CHUNK + 8
        else:
            chunk, count = "y", MAX_RESPONSE_PARTS + 50
        for i in range(count):
            await up.add_artifact([Part(text=chunk)], artifact_id="flood", append=i > 0)
            await asyncio.sleep(0.001)
        await asyncio.sleep(FLOOD_END_S)  # still working when the bridge cancels (CancelTask ends this)
        await up.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


@asynccontextmanager
async def flood_agent() -> AsyncIterator[str]:
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    card = AgentCard(
        name="flood",
        description="Answers too much.",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"{base}/a2a/jsonrpc", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="flood", name="Flood", description="too much", tags=["flood"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=FloodExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/a2a/jsonrpc")]
    async with serve(Starlette(routes=routes), sock) as url:
        yield url


async def downstream_states(url: str) -> list[int]:
    """The states of every task the agent at `url` holds (asked directly; it has no auth)."""
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        return [t.status.state for t in (await client.list_tasks(ListTasksRequest())).tasks]


async def until_canceled(url: str, count: int = 1) -> None:
    """Wait (bounded) until `count` of the agent's tasks are CANCELED."""
    async with asyncio.timeout(WAIT_S):
        while (await downstream_states(url)).count(TaskState.TASK_STATE_CANCELED) < count:
            await asyncio.sleep(0.05)


async def records(audit_url: str) -> list[dict[str, Any]]:
    async with AuditStore.open(audit_url) as store, asyncio.timeout(WAIT_S):
        return [r.record() async for r in store.records("main")]


def agent(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "card_url": f"{url}/.well-known/agent-card.json",
        "allow_private_network": True,
        "public": True,
        **extra,
    }


@pytest.mark.parametrize("flood", ["bytes", "parts"])
async def test_a_flooding_agent_is_cut_off(flood: str, tmp_path: Path) -> None:
    """Past MAX_RESPONSE_BYTES (or MAX_RESPONSE_PARTS) of artifacts the call ends as a tool error
    `downstream_response_too_large`, the agent's task is cancelled (a recorded CancelTask), and the
    A2A record of the message is an error with that reason."""
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with (
        flood_agent() as url,
        gateway(
            a2a_agents=[agent("flood", url, timeout_s=10)],
            upstreams=[{"name": "f", "transport": "a2a", "agent": "flood"}],
            virtual_servers=[{"name": "v", "upstreams": ["f"]}],
            audit={"database_url": audit_url},
        ) as base,
        hold(Client(f"{base}/mcp/v")) as client,
    ):
        async with asyncio.timeout(WAIT_S):
            result = await client.call_tool("f__flood", {"text": flood})
        await until_canceled(url)
    assert result.is_error and (result.meta or {})[REASON] == "downstream_response_too_large"
    assert sum(len(getattr(c, "text", "")) for c in result.content) < 1000
    kept = await records(audit_url)
    (sent,) = [r for r in kept if r["event"] == "a2a.SendMessage.result"]
    assert (sent["outcome"]["status"], sent["outcome"]["reason"]) == (
        "error",
        "downstream_response_too_large",
    )
    (canceled,) = [r for r in kept if r["event"] == "a2a.CancelTask"]
    assert (canceled["target"]["name"], canceled["outcome"]["status"]) == ("flood", "ok")


async def test_breaker_and_slots_do_not_keep_tasks_or_blame_the_agent(tmp_path: Path) -> None:
    """A timeout that opens the agent's circuit (one failure opens it) still cancels the downstream
    task; a call that finds no free slot (max_concurrency 1, held by a streaming call) times out
    without counting against the agent: its circuit stays closed and /readyz shows it ready."""
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with (
        serve_agent() as py,
        gateway(
            a2a_agents=[
                agent("brittle", py, circuit_failures=1),
                agent("busy", py, circuit_failures=1, max_concurrency=1, timeout_s=1),
            ],
            upstreams=[
                {"name": "brittle-tools", "transport": "a2a", "agent": "brittle", "call_timeout_s": 1},
                {"name": "busy-tools", "transport": "a2a", "agent": "busy"},
            ],
            virtual_servers=[{"name": "v", "upstreams": ["brittle-tools", "busy-tools"]}],
            audit={"database_url": audit_url},
        ) as base,
        hold(Client(f"{base}/mcp/v")) as client,
        httpx.AsyncClient(timeout=WAIT_S) as http,
    ):
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(MCPError) as late:
                await client.call_tool("brittle-tools__slow", {"text": "slow"})
            assert late.value.error.data["reason"] == "upstream_timeout"
            states = {u["name"]: u["state"] for u in (await http.get(f"{base}/readyz")).json()["upstreams"]}
            assert states["brittle-tools"] == "backoff"  # the circuit is open...
        await until_canceled(py)  # ...and the task was cancelled all the same

        started = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            started.set()

        holder = asyncio.create_task(
            client.call_tool("busy-tools__stream", {"text": "stream 1000"}, progress_callback=on_progress)
        )
        try:
            async with asyncio.timeout(WAIT_S):
                await started.wait()
                with pytest.raises(MCPError) as waited:
                    await client.call_tool("busy-tools__echo", {"text": "echo me too"})
                ready = (await http.get(f"{base}/readyz")).json()["upstreams"]
        finally:
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder
        await until_canceled(py, 2)
    assert {u["name"]: u["state"] for u in ready}["busy-tools"] == "ready"  # no failure recorded
    assert waited.value.error.data["reason"] == "upstream_timeout"
    assert "concurrency limit" in waited.value.error.message
    cancels = [r["target"]["name"] for r in await records(audit_url) if r["event"] == "a2a.CancelTask"]
    assert cancels == ["slow", "stream"]
