"""Downstream A2A agents registered at run time (gateway/a2a_remote.py): through the admin API and
the `interlink agents-remote` CLI, against a real gateway and a real a2a-sdk agent; served like a
configured agent (token for `a2a/<name>`, policy, audit, RFC 9728, routing, /readyz), removed (404),
refused precisely when invalid, and kept across a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState

from gateway.audit import AuditStore
from gateway.cli import main as cli_main
from tests.a2a_py_agent import serve_agent
from tests.support import gateway, issued_token

ADMIN = "remote-admin-token"
POLICY = {
    "rules": [
        {
            "id": "dyn",
            "effect": "permit",
            "principals": {"agents": ["caller"]},
            "actions": ["SendMessage"],
            "resources": ["a2a:dyn/*", "a2a:open/*"],
        }
    ]
}


INLINE_METADATA = {
    "name": "m",
    "supportedInterfaces": [{"url": "http://169.254.169.254/latest/meta-data", "protocolBinding": "JSONRPC"}],
}
OAUTH = {
    "kind": "oauth_client_credentials",
    "token_url": "https://auth.example/token",
    "client_id": "interlink",
    "client_secret": {"env": "INTERLINK_A2A_SECRET_X"},
}


@asynccontextmanager
async def running(tmp_path: Path, **extra: Any) -> AsyncIterator[str]:
    """A gateway on a file database (shared with the CLI, kept across restarts)."""
    async with gateway(
        identity={
            "admin_token": {"value": ADMIN},
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        },
        audit={
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
            "checkpoint_key_file": str(tmp_path / "key.pem"),
        },
        policy=POLICY,
        **extra,
    ) as base:
        yield base


def admin(base: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=base, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)


def message(text: str) -> Message:
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


async def register_caller(http: httpx2.AsyncClient, audiences: list[str]) -> str:
    created = await http.post(
        "/admin/agents",
        json={"client_id": "caller", "name": "c", "owner": "t", "audiences": audiences, "scopes": ["a2a"]},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["client_secret"])


async def send(base: str, name: str, token: str | None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        card = await A2ACardResolver(http, f"{base}/a2a/{name}").get_agent_card()
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        events = [e async for e in client.send_message(SendMessageRequest(message=message("echo hi")))]
    return events[-1].task


async def test_add_via_admin_api_call_and_remove(tmp_path: Path) -> None:
    async with serve_agent() as downstream, running(tmp_path) as base, admin(base) as http:
        body = {
            "name": "dyn",
            "card_url": f"{downstream}/.well-known/agent-card.json",
            "allow_private_network": True,
        }
        added = await http.post("/admin/a2a-agents", json=body)
        assert added.status_code == 201, added.text
        assert added.json()["status"]["state"] == "ready" and added.json()["enabled"] is True
        assert (await http.post("/admin/a2a-agents", json=body)).status_code == 409
        secret = await register_caller(http, ["a2a/dyn", "a2a"])
        token = await issued_token(base, "caller", secret, "a2a/dyn", "a2a")
        task = await send(base, "dyn", token)
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        async with httpx.AsyncClient() as raw:
            prm = await raw.get(f"{base}/.well-known/oauth-protected-resource/a2a/dyn")
            assert prm.status_code == 200 and prm.json()["resource"] == f"{base}/a2a/dyn"
            assert (await raw.post(f"{base}/a2a/dyn", json={})).status_code == 401  # protected
            ready = (await raw.get(f"{base}/readyz")).json()
            assert {"name": "dyn", "state": "ready"}.items() <= ready["a2a_agents"][0].items()
            routed = (await raw.get(f"{base}/.well-known/agent-card.json")).json()
            assert "dyn/echo" in {s["id"] for s in routed["skills"]}
        listed = (await http.get("/admin/a2a-agents")).json()["a2a_agents"]
        assert [a["name"] for a in listed] == ["dyn"] and listed[0]["source"] == "admin_api"
        removed = await http.delete("/admin/a2a-agents/dyn")
        assert removed.json() == {"name": "dyn", "removed": True}
        async with httpx.AsyncClient() as raw:
            gone = await raw.post(f"{base}/a2a/dyn", json={}, headers={"authorization": f"Bearer {token}"})
            assert gone.status_code == 404
            assert (await raw.get(f"{base}/.well-known/oauth-protected-resource/a2a/dyn")).status_code == 404
        assert (await http.get("/admin/a2a-agents/dyn")).status_code == 404
    async with AuditStore.open(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}") as store:
        records = [r.record() async for r in store.records("main")]
    events = [(r["event"], r["target"].get("name")) for r in records]
    assert ("admin.a2a_agent.added", "dyn") in events and ("admin.a2a_agent.removed", "dyn") in events
    sends = [r for r in records if r["event"] == "a2a.SendMessage"]
    assert sends and sends[0]["decision"]["rule"] == "dyn" and sends[0]["target"]["server"] == "dyn"


async def test_public_agent_needs_no_token(tmp_path: Path) -> None:
    async with serve_agent() as downstream, running(tmp_path) as base, admin(base) as http:
        body = {
            "name": "open",
            "card_url": f"{downstream}/.well-known/agent-card.json",
            "allow_private_network": True,
            "public": True,
        }
        assert (await http.post("/admin/a2a-agents", json=body)).status_code == 201
        task = await send(base, "open", None)
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        async with httpx.AsyncClient() as raw:
            assert (await raw.get(f"{base}/.well-known/oauth-protected-resource/a2a/open")).status_code == 404


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        ({"name": "Bad Name", "card_url": "https://a.example/c"}, "invalid_request", "name"),
        ({"name": "x", "card_url": "https://a.example/c", "card": {}}, "invalid_request", "exactly one"),
        ({"name": "router", "card_url": "https://a.example/c"}, "invalid_request", "reserved"),
        (
            {"name": "x", "card_url": "https://a.example/c", "headers": {"X-Api-Key": {"value": "s3cret"}}},
            "literal_secret",
            "headers.X-Api-Key",
        ),
        (
            {"name": "x", "card_url": "https://a.example/c", "headers": {"Authorization": "Bearer s3cret"}},
            "literal_secret",
            "env",
        ),
        ({"name": "helpdesk", "card_url": "https://a.example/c"}, "name_taken", "configuration (a2a_agents)"),
        ({"name": "x", "card": INLINE_METADATA}, "url_refused", "card.supportedInterfaces[0].url"),
        (
            {
                "name": "x",
                "card_url": "https://a.example/c",
                "auth": OAUTH | {"token_url": "http://127.0.0.1/t"},
            },
            "url_refused",
            "auth.token_url",
        ),
        (
            {"name": "x", "card_url": "https://a.example/c", "headers": {"X-Api-Key": {"env": "HOME"}}},
            "secret_not_allowed",
            "INTERLINK_A2A_SECRET_*",
        ),
        (
            {
                "name": "x",
                "card_url": "https://a.example/c",
                "auth": OAUTH | {"client_secret": {"file": "/etc/passwd"}},
            },
            "secret_not_allowed",
            "auth.client_secret",
        ),
        (
            {
                "name": "x",
                "card_url": "https://a.example/c",
                "card_jwks": {"keys": [{"kty": "EC", "x": {"d": "s3cret"}}]},
            },
            "literal_secret",
            "private key",
        ),
        (
            {"name": "x", "card_url": "https://a.example/c", "card_jwks": {"keys": {}}},
            "invalid_request",
            "JWK Set",
        ),
        (
            {
                "name": "x",
                "card_url": "https://a.example/c",
                "auth": {"kind": "interlink", "audience": "{base}/mcp/prod"},
            },
            "invalid_request",
            "Interlink's own",
        ),
    ],
)
async def test_invalid_registrations_are_refused(
    tmp_path: Path, body: dict[str, Any], error: str, text: str
) -> None:
    configured = [{"name": "helpdesk", "card": {"name": "h"}}]
    async with running(tmp_path, a2a_agents=configured) as base, admin(base) as http:
        body = json.loads(json.dumps(body).replace("{base}", base))
        refused = await http.post("/admin/a2a-agents", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == error and text in refused.json()["error_description"]
        assert "s3cret" not in refused.text
        assert (await http.get("/admin/a2a-agents")).json() == {"a2a_agents": []}


async def test_cli_add_converges_and_restart_keeps_it(tmp_path: Path) -> None:
    config = tmp_path / "interlink.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "identity": {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
                "audit": {
                    "database_url": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
                    "checkpoint_key_file": str(tmp_path / "key.pem"),
                },
            }
        )
    )
    async with serve_agent() as downstream:
        card_url = f"{downstream}/.well-known/agent-card.json"
        async with running(tmp_path) as base, admin(base) as http:
            argv = ["agents-remote", "add", "dyn", "--card-url", card_url, "--allow-private-network"]
            assert await asyncio.to_thread(cli_main, [*argv, "--config", str(config)]) == 0
            secret = await register_caller(http, ["a2a/dyn"])
            async with httpx.AsyncClient() as raw, asyncio.timeout(20):  # REFRESH_S is 5
                while (await raw.get(f"{base}/a2a/dyn/.well-known/agent-card.json")).status_code != 200:
                    await asyncio.sleep(0.2)
            token = await issued_token(base, "caller", secret, "a2a/dyn", "a2a")
            assert (await send(base, "dyn", token)).status.state == TaskState.TASK_STATE_COMPLETED
        async with running(tmp_path) as base:  # restarted: registered from the table at start
            token = await issued_token(base, "caller", secret, "a2a/dyn", "a2a")
            assert (await send(base, "dyn", token)).status.state == TaskState.TASK_STATE_COMPLETED
            shown = await asyncio.to_thread(
                cli_main, ["agents-remote", "disable", "dyn", "--config", str(config)]
            )
            assert shown == 0
            async with httpx.AsyncClient() as raw, asyncio.timeout(20):
                while (await raw.get(f"{base}/a2a/dyn/.well-known/agent-card.json")).status_code != 404:
                    await asyncio.sleep(0.2)
    async with AuditStore.open(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}") as store:
        records = [r.record() async for r in store.records("cli")]
    assert [r["event"] for r in records] == ["admin.a2a_agent.added", "admin.a2a_agent.disabled"]
    assert records[0]["args"]["card_url"] == card_url  # where requests go; secrets only by name


async def test_configured_inline_card_and_token_url_follow_the_hostile_url_rules(tmp_path: Path) -> None:
    """An inline card's interface and an OAuth token_url are held to https + public addresses (the
    agent would receive the configured headers, the token URL the client secret)."""
    configured = [
        {"name": "meta", "card": INLINE_METADATA},
        {
            "name": "tok",
            "card": INLINE_METADATA
            | {"supportedInterfaces": [{"url": "https://93.184.215.14/rpc", "protocolBinding": "JSONRPC"}]},
            "auth": OAUTH | {"token_url": "http://169.254.169.254/token"},
        },
    ]
    async with running(tmp_path, a2a_agents=configured) as base, httpx.AsyncClient() as raw:
        ready = {a["name"]: a for a in (await raw.get(f"{base}/readyz")).json()["a2a_agents"]}
    assert ready["meta"]["state"] == "card_error" and "https" in ready["meta"]["last_error"]
    assert ready["tok"]["state"] == "card_error" and ready["tok"]["last_error"].startswith("auth.token_url")


async def test_an_agent_that_cannot_open_leaves_no_trace_and_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration whose secret is not set on this replica: stored, not served, no token for it,
    shown in /readyz; the other agents open, and a restart still starts."""
    monkeypatch.delenv("INTERLINK_A2A_SECRET_UNSET", raising=False)
    async with serve_agent() as downstream:
        card_url = f"{downstream}/.well-known/agent-card.json"
        bad = {"name": "bad", "card_url": card_url, "allow_private_network": True}
        bad["headers"] = {"X-Api-Key": {"env": "INTERLINK_A2A_SECRET_UNSET"}}
        good = {"name": "dyn", "card_url": card_url, "allow_private_network": True}
        async with running(tmp_path) as base, admin(base) as http:
            added = await http.post("/admin/a2a-agents", json=bad)
            assert added.status_code == 201 and added.json()["status"] is None
            assert (await http.post("/admin/a2a-agents", json=good)).status_code == 201
            async with httpx.AsyncClient() as raw:
                ready = {a["name"]: a for a in (await raw.get(f"{base}/readyz")).json()["a2a_agents"]}
                assert (
                    ready["bad"]["state"] == "unusable"
                    and "INTERLINK_A2A_SECRET_UNSET" in ready["bad"]["last_error"]
                )
                assert (
                    await raw.get(f"{base}/.well-known/oauth-protected-resource/a2a/bad")
                ).status_code == 404
        async with running(tmp_path) as base:  # restarted: the bad row does not stop the start
            async with httpx.AsyncClient() as raw:
                assert (await raw.get(f"{base}/a2a/dyn/.well-known/agent-card.json")).status_code == 200
                assert (await raw.get(f"{base}/a2a/bad/.well-known/agent-card.json")).status_code == 404


