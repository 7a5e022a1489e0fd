"""Human approval of held calls (CLI and admin API) and the policy's rate limits (in-process and
shared through Redis), through the real gateway; every step lands in the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway.audit import AuditStore
from gateway.cli import main
from tests.support import bound_socket, gateway, hold, issued_token

SECRET = "approval-test-secret"
ADMIN = "approval-admin-token"
REDIS = os.environ.get("INTERLINK_TEST_REDIS_URL")
TICKET = {"title": "Laptop", "description": "new laptop for Ada", "priority": "high"}


def desk_policy(limit_id: str) -> dict[str, Any]:
    return {
        "version": "1",
        "rules": [
            {
                "id": "lookups",
                "effect": "permit",
                "actions": ["tools/call"],
                "resources": ["mcp:desk/lookup_person"],
            },
            {
                "id": "tickets-need-approval",
                "effect": "permit",
                "actions": ["tools/call"],
                "resources": ["mcp:desk/create_ticket"],
                "approval": True,
            },
        ],
        "rate_limits": [
            {
                "id": limit_id,
                "resources": ["mcp:desk/lookup_person"],
                "per": "agent",
                "limit": 3,
                "window_s": 60,
            }
        ],
    }


@dataclass
class Desk:
    base: str
    config: Path
    audit_url: str
    client: Client


async def token(base: str) -> str:
    return await issued_token(base, "clerk", SECRET, "mcp/desk", "mcp")


def config_for(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Settings whose databases are files, so the CLI (another "process") sees what the gateway does."""
    agent = {
        "client_id": "clerk",
        "name": "Clerk",
        "owner": "helpdesk",
        "secret": {"value": SECRET},
        "audiences": ["mcp/desk"],
        "scopes": ["mcp"],
    }
    return {
        "upstreams": [{"name": "demo", "transport": "builtin"}],
        "virtual_servers": [{"name": "desk", "upstreams": ["demo"], "public": False, "namespacing": "none"}],
        "identity": {
            "agents": [agent],
            "admin_token": {"value": ADMIN},
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}",
        },
        "audit": {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
            "checkpoint_key_file": str(tmp_path / "audit-key.pem"),
        },
        "policy": desk_policy(f"lookup-burst-{uuid.uuid4().hex[:8]}"),
        **extra,
    }


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    settings = config_for(tmp_path)
    config = tmp_path / "interlink.yaml"
    config.write_text(
        json.dumps({"identity": settings["identity"] | {"agents": []}, "audit": settings["audit"]})
    )
    async with gateway(**settings) as base:
        auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {await token(base)}"})
        async with auth, hold(Client(streamable_http_client(f"{base}/mcp/desk", http_client=auth))) as c:
            yield Desk(base, config, settings["audit"]["database_url"], c)


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def held(c: Client, args: dict[str, Any], approval: str | None = None) -> MCPError:
    meta = {"io.interlink/approval": approval} if approval else None
    with pytest.raises(MCPError) as err:
        await c.call_tool("create_ticket", args, meta=meta)  # type: ignore[arg-type]
    return err.value


async def trail(url: str) -> list[dict[str, Any]]:
    async with AuditStore.open(url) as store:
        out = []
        for log_id in await store.log_ids():
            out += [r.record() async for r in store.records(log_id)]
        return out


