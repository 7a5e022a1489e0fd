"""Policy by group: an agent's registered groups travel in its tokens' `groups` claim, introspection
shows them, and rules with `principals.groups` match on them."""

from __future__ import annotations

import base64
import json

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support import gateway, hold

SECRET = "groups-test-secret"
POLICY = {
    "rules": [
        {
            "id": "finance-tickets",
            "effect": "permit",
            "principals": {"groups": ["finance"]},
            "actions": ["tools/call"],
            "resources": ["mcp:desk/get_ticket", "mcp:desk/lookup_person"],
        },
        {
            "id": "everyone-looks-up",
            "effect": "permit",
            "actions": ["tools/call"],
            "resources": ["mcp:desk/lookup_person"],
        },
    ]
}


def agent(client_id: str, groups: list[str]) -> dict[str, object]:
    return {
        "client_id": client_id,
        "name": client_id,
        "owner": "team",
        "groups": groups,
        "secret": {"value": SECRET},
        "audiences": ["mcp/desk"],
        "scopes": ["mcp"],
    }


async def test_rules_match_groups_from_the_registration() -> None:
    async with gateway(
        upstreams=[{"name": "demo", "transport": "builtin"}],
        virtual_servers=[{"name": "desk", "upstreams": ["demo"], "public": False, "namespacing": "none"}],
        identity={"agents": [agent("accountant", ["finance", "staff"]), agent("intern", ["staff"])]},
        policy=POLICY,
    ) as base:
        outcomes = {}
        for client_id in ("accountant", "intern"):
            basic = base64.b64encode(f"{client_id}:{SECRET}".encode()).decode()
            form = {"grant_type": "client_credentials", "resource": f"{base}/mcp/desk", "scope": "mcp"}
            async with httpx2.AsyncClient(headers={"authorization": f"Basic {basic}"}) as http:
                token = (await http.post(f"{base}/oauth2/token", data=form)).json()["access_token"]
                claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
                seen = (await http.post(f"{base}/oauth2/introspect", data={"token": token})).json()
            assert seen.get("groups") == claims.get("groups")
            auth = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
            async with auth, hold(Client(streamable_http_client(f"{base}/mcp/desk", http_client=auth))) as c:
                tools = {t.name for t in (await c.list_tools()).tools}
                try:
                    await c.call_tool("get_ticket", {"ticket_id": "T-0001"})
                    outcome = "allowed"
                except MCPError as exc:
                    outcome = exc.data["reason"]
            outcomes[client_id] = (claims.get("groups"), tools, outcome)
    assert outcomes["accountant"][0] == ["finance", "staff"]
    assert outcomes["intern"][0] == ["staff"]
    assert outcomes["accountant"][1] == {"get_ticket", "lookup_person"}
    assert outcomes["intern"][1] == {"lookup_person"}
    assert outcomes["intern"][2] == "policy_denied"
    assert outcomes["accountant"][2] != "policy_denied"  # permitted (the demo desk has no T-0001)