async def test_task_held_by_a_removed_agent_fails_precisely_via_the_aggregate(tmp_path: Path) -> None:
    """A task routed through `/a2a` to a run-time agent, the agent removed: the follow-up gets
    downstream_unavailable (not an internal error); the last agent gone, `/a2a`'s metadata too."""
    async with serve_agent() as downstream, running(tmp_path) as base, admin(base) as http:
        for name in ("dyn", "other"):
            body = {"name": name, "card_url": f"{downstream}/.well-known/agent-card.json"}
            added = await http.post("/admin/a2a-agents", json=body | {"allow_private_network": True})
            assert added.status_code == 201, added.text
        secret = await register_caller(http, ["a2a"])
        token = await issued_token(base, "caller", secret, "a2a", "a2a")
        headers = {"authorization": f"Bearer {token}", "a2a-version": "1.0"}

        def send_message(text: str, **extra: str) -> dict[str, Any]:
            msg: dict[str, Any] = {
                "messageId": str(uuid.uuid4()),
                "role": "ROLE_USER",
                "parts": [{"text": text}],
            }
            msg |= {"metadata": {"skill": "dyn/echo"}} | extra
            return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": msg}}

        async with httpx.AsyncClient(headers=headers, timeout=30) as raw:
            first = (await raw.post(f"{base}/a2a", json=send_message("ask"))).json()
            task = first["result"]["task"]
            assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED", first
            assert (await http.delete("/admin/a2a-agents/dyn")).status_code == 200
            follow = (await raw.post(f"{base}/a2a", json=send_message("bob", taskId=task["id"]))).json()
            assert follow["error"]["data"][0]["metadata"]["reason"] == "downstream_unavailable", follow
            assert follow["error"]["code"] != -32603 and downstream not in json.dumps(follow)
            assert (await http.delete("/admin/a2a-agents/dyn")).status_code == 404  # nothing to remove
            assert (await http.post("/admin/a2a-agents/dyn/disable")).status_code == 404
            assert (await http.delete("/admin/a2a-agents/other")).status_code == 200
            prm = await raw.get(f"{base}/.well-known/oauth-protected-resource/a2a")
            assert prm.status_code == 404
    async with AuditStore.open(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}") as store:
        records = [r.record() async for r in store.records("main")]
    removed = [r for r in records if r["event"] == "admin.a2a_agent.removed"]
    assert [r["target"]["name"] for r in removed] == ["dyn", "other"]  # the 404s recorded no change
    args = next(r["args"] for r in records if r["event"] == "admin.a2a_agent.added")
    assert args["allow_private_network"] is True and args["card_url"].startswith("http://")