async def test_held_call_approved_with_the_cli_goes_through_once(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await held(desk.client, TICKET)
    assert (first.code, first.data["reason"], first.data["status"]) == (
        -32017,
        "approval_required",
        "pending",
    )
    approval_id = first.data["approval_id"]
    assert "io.interlink/approval" in first.message
    again = await held(desk.client, TICKET)
    assert again.data["approval_id"] == approval_id  # the same held call is not opened twice
    still = await held(desk.client, TICKET, approval_id)
    assert still.data["reason"] == "approval_required"

    config = str(desk.config)
    capsys.readouterr()
    assert await cli("approvals", "list", "--config", config) == 0
    listed = capsys.readouterr().out
    assert approval_id in listed and "clerk -> desk/create_ticket" in listed and "Laptop" in listed
    assert (
        await cli(
            "approvals", "approve", approval_id, "--note", "budget ok", "--as", "alice", "--config", config
        )
        == 0
    )
    assert "approved by alice" in capsys.readouterr().out

    ticket = await desk.client.call_tool("create_ticket", TICKET, meta={"io.interlink/approval": approval_id})  # type: ignore[arg-type]
    assert not ticket.is_error
    used = await held(desk.client, TICKET, approval_id)
    assert (used.code, used.data["reason"]) == (-32018, "approval_denied")
    other = await held(desk.client, TICKET | {"priority": "low"}, approval_id)
    assert other.data["reason"] == "approval_denied"
    assert await cli("approvals", "approve", approval_id, "--config", config) == 1  # already used

    records = await trail(desk.audit_url)
    decided = [r for r in records if r["event"] == "approval.approved"]
    assert len(decided) == 1 and decided[0]["actor"]["person"] == "alice"
    assert decided[0]["decision"]["approval_id"] == approval_id and decided[0]["args"]["note"] == "budget ok"
    calls = [
        r["decision"]
        for r in records
        if r["event"] == "mcp.tools/call" and r["target"]["name"] == "create_ticket"
    ]
    assert [(d["effect"], d["reason"]) for d in calls] == [
        ("deny", "approval_required"),
        ("deny", "approval_required"),
        ("deny", "approval_required"),
        ("allow", "approved"),
        ("deny", "approval_denied"),
        ("deny", "approval_denied"),
    ]
    assert all(d["approval_id"] == approval_id and d["rule"] == "tickets-need-approval" for d in calls[:5])
    assert "Laptop" not in str(records)  # arguments stay in the approvals store, not the trail


async def test_denied_through_the_admin_api(desk: Desk) -> None:
    approval_id = (await held(desk.client, TICKET)).data["approval_id"]
    headers = {"authorization": f"Bearer {ADMIN}"}
    async with httpx2.AsyncClient(base_url=desk.base, headers=headers) as http:
        pending = (await http.get("/admin/approvals")).json()["approvals"]
        assert [a["id"] for a in pending] == [approval_id] and pending[0]["args"] == TICKET
        nobody = await http.post(f"/admin/approvals/{approval_id}/deny", json={})
        assert nobody.status_code == 400
        denied = await http.post(
            f"/admin/approvals/{approval_id}/deny", json={"approver": "bob", "note": "no"}
        )
        assert denied.status_code == 200 and denied.json()["status"] == "denied"
        assert (
            await http.post(f"/admin/approvals/{approval_id}/approve", json={"approver": "eve"})
        ).status_code == 409
        assert (await http.get("/admin/approvals/apr_nope")).status_code == 404
        assert [a["id"] for a in (await http.get("/admin/approvals?status=denied")).json()["approvals"]] == [
            approval_id
        ]
    refused = await held(desk.client, TICKET, approval_id)
    assert refused.data["reason"] == "approval_denied"
    events = [r["event"] for r in await trail(desk.audit_url)]
    assert "approval.denied" in events


async def lookups(c: Client, n: int) -> list[str]:
    """Outcome of n lookups: "ok" or the refusal reason."""
    out = []
    for _ in range(n):
        try:
            await c.call_tool("lookup_person", {"query": "ada"})
            out.append("ok")
        except MCPError as exc:
            out.append(exc.data["reason"])
    return out


async def test_rate_limit_per_agent(desk: Desk) -> None:
    assert await lookups(desk.client, 4) == ["ok", "ok", "ok", "rate_limited"]
    with pytest.raises(MCPError) as err:
        await desk.client.call_tool("lookup_person", {"query": "ada"})
    assert err.value.code == -32015
    assert (
        err.value.data["rule"].startswith("lookup-burst-")
        and 0 < float(err.value.data["retry_after_s"]) <= 20
    )
    limited = [r for r in await trail(desk.audit_url) if r["decision"]["reason"] == "rate_limited"]
    assert len(limited) == 2 and limited[0]["decision"]["rule"] == err.value.data["rule"]


def redis_url() -> str:
    if not REDIS:
        pytest.skip("INTERLINK_TEST_REDIS_URL is not set (CI sets it; e.g. redis://127.0.0.1:6379/0)")
    return REDIS


async def test_rate_limit_shared_by_two_replicas_through_redis(tmp_path: Path) -> None:
    settings = config_for(tmp_path, rate_limit_store=redis_url())
    second = config_for(tmp_path / "b", rate_limit_store=redis_url())
    second["policy"] = settings["policy"]  # the same limit id: the same buckets
    (tmp_path / "b").mkdir()
    async with gateway(**settings) as a, gateway(**second) as b:
        clients = []
        for base in (a, b):
            auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {await token(base)}"})
            clients.append((auth, hold(Client(streamable_http_client(f"{base}/mcp/desk", http_client=auth)))))
        async with clients[0][0], clients[0][1] as ca, clients[1][0], clients[1][1] as cb:
            assert await lookups(ca, 2) == ["ok", "ok"]
            assert await lookups(cb, 2) == ["ok", "rate_limited"]


async def test_unreachable_rate_limit_store_fails_closed(tmp_path: Path) -> None:
    with bound_socket() as sock:  # a port nobody listens on
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        async with gateway(**config_for(tmp_path, rate_limit_store=dead)) as base:
            auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {await token(base)}"})
            async with auth, hold(Client(streamable_http_client(f"{base}/mcp/desk", http_client=auth))) as c:
                with pytest.raises(MCPError) as err:
                    await c.call_tool("lookup_person", {"query": "ada"})
                assert (err.value.code, err.value.data["reason"]) == (-32019, "rate_limit_unavailable")
                assert "127.0.0.1" not in err.value.message
