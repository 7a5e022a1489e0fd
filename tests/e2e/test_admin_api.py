"""The admin HTTP API: off without an admin credential; with one, agents are registered, shown,
disabled (which revokes their live tokens) and re-keyed over HTTP."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from tests.support import gateway

ADMIN = "admin-token-for-tests"


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with gateway(
        upstreams=[{"name": "demo", "transport": "builtin"}],
        virtual_servers=[{"name": "secure", "upstreams": ["demo"], "public": False}],
        identity={"admin_token": {"value": ADMIN}},
    ) as url:
        yield url


def admin_client(base: str, token: str = ADMIN) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"})


NEW = {"client_id": "bot", "name": "Bot", "owner": "ops", "audiences": ["mcp/secure"], "scopes": ["mcp"]}


async def token_for(base: str, client_id: str, secret: str) -> httpx2.Response:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    form = {"grant_type": "client_credentials", "resource": f"{base}/mcp/secure", "scope": "mcp"}
    async with httpx2.AsyncClient() as http:
        return await http.post(f"{base}/oauth2/token", data=form, headers={"authorization": f"Basic {basic}"})


@pytest.mark.parametrize("token", ["nothing", "wrong", ADMIN + "x"])
async def test_admin_needs_its_credential(base: str, token: str) -> None:
    async with admin_client(base, token) as http:
        response = await http.get("/admin/agents")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="interlink-admin"'


async def test_admin_api_is_off_without_a_credential() -> None:
    async with (
        gateway(upstreams=[{"name": "demo", "transport": "builtin"}]) as url,
        admin_client(url) as http,
    ):
        assert (await http.get("/admin/agents")).status_code == 404


async def test_register_use_disable(base: str) -> None:
    """Register over HTTP (the secret comes back once), get a token with it, disable the agent:
    its token requests fail and its live token stops working within the refresh interval."""
    async with admin_client(base) as http:
        created = await http.post("/admin/agents", json=NEW)
        assert created.status_code == 201, created.text
        secret = created.json()["client_secret"]
        assert "secret_hash" not in created.json()["agent"]
        shown = (await http.get("/admin/agents/bot")).json()
        assert shown["owner"] == "ops" and secret not in str(shown)
        assert [a["client_id"] for a in (await http.get("/admin/agents")).json()["agents"]] == ["bot"]
        issued = await token_for(base, "bot", secret)
        assert issued.status_code == 200
        token = issued.json()["access_token"]
        disabled = (await http.post("/admin/agents/bot/disable")).json()
        assert disabled == {"client_id": "bot", "enabled": False, "revoked_tokens": 1}
    assert (await token_for(base, "bot", secret)).json()["error"] == "invalid_client"
    async with httpx2.AsyncClient() as raw, asyncio.timeout(10):
        while True:
            response = await raw.post(
                f"{base}/mcp/secure",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"},
            )
            if response.status_code == 401:
                break
            await asyncio.sleep(0.2)
    assert "revoked" in response.json()["error_description"]


async def test_rotations(base: str) -> None:
    async with admin_client(base) as http:
        first = (await http.post("/admin/agents", json=NEW)).json()["client_secret"]
        second = (await http.post("/admin/agents/bot/rotate-secret")).json()["client_secret"]
        assert first != second
        rotated = (await http.post("/admin/keys/rotate")).json()
        assert rotated["published"] and rotated["retired"] == []
        keys = (await http.get("/oauth2/jwks.json")).json()["keys"]
    assert (await token_for(base, "bot", first)).status_code == 401
    assert (await token_for(base, "bot", second)).status_code == 200
    async with asyncio.timeout(10):
        while len(keys) < 2:
            await asyncio.sleep(0.2)
            async with httpx2.AsyncClient() as http:
                keys = (await http.get(f"{base}/oauth2/jwks.json")).json()["keys"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/admin/agents", {**NEW, "audiences": ["mcp/hr"]}, 422),
        ("POST", "/admin/agents", {**NEW, "surprise": 1}, 422),
        ("POST", "/admin/agents", {"client_id": "x"}, 422),
        ("GET", "/admin/agents/ghost", None, 404),
        ("POST", "/admin/agents/ghost/disable", None, 404),
        ("POST", "/admin/agents/ghost/explode", None, 404),
    ],
)
async def test_refusals(base: str, method: str, path: str, body: dict[str, Any] | None, status: int) -> None:
    async with admin_client(base) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == status, response.text


async def test_duplicate_registration_conflicts(base: str) -> None:
    async with admin_client(base) as http:
        assert (await http.post("/admin/agents", json=NEW)).status_code == 201
        assert (await http.post("/admin/agents", json=NEW)).status_code == 409
