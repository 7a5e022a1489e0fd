"""Policy changes without a restart (file watch, SIGHUP, admin API); an invalid policy is rejected with
the precise problem, the previous one stays active, and every change is in the audit trail
(identity-research §9 case 34)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway.audit import AuditStore
from tests.support import gateway, hold, issued_token

SECRET = "reload-test-secret"
ADMIN = "reload-admin-token"


def policy(version: str, *tools: str) -> dict[str, Any]:
    return {
        "version": version,
        "rules": [
            {
                "id": "desk-tools",
                "effect": "permit",
                "principals": {"agents": ["clerk"]},
                "actions": ["tools/call"],
                "resources": [f"mcp:desk/{t}" for t in tools],
            }
        ],
    }


@dataclass
class Desk:
    base: str
    policy_file: Path
    audit_url: str
    client: Client


@pytest.fixture(params=[0.1, 0.0], ids=["watched", "manual"])
async def desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy("1", "lookup_person")))
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    agent = {
        "client_id": "clerk",
        "name": "Clerk",
        "owner": "helpdesk",
        "secret": {"value": SECRET},
        "audiences": ["mcp/desk"],
        "scopes": ["mcp"],
    }
    async with gateway(
        upstreams=[{"name": "demo", "transport": "builtin"}],
        virtual_servers=[{"name": "desk", "upstreams": ["demo"], "public": False, "namespacing": "none"}],
        identity={"agents": [agent], "admin_token": {"value": ADMIN}},
        policy_file=str(policy_file),
        policy_reload_interval_s=request.param,
        audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "key.pem")},
    ) as base:
        token = await issued_token(base, "clerk", SECRET, "mcp/desk", "mcp")
        auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
        async with auth, hold(Client(streamable_http_client(f"{base}/mcp/desk", http_client=auth))) as c:
            yield Desk(base, policy_file, audit_url, c)


async def allowed(c: Client, tool: str) -> bool:
    args = {"query": "ada"} if tool == "lookup_person" else {"ticket_id": "T-0001"}
    try:
        await c.call_tool(tool, args)
    except MCPError as exc:
        assert exc.data["reason"] == "policy_denied"
        return False
    return True


async def admin(base: str, method: str, path: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.request(method, f"{base}{path}", headers={"authorization": f"Bearer {ADMIN}"})


async def policy_events(url: str) -> list[dict[str, Any]]:
    async with AuditStore.open(url) as store:
        return [r.record() async for r in store.records("main") if r.record()["event"].startswith("policy.")]


async def until(check: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.05)


async def trigger(desk: Desk, watched: bool) -> None:
    """Make the gateway notice the file: by itself when watched, else by the admin API."""
    if not watched:
        answer = await admin(desk.base, "POST", "/admin/policy/reload")
        assert answer.status_code in (200, 400)


async def test_valid_change_takes_effect_invalid_change_is_rejected(
    desk: Desk, request: pytest.FixtureRequest
) -> None:
    watched = "watched" in request.node.callspec.id
    c = desk.client
    assert await allowed(c, "lookup_person") and not await allowed(c, "get_ticket")

    desk.policy_file.write_text(yaml.safe_dump(policy("2", "lookup_person", "get_ticket")))
    await trigger(desk, watched)
    await until(lambda: allowed(c, "get_ticket"))

    broken = policy("3", "get_ticket")
    broken["rules"][0]["effect"] = "allow"  # not permit|forbid
    desk.policy_file.write_text(yaml.safe_dump(broken))
    await trigger(desk, watched)
    await until(lambda: _has_rejection(desk.audit_url))
    assert await allowed(c, "lookup_person")  # version 2 still decides
    assert (await admin(desk.base, "GET", "/admin/policy")).json()["version"] == "2"

    events = await policy_events(desk.audit_url)
    loaded, rejected = events[0], events[-1]
    assert loaded["event"] == "policy.loaded" and loaded["args"]["version"] == "2"
    assert loaded["args"]["trigger"] == ("file_changed" if watched else "admin_api")
    assert rejected["event"] == "policy.rejected" and rejected["decision"]["effect"] == "deny"
    assert (
        "rules.0.effect" in rejected["args"]["problem"]
        and str(desk.policy_file) in rejected["args"]["problem"]
    )


async def _has_rejection(url: str) -> bool:
    return any(e["event"] == "policy.rejected" for e in await policy_events(url))


async def test_admin_api_reports_and_refuses_precisely(desk: Desk) -> None:
    shown = (await admin(desk.base, "GET", "/admin/policy")).json()
    assert shown["version"] == "1" and shown["rules"] == 1 and len(shown["sha256"]) == 64
    assert (await admin(desk.base, "POST", "/admin/policy/reload")).json()["status"] == "unchanged"
    desk.policy_file.write_text("version: '9'\nrules:\n  - id: x\n    effect: permit\n")
    answer = await admin(desk.base, "POST", "/admin/policy/reload")
    if answer.status_code == 200:  # the watcher got there first and rejected it already
        answer = await admin(desk.base, "POST", "/admin/policy/reload")
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "invalid_policy"
    assert "rules.0.actions: Field required" in body["error_description"]
    assert await allowed(desk.client, "lookup_person")


async def test_emptied_policy_is_refused(desk: Desk) -> None:
    """Removing the policy would allow every authenticated call: a running gateway refuses."""
    desk.policy_file.write_text("")
    answer = await admin(desk.base, "POST", "/admin/policy/reload")
    assert answer.status_code == 400
    assert not await allowed(desk.client, "get_ticket")


async def test_sighup_reloads(desk: Desk) -> None:
    desk.policy_file.write_text(yaml.safe_dump(policy("5", "lookup_person", "get_ticket")))
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: allowed(desk.client, "get_ticket"))
    assert (await admin(desk.base, "GET", "/admin/policy")).json()["version"] == "5"


def test_check_validates_the_policy_file_relative_to_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "policy.yaml").write_text(yaml.safe_dump(policy("1", "lookup_person")))
    config = tmp_path / "interlink.yaml"
    config.write_text("policy_file: rules/policy.yaml\n")
    assert main(["check", "--config", str(config)]) == 0
    (tmp_path / "rules" / "policy.yaml").write_text("version: '1'\nrules: [{id: x, effect: maybe}]\n")
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'rules' / 'policy.yaml'}: 3 problem(s)" in err and "rules.0.effect" in err
