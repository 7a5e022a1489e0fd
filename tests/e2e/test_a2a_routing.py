"""The aggregate A2A endpoint `/a2a`: Interlink's own card, routing by skill (explicit, by rule, by
card), ordered fallback past a dead agent, the circuit breaker in /readyz, follow-ups and cancel on
the agent that holds the task, per-caller extended card, policy per routed agent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
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

from tests.a2a_py_agent import serve_agent
from tests.support import bound_socket, gateway, issued_token

SECRET = "routing-secret"
POLICY = {
    "rules": [
        {
            "id": "first-and-dead",
            "effect": "permit",
            "actions": ["SendMessage"],
            "resources": ["a2a:first/*", "a2a:dead/*"],
        }
    ]
}


@dataclass
class Routed:
    base: str
    client: Any
    http: httpx.AsyncClient


def message(text: str, skill: str | None = None, task_id: str = "", context_id: str = "") -> Message:
    msg = Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )
    if skill:
        meta = struct_pb2.Struct()
        meta.update({"skill": skill})
        msg.metadata.CopyFrom(meta)
    return msg


@pytest.fixture
async def routed() -> AsyncIterator[Routed]:
    with bound_socket() as closed:
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        dead_card = {
            "name": "dead",
            "supportedInterfaces": [
                {"url": f"{dead_url}/a2a/jsonrpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ],
            "skills": [{"id": "echo", "name": "Echo", "description": "never answers", "tags": []}],
        }
        async with serve_agent() as first, serve_agent() as second:
            agents = [
                {"name": "dead", "card": dead_card, "circuit_failures": 2, "circuit_cooldown_s": 60}
                | {"allow_private_network": True},  # a loopback interface
                {
                    "name": "first",
                    "card_url": f"{first}/.well-known/agent-card.json",
                    "allow_private_network": True,
                },
                {
                    "name": "second",
                    "card_url": f"{second}/.well-known/agent-card.json",
                    "allow_private_network": True,
                },
            ]
            registration = {
                "client_id": "caller",
                "name": "caller",
                "owner": "team",
                "secret": {"value": SECRET},
                "audiences": ["a2a"],
                "scopes": ["a2a"],
            }
            async with gateway(
                a2a_agents=agents,
                a2a_routes=[{"skills": ["echo"], "agents": ["dead", "first"]}],
                identity={"agents": [registration]},
                policy=POLICY,
            ) as base:
                token = await issued_token(base, "caller", SECRET, "a2a", "a2a")
                http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
                async with aclosing(http):
                    card = await A2ACardResolver(http, base).get_agent_card()
                    client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
                    yield Routed(base, client, http)


async def send(r: Routed, msg: Message, **config: Any) -> Any:
    request = SendMessageRequest(message=msg)
    if config:
        request.configuration.CopyFrom(SendMessageConfiguration(**config))
    return [e async for e in r.client.send_message(request)][-1].task


async def test_own_card_lists_every_agents_skills(routed: Routed) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{routed.base}/.well-known/agent-card.json")).json()
    assert card["name"] == "Interlink"
    assert card["supportedInterfaces"][0]["url"] == f"{routed.base}/a2a"
    ids = {s["id"] for s in card["skills"]}
    assert {"dead/echo", "first/echo", "first/stream", "second/echo"} <= ids
    assert card["capabilities"]["extendedAgentCard"] is True


async def test_fallback_past_a_dead_agent_then_circuit_opens(routed: Routed) -> None:
    for _ in range(2):
        task = await send(routed, message("echo hi", skill="echo"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.metadata["interlink.agent"] == "first"
        assert task.artifacts[0].parts[0].text == "hi"
    ready = (await routed.http.get(f"{routed.base}/readyz")).json()
    dead = next(a for a in ready["a2a_agents"] if a["name"] == "dead")
    assert dead["state"] == "circuit_open" and ready["status"] == "degraded"
    task = await send(routed, message("echo again", skill="echo"))  # dead is skipped at once now
    assert task.metadata["interlink.agent"] == "first"


async def test_explicit_route_is_decided_under_that_agents_policy(routed: Routed) -> None:
    task = await send(routed, message("echo direct", skill="first/echo"))
    assert task.metadata["interlink.agent"] == "first"
    with pytest.raises(A2AError) as err:
        await send(routed, message("echo nope", skill="second/echo"))
    assert "denied" in str(err.value)
    with pytest.raises(A2AError) as err:
        await send(routed, message("echo", skill="nobody-has-this"))
    assert "no available agent offers skill" in str(err.value)


async def test_follow_up_and_cancel_stay_with_the_holding_agent(routed: Routed) -> None:
    asked = await send(routed, message("ask", skill="first/ask"))
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    await send(routed, message("Ada", task_id=asked.id, context_id=asked.context_id))
    done = await routed.client.get_task(GetTaskRequest(id=asked.id))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert done.artifacts[-1].parts[0].text == "thanks, Ada"

    slow = await send(routed, message("slow", skill="first/slow"), return_immediately=True)
    async with asyncio.timeout(10):
        while (
            "interlink.downstream" not in (await routed.client.get_task(GetTaskRequest(id=slow.id))).metadata
        ):
            await asyncio.sleep(0.05)
    canceled = await routed.client.cancel_task(CancelTaskRequest(id=slow.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED


async def test_extended_card_shows_only_permitted_skills(routed: Routed) -> None:
    mine = await routed.client.get_extended_agent_card(GetExtendedAgentCardRequest())
    agents = {s.id.split("/")[0] for s in mine.skills}
    assert agents == {"first", "dead"}


def test_router_name_is_reserved() -> None:
    from gateway.settings import GatewaySettings

    with pytest.raises(ValueError, match="reserved"):
        GatewaySettings(a2a_agents=[{"name": "router", "card": {}}])
