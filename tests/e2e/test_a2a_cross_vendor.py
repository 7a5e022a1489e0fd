"""Cross-vendor A2A 1.0 through Interlink: each SDK on one side of the gateway, the other behind it.

- The JavaScript agent (`@a2a-js/sdk`, tests/a2a_js/agent.mjs) proxied at `/a2a/jsdesk`, driven by the
  Python a2a-sdk client with an Interlink token: blocking, streaming, multi-turn, cancel (reaching the
  JS agent's own task), failure, artifacts.
- The Python a2a-sdk agent (tests/a2a_py_agent.py) proxied at `/a2a/pydesk`, driven by the JavaScript
  client (tests/a2a_js/client.mjs) with an Interlink token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text, get_message_text
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Task,
    TaskState,
)

from tests.a2a_py_agent import serve_agent
from tests.e2e import test_a2a_js_peers as js_peers
from tests.support import gateway, issued_token

pytestmark = js_peers.pytestmark  # skipped, with the reason, without node or @a2a-js/sdk

SECRET = "a2a-cross-vendor-secret"
CALL_TIMEOUT_S = 30.0
DOWNSTREAM_KEY = "interlink.downstream"


@dataclass
class Gateway:
    base: str
    agent: str
    downstream: str

    async def token(self) -> str:
        return await issued_token(self.base, "caller", SECRET, f"a2a/{self.agent}", "a2a")

    @asynccontextmanager
    async def client(self, *, streaming: bool) -> AsyncIterator[Client]:
        """The Python SDK's client to Interlink's `/a2a/<agent>`, from the card Interlink serves."""
        headers = {"authorization": f"Bearer {await self.token()}"}
        async with httpx.AsyncClient(headers=headers, timeout=CALL_TIMEOUT_S) as http:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                card = await A2ACardResolver(http, f"{self.base}/a2a/{self.agent}").get_agent_card()
            yield ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)


@asynccontextmanager
async def interlink(agent: str, downstream: str) -> AsyncIterator[Gateway]:
    async with gateway(
        a2a_agents=[
            {
                "name": agent,
                "card_url": f"{downstream}/.well-known/agent-card.json",
                "allow_private_network": True,
                "timeout_s": CALL_TIMEOUT_S,
            }
        ],
        identity={
            "agents": [
                {
                    "client_id": "caller",
                    "name": "caller",
                    "owner": "team",
                    "secret": {"value": SECRET},
                    "audiences": [f"a2a/{agent}"],
                    "scopes": ["a2a"],
                }
            ]
        },
    ) as base:
        yield Gateway(base, agent, downstream)


request, send, only_task = js_peers.request, js_peers.send, js_peers.only_task
"""The same message helpers as the peers' own tests."""


def downstream_id(task: Task) -> str:
    return str(task.metadata[DOWNSTREAM_KEY]["task_id"])


# --- the Python client, through Interlink, to the JavaScript agent -------------------------------------


@pytest.fixture(scope="module")
def js_agent_url() -> Iterator[str]:
    with js_peers.js_agent() as url:
        yield url


@pytest.fixture
async def jsdesk(js_agent_url: str) -> AsyncIterator[Gateway]:
    async with interlink("jsdesk", js_agent_url) as face:
        yield face


async def test_card_names_interlink_not_the_js_agent(jsdesk: Gateway) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(CALL_TIMEOUT_S):
        card = await A2ACardResolver(http, f"{jsdesk.base}/a2a/jsdesk").get_agent_card()
    assert card.name == "js-helpdesk" and {s.id for s in card.skills} >= {"echo", "stream", "ask"}
    urls = {i.protocol_binding: i.url for i in card.supported_interfaces}
    assert urls["JSONRPC"] == f"{jsdesk.base}/a2a/jsdesk"
    assert all(url.startswith(f"{jsdesk.base}/a2a/jsdesk") for url in urls.values()), urls


