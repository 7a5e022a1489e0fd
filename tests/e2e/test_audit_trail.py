"""The audit trail through the real gateway (identity-research §9 cases 36, 38, 39): every decision
is one record, written before the response; allowed tool calls are recorded write-ahead; records
hold no token, secret or non-allow-listed argument; when the store cannot write, calls fail closed
and nothing reaches the upstream; the `interlink audit` commands read and verify the trail."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import rfc8785
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit import AuditStore
from gateway.cli import main
from tests import upstream_server
from tests.e2e.test_policy_enforcement import POLICY, SECRET
from tests.support import gateway, hold, issued_token, serve

CANARY = "canary-title-7f3a"


class BodyRecorder:
    """Wraps the upstream app and keeps every request body it receives (the test's witness)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.bodies.append(message.get("body", b""))
            return message

        await self.app(scope, recording if scope["type"] == "http" else receive, send)


@dataclass
class Desk:
    base: str
    recorder: BodyRecorder
    url: str
    config: Path
    token: str


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    recorder = BodyRecorder(upstream_server.build().streamable_http_app())
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    audit = {
        "database_url": url,
        "checkpoint_key_file": str(tmp_path / "audit-key.pem"),
        "argument_fields": {"mcp:desk/demo__create_ticket": ["priority"]},
    }
    config = tmp_path / "interlink.yaml"
    config.write_text(json.dumps({"audit": audit}))  # JSON is YAML: what the CLI reads
    async with serve(recorder) as upstream:
        agent = {
            "client_id": "clerk",
            "name": "Clerk",
            "owner": "helpdesk",
            "tenant": "acme",
            "secret": {"value": SECRET},
            "audiences": ["mcp/desk"],
            "scopes": ["mcp"],
        }
        async with gateway(
            upstreams=[
                {"name": "demo", "transport": "builtin"},
                {"name": "web", "transport": "http", "url": f"{upstream}/mcp"},
            ],
            virtual_servers=[{"name": "desk", "upstreams": ["demo", "web"], "public": False}],
            identity={"agents": [agent]},
            policy=POLICY,
            audit=audit,
        ) as base:
            token = await issued_token(base, "clerk", SECRET, "mcp/desk", "mcp")
            yield Desk(base, recorder, url, config, token)


def client(desk: Desk, mode: str = "auto") -> Any:
    auth = httpx2.AsyncClient(
        headers={
            "authorization": f"Bearer {desk.token}",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        }
    )
    return auth, hold(Client(streamable_http_client(f"{desk.base}/mcp/desk", http_client=auth), mode=mode))


async def records(url: str) -> list[dict[str, Any]]:
    async with AuditStore.open(url) as store:
        return [r.record() async for r in store.records("main")]


async def bodies(url: str) -> str:
    async with AuditStore.open(url) as store:
        return "\n".join([r.body async for r in store.records("main")])


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_decision_is_one_record_written_before_the_response(desk: Desk, mode: str) -> None:
    auth, held = client(desk, mode)
    async with auth, held as c:
        await c.list_tools()
        listed = await records(desk.url)
        assert listed[-1]["event"] == "mcp.tools/list"  # durable before the response came back
        await c.call_tool("demo__lookup_person", {"query": "ada"})
        after_call = await records(desk.url)
        await c.call_tool("demo__create_ticket", {"title": CANARY, "description": "d", "priority": "low"})
        for name, args in (
            ("demo__get_ticket", {"ticket_id": "T-0001"}),  # default deny
            ("web__echo", {"text": "my secret"}),  # forbid
            ("no_such_tool", {}),
        ):
            with pytest.raises(MCPError):
                await c.call_tool(name, args)
        invalid = await c.call_tool("demo__lookup_person", {"query": 5})
        assert invalid.is_error
    trail = await records(desk.url)
    assert [r["seq"] for r in trail] == list(range(1, len(trail) + 1))
    governed = [r for r in trail if r["event"] != "mcp.tools/list" or r is trail[0]]
    summary = [
        (
            r["event"],
            r["target"]["name"],
            r["decision"]["effect"],
            r["decision"]["reason"],
            r["outcome"]["status"],
        )
        for r in governed
        if r["event"].startswith("mcp.tools/call")
    ]
    assert summary == [
        ("mcp.tools/call", "demo__lookup_person", "allow", "permit", "pending"),
        ("mcp.tools/call.result", "demo__lookup_person", "allow", "permit", "ok"),
        ("mcp.tools/call", "demo__create_ticket", "allow", "permit", "pending"),
        ("mcp.tools/call.result", "demo__create_ticket", "allow", "permit", "ok"),
        ("mcp.tools/call", "demo__get_ticket", "deny", "default_deny", "denied"),
        ("mcp.tools/call", "web__echo", "deny", "forbid", "denied"),
        ("mcp.tools/call", "no_such_tool", "deny", "unknown_tool", "denied"),
        ("mcp.tools/call", "demo__lookup_person", "deny", "invalid_arguments", "denied"),
    ]
    # the write-ahead record was durable before the call returned, its result record too
    assert [r["event"] for r in after_call[-2:]] == ["mcp.tools/call", "mcp.tools/call.result"]
    allowed, result = after_call[-2:]
    assert result["ref"] == allowed["id"]
    assert allowed["decision"]["rule"] == "read-directory"
    assert allowed["decision"]["policy_version"] == "7" and allowed["decision"]["policy_sha256"]
    assert allowed["target"]["definition_sha256"] and len(allowed["target"]["definition_sha256"]) == 64
    assert allowed["actor"]["agent"] == "clerk" and allowed["actor"]["tenant"] == "acme"
    assert allowed["actor"]["token_id"] and allowed["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert allowed["args_sha256"] == hashlib.sha256(rfc8785.dumps({"query": "ada"})).hexdigest()
    assert allowed["args"] == {} and result["latency_us"] > 0
    forbid = next(r for r in trail if r["target"]["name"] == "web__echo")
    assert forbid["decision"]["rule"] == "never-echo-secrets"
    assert forbid["outcome"] == {"status": "denied", "reason": "policy_denied", "code": -32013}
    ticket = next(r for r in trail if r["target"]["name"] == "demo__create_ticket")
    assert ticket["args"] == {"priority": "low"}  # the allow-listed field, nothing else
    lists = [r for r in trail if r["event"] == "mcp.tools/list"]
    assert lists and all(r["decision"]["reason"] == "filtered" for r in lists)


async def test_records_hold_no_token_secret_or_unlisted_argument(desk: Desk) -> None:
    """Case 38: grep the stored trail for canaries."""
    auth, held = client(desk)
    async with auth, held as c:
        await c.call_tool("demo__create_ticket", {"title": CANARY, "description": CANARY, "priority": "low"})
        with pytest.raises(MCPError):
            await c.call_tool("web__echo", {"text": f"secret {CANARY}"})
    async with httpx2.AsyncClient() as http:  # a rejected token is not written down either
        await http.post(f"{desk.base}/mcp/desk", headers={"authorization": f"Bearer {desk.token}x"}, json={})
    text = await bodies(desk.url)
    assert text and "clerk" in text
    trail = await records(desk.url)
    issued = trail[0]
    assert issued["event"] == "oauth.token" and issued["actor"]["agent"] == "clerk"
    assert (issued["decision"]["effect"], issued["decision"]["reason"]) == ("allow", "issued")
    assert issued["args"] == {
        "grant_type": "client_credentials",
        "resource": f"{desk.base}/mcp/desk",
        "scope": "mcp",
    }
    async with asyncio.timeout(5):  # refusals are recorded without holding up the 401
        while not any(r["event"] == "mcp.auth" for r in trail):
            await asyncio.sleep(0.05)
            trail = await records(desk.url)
    refused = next(r for r in trail if r["event"] == "mcp.auth")
    assert (refused["decision"]["effect"], refused["decision"]["reason"]) == ("deny", "invalid_token")
    assert refused["outcome"] == {"status": "denied", "reason": "invalid_token", "code": 401}
    async with httpx2.AsyncClient() as http:
        bad = await http.post(
            f"{desk.base}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "clerk",
                "client_secret": "wrong-" + SECRET,
            },
        )
    assert bad.status_code == 401
    async with asyncio.timeout(5):
        while not any(r["event"] == "oauth.token" and r["decision"]["effect"] == "deny" for r in trail):
            await asyncio.sleep(0.05)
            trail = await records(desk.url)
    text = await bodies(desk.url)
    for canary in (desk.token, desk.token.split(".")[2], SECRET, CANARY):
        assert canary not in text


async def test_store_unavailable_fails_closed(desk: Desk) -> None:
    """Case 39: with the audit database locked, a tool call is refused with audit_unavailable and never
    reaches the upstream; once the store is back, calls work and the refusals are in the trail."""
    path = desk.url.removeprefix("sqlite+aiosqlite:///")
    auth, held = client(desk)
    async with auth, held as c:
        await c.call_tool("web__echo", {"text": "before"})
        assert any(b"before" in body for body in desk.recorder.bodies)  # the witness works
        seen = len(desk.recorder.bodies)
        lock = sqlite3.connect(path, isolation_level=None, timeout=5)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            for text in ("during-1", "during-2"):
                with pytest.raises(MCPError) as err:
                    await c.call_tool("web__echo", {"text": text})
                assert err.value.code == -32014
                assert err.value.data["reason"] == "audit_unavailable"
            assert not any(b"during-" in body for body in desk.recorder.bodies[seen:])
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        async with asyncio.timeout(15):
            while True:
                try:
                    await c.call_tool("web__echo", {"text": "after"})
                    break
                except MCPError as exc:
                    assert exc.data["reason"] == "audit_unavailable"
                    await asyncio.sleep(0.2)
    trail = await records(desk.url)
    refused = [r for r in trail if r["outcome"].get("reason") == "audit_unavailable"]
    assert len(refused) >= 2 and all(r["decision"]["effect"] == "deny" for r in refused)
    assert [r["seq"] for r in trail] == list(range(1, len(trail) + 1))


async def cli(argv: list[str]) -> int:
    """`interlink ...` in a thread: the command runs its own event loop."""
    return await asyncio.to_thread(main, argv)


async def test_audit_commands(desk: Desk, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    auth, held = client(desk)
    async with auth, held as c:
        await c.call_tool("demo__lookup_person", {"query": "ada"})
        with pytest.raises(MCPError):
            await c.call_tool("demo__get_ticket", {"ticket_id": "T-0001"})
    config = str(desk.config)
    capsys.readouterr()
    assert await cli(["audit", "tail", "-n", "3", "--config", config]) == 0
    tail = capsys.readouterr().out.splitlines()
    assert len(tail) == 3 and "demo__get_ticket" in tail[-1] and "deny" in tail[-1]
    assert (
        await cli(["audit", "query", "--decision", "deny", "--agent", "clerk", "--json", "--config", config])
        == 0
    )
    denied = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["target"]["name"] for r in denied] == ["demo__get_ticket"]
    assert await cli(["audit", "query", "--tool", "demo__lookup_person", "--config", config]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # decision and result
    assert await cli(["audit", "query", "--since", "2999-01-01T00:00:00Z", "--config", config]) == 0
    assert capsys.readouterr().out == ""
    assert await cli(["audit", "verify", "--config", config]) == 0
    assert "log main: OK" in capsys.readouterr().out
    out = tmp_path / "trail.jsonl"
    assert await cli(["audit", "export", "--format", "jsonl", "-o", str(out), "--config", config]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["type"] for line in lines} >= {"record"}
    assert await cli(["audit", "key", "--config", config]) == 0
    assert capsys.readouterr().out.startswith("-----BEGIN PUBLIC KEY-----")
    # tamper with the live store: verify names the record and exits 1
    path = desk.url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interlink_audit_records SET body = replace(body, 'clerk', 'admin') WHERE seq = 2")
    assert await cli(["audit", "verify", "--config", config]) == 1
    assert "record 2: content does not match its hash (edited)" in capsys.readouterr().out
