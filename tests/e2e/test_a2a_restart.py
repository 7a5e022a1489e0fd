"""A2A tasks outlive the gateway process: tasks created through Interlink on a SQLite file database
are still reachable after the gateway stops and a new one starts on the same file (GetTask,
ListTasks, and CancelTask forwarded to the agent that still runs the task)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)

from tests.a2a_py_agent import serve_agent
from tests.support import gateway, issued_token

SECRET = "restart-secret"


def message(text: str) -> Message:
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


async def client_of(base: str) -> tuple[Any, httpx.AsyncClient]:
    token = await issued_token(base, "caller", SECRET, "a2a/helpdesk", "a2a")
    http = httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30)
    card = await A2ACardResolver(http, f"{base}/a2a/helpdesk").get_agent_card()
    return ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card), http


async def test_tasks_survive_a_gateway_restart(tmp_path: Path) -> None:
    """Stop the gateway with a completed task (the blocking relay) and a working one (`slow`), start
    another on the same database: both are found and listed, and cancelling the working one reaches
    the agent."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}"
    async with serve_agent() as downstream:
        settings: dict[str, Any] = {
            "a2a_agents": [
                {
                    "name": "helpdesk",
                    "card_url": f"{downstream}/.well-known/agent-card.json",
                    "allow_private_network": True,
                }
            ],
            "identity": {
                "database_url": database,
                "agents": [
                    {
                        "client_id": "caller",
                        "name": "caller",
                        "owner": "team",
                        "secret": {"value": SECRET},
                        "audiences": ["a2a/helpdesk"],
                        "scopes": ["a2a"],
                    }
                ],
            },
        }
        async with gateway(**settings) as first:
            client, http = await client_of(first)
            async with aclosing(http):
                done = [
                    e async for e in client.send_message(SendMessageRequest(message=message("echo kept")))
                ]
                completed = done[-1].task
                assert completed.status.state == TaskState.TASK_STATE_COMPLETED
                request = SendMessageRequest(
                    message=message("slow"), configuration=SendMessageConfiguration(return_immediately=True)
                )
                working = [e async for e in client.send_message(request)][-1].task
                async with asyncio.timeout(10):
                    while (
                        "interlink.downstream"
                        not in (seen := await client.get_task(GetTaskRequest(id=working.id))).metadata
                    ):
                        await asyncio.sleep(0.05)
                downstream_id = seen.metadata["interlink.downstream"]["task_id"]

        async with gateway(**settings) as second:
            client, http = await client_of(second)
            async with aclosing(http):
                kept = await client.get_task(GetTaskRequest(id=completed.id))
                assert kept.status.state == TaskState.TASK_STATE_COMPLETED
                assert kept.artifacts[0].parts[0].text == "kept"
                assert kept.history[0].parts[0].text == "echo kept"
                listed = {t.id for t in (await client.list_tasks(ListTasksRequest())).tasks}
                assert {completed.id, working.id} <= listed
                still = await client.get_task(GetTaskRequest(id=working.id))
                assert still.status.state == TaskState.TASK_STATE_WORKING
                canceled = await client.cancel_task(CancelTaskRequest(id=working.id))
                assert canceled.status.state == TaskState.TASK_STATE_CANCELED
                again = await client.get_task(GetTaskRequest(id=working.id))
                assert again.status.state == TaskState.TASK_STATE_CANCELED

        async with httpx.AsyncClient(timeout=10) as direct:
            card = await A2ACardResolver(direct, downstream).get_agent_card()
            agent = ClientFactory(ClientConfig(streaming=False, httpx_client=direct)).create(card)
            there = await agent.get_task(GetTaskRequest(id=downstream_id))
    assert there.status.state == TaskState.TASK_STATE_CANCELED