async def test_blocking_echo(jsdesk: Gateway) -> None:
    async with jsdesk.client(streaming=False) as client:
        task = only_task(await send(client, request("echo hello from python")))
        stored = await client.get_task(GetTaskRequest(id=task.id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert get_message_text(task.status.message) == "done"
    assert [(a.artifact_id, get_artifact_text(a)) for a in task.artifacts] == [("echo", "hello from python")]
    assert downstream_id(task) != task.id  # Interlink's task, mapped to the JS agent's
    assert stored.status.state == TaskState.TASK_STATE_COMPLETED
    assert [get_artifact_text(a) for a in stored.artifacts] == ["hello from python"]


async def test_streaming_with_interlinks_task_id(jsdesk: Gateway) -> None:
    async with jsdesk.client(streaming=True) as client:
        events = await send(client, request("stream 3"))
        stored = await client.get_task(GetTaskRequest(id=events[0].task.id))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status_update", kinds
    ours = events[0].task.id
    assert downstream_id(events[0].task) != ours
    assert all(getattr(e, k).task_id == ours for e, k in zip(events[1:], kinds[1:], strict=True))
    assert all(e.status_update.status.message.task_id == ours for e in events if e.HasField("status_update"))
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    assert [(get_artifact_text(c.artifact), c.append) for c in chunks] == [
        ("chunk 1", False),
        ("chunk 2", True),
        ("chunk 3", True),
    ]
    assert chunks[-1].last_chunk
    final = events[-1].status_update.status
    assert final.state == TaskState.TASK_STATE_COMPLETED and get_message_text(final.message) == "streamed 3"
    assert stored.status.state == TaskState.TASK_STATE_COMPLETED
    assert [(a.artifact_id, [p.text for p in a.parts]) for a in stored.artifacts] == [
        ("stream", ["chunk 1", "chunk 2", "chunk 3"])
    ]


@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
async def test_ask_then_answer(jsdesk: Gateway, streaming: bool) -> None:
    async with jsdesk.client(streaming=streaming) as client:
        asked_events = await send(client, request("ask"))
        asked = asked_events[0].task
        last = asked_events[-1]
        status = last.task.status if last.HasField("task") else last.status_update.status
        assert status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert get_message_text(status.message) == "what is your name?"

        await send(client, request("Ada", task=asked))
        done = await client.get_task(GetTaskRequest(id=asked.id))
    assert done.context_id == asked.context_id
    assert done.metadata[DOWNSTREAM_KEY] == asked.metadata[DOWNSTREAM_KEY]  # the same JS task
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert get_message_text(done.status.message) == "thanks, Ada"
    assert get_artifact_text(done.artifacts[-1]) == "thanks, Ada"


async def test_slow_then_cancel_reaches_the_js_agent(jsdesk: Gateway) -> None:
    async with jsdesk.client(streaming=False) as client:
        started = only_task(await send(client, request("slow", return_immediately=True)))
        async with asyncio.timeout(CALL_TIMEOUT_S):
            seen = started
            while DOWNSTREAM_KEY not in seen.metadata:
                await asyncio.sleep(0.05)
                seen = await client.get_task(GetTaskRequest(id=started.id))
        canceled = await client.cancel_task(CancelTaskRequest(id=started.id))
        again = await client.get_task(GetTaskRequest(id=started.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert again.status.state == TaskState.TASK_STATE_CANCELED

    async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as http:
        config = ClientConfig(streaming=False, httpx_client=http)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            card = await A2ACardResolver(http, jsdesk.downstream).get_agent_card()
            there = await ClientFactory(config).create(card).get_task(GetTaskRequest(id=downstream_id(seen)))
    assert there.status.state == TaskState.TASK_STATE_CANCELED
    assert get_message_text(there.status.message) == "cancelled"


async def test_fail(jsdesk: Gateway) -> None:
    async with jsdesk.client(streaming=False) as client:
        task = only_task(await send(client, request("fail")))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert get_message_text(task.status.message) == "failed on purpose"
    assert task.status.message.task_id == task.id


# --- the JavaScript client, through Interlink, to the Python agent -----------------------------------------


@pytest.fixture
async def pydesk() -> AsyncIterator[Gateway]:
    async with serve_agent() as downstream, interlink("pydesk", downstream) as face:
        yield face


def card_url(face: Gateway) -> str:
    return f"{face.base}/a2a/{face.agent}/.well-known/agent-card.json"


async def test_js_client_echo(pydesk: Gateway) -> None:
    out = await js_peers.run_js_client(
        "--url", card_url(pydesk), "--token", await pydesk.token(), "--text", "echo hello from js"
    )
    assert (out["kind"], out["protocolVersion"], out["state"]) == ("task", "1.0", "TASK_STATE_COMPLETED")
    assert out["artifacts"] == ["hello from js"] and out["statusMessage"] == "done"
    async with pydesk.client(streaming=False) as client:  # the id the JS client got is Interlink's
        stored = await client.get_task(GetTaskRequest(id=out["taskId"]))
    assert stored.context_id == out["contextId"] and downstream_id(stored) != out["taskId"]


async def test_js_client_stream(pydesk: Gateway) -> None:
    n = 4
    out = await js_peers.run_js_client(
        "--url", card_url(pydesk), "--token", await pydesk.token(), "--stream", "--text", f"stream {n}"
    )
    assert out["state"] == "TASK_STATE_COMPLETED" and out["statusMessage"] == f"streamed {n}"
    assert out["artifacts"] == ["".join(f"chunk {i}" for i in range(1, n + 1))]
    assert out["eventKinds"][0] == "task" and out["eventKinds"][-1] == "statusUpdate"
    assert out["eventKinds"].count("artifactUpdate") == n


async def test_js_client_without_a_token_is_refused(pydesk: Gateway) -> None:
    """The card is public; the call is not: the JS client reports Interlink's 401."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(js_peers.JS_CLIENT),
        "--url",
        card_url(pydesk),
        "--text",
        "echo hi",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=js_peers.ROOT,
    )
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            stdout, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert "401" in stdout.decode()
