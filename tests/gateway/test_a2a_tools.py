"""The admission of bridged callers to a protected A2A agent (gateway/a2a_tools.py). A caller
without identity reaches the bridge only through a request scope without a principal, which no
configuration produces (a public virtual server may not bridge a protected agent), so the provider
is called here as the virtual server calls it: against a real agent (tests/a2a_py_agent.py), with
the gateway's real governor, identity and audit trail."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from mcp_types import CallToolResult
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.mcp.providers import ProviderCall
from gateway.a2a_face import RemoteAgent
from gateway.a2a_tools import AgentDownstream, a2a_tool_provider
from gateway.audit import AuditLog, AuditStore, CheckpointSigner
from gateway.auth import PRINCIPAL, Identity
from gateway.enforce import Governor
from gateway.errors import PolicyDenied
from gateway.settings import A2AToolsUpstream, GatewaySettings
from identity.tokens import Principal
from tests.a2a_py_agent import serve_agent
from tests.support import MEMORY_DB

WAIT_S = 20.0


class Witness:
    """Keeps the Authorization header of every request the agent receives (in `seen`)."""

    seen: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Witness.seen.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


def principal(scopes: set[str]) -> Principal:
    return Principal(
        subject="ada",
        client_id="ide",
        tenant=None,
        scopes=frozenset(scopes),
        audience="http://127.0.0.1:1/mcp/v",
        issuer="http://127.0.0.1:1",
        token_id="t-1",
        expires_at=int(time.time()) + 300,
    )


async def test_only_an_admitted_caller_reaches_a_protected_agent(tmp_path: Path) -> None:
    """A caller with no identity, or whose token lacks the agent's `required_scopes`, is refused
    (`policy_denied`) before any credential is minted or the agent sees anything, and the A2A record
    says why; a caller with the scope gets through, with a token naming it (never the gateway)."""
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    Witness.seen = []
    async with serve_agent(middleware=[Middleware(Witness)]) as py:
        settings = GatewaySettings(
            a2a_agents=[
                {
                    "name": "py",
                    "card_url": f"{py}/.well-known/agent-card.json",
                    "allow_private_network": True,
                    "auth": {"kind": "interlink", "scopes": ["agent.tasks"]},
                }
            ],
            upstreams=[{"name": "py-tools", "transport": "a2a", "agent": "py"}],
            virtual_servers=[{"name": "v", "upstreams": ["py-tools"]}],
            identity={"database_url": MEMORY_DB, "public_url": "http://127.0.0.1:1"},
        )
        upstream = settings.upstreams[0]
        assert isinstance(upstream, A2AToolsUpstream)
        identity = Identity(settings)
        async with (
            identity.running(),
            AuditStore.open(audit_url) as store,
            AuditLog(store, "main", CheckpointSigner.ephemeral()).running() as audit,
            asyncio.timeout(WAIT_S),
        ):
            agent = RemoteAgent(settings.a2a_agents[0], identity)
            await agent.load_card()
            governor = Governor("py", policy=None, audit=audit, public=False, protocol="a2a")
            provider = a2a_tool_provider(upstream, agent, governor, settings)
            await provider.start()
            tool = (await provider.tools())["echo"]
            anonymous: dict[str, Any] = {"type": "http", "headers": [], "client": ("127.0.0.1", 5)}
            narrow = {**anonymous, PRINCIPAL: principal({"mcp"})}
            admitted = {**anonymous, PRINCIPAL: principal({"mcp", "a2a"})}

            def call(scope: dict[str, Any]) -> ProviderCall:
                return ProviderCall("v", "py-tools__echo", tool, {"text": "echo hi"}, scope)

            refusals = []
            for scope in (anonymous, narrow):
                with pytest.raises(PolicyDenied) as refused:
                    await provider.call_tool(call(scope))
                refusals.append(refused.value)
            with pytest.raises(PolicyDenied):
                await AgentDownstream(agent).call_context(anonymous)
            seen_refused = [h for h in Witness.seen if h]
            result = await provider.call_tool(call(admitted))
            await agent.close()
            kept = [r.record() async for r in store.records("main")]
    assert [e.detail for e in refusals] == [{"required_scope": "a2a"}] * 2
    assert seen_refused == []
    assert isinstance(result, CallToolResult) and not result.is_error
    assert getattr(result.content[0], "text", "") == "hi"
    (sent,) = [h for h in Witness.seen if h.startswith("Bearer ")]
    claims = json.loads(base64.urlsafe_b64decode(sent.split(".")[1] + "=="))
    assert (claims["sub"], claims["act"]) == ("ada", {"sub": "interlink", "act": {"sub": "ide"}})
    sends = [r for r in kept if r["event"] == "a2a.SendMessage"]
    assert [(r["decision"]["effect"], r["decision"]["reason"], r["outcome"]["status"]) for r in sends] == [
        ("deny", "authentication_required", "denied"),
        ("deny", "insufficient_scope", "denied"),
        ("allow", "no_policy", "pending"),
    ]
    assert [r["target"]["bridge"] for r in sends] == ["mcp:v/py-tools__echo"] * 3
