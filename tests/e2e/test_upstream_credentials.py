"""How Interlink authenticates to upstreams: a token from the upstream's own authorization server
(client credentials, refreshed when it expires), or a token Interlink signs for the upstream's
audience. Real servers: a small OAuth server, and upstreams that refuse requests without a valid
token."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp import Client
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests import upstream_server
from tests.support import gateway, hold, serve


class TokenDesk:
    """A minimal upstream authorization server: client_credentials with Basic auth, opaque tokens."""

    def __init__(self, client_id: str, secret: str, expires_in: int) -> None:
        self.expected = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.forms: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def token(self, request: Request) -> JSONResponse:
        form = dict(await request.form())
        self.forms.append(form)
        if (
            request.headers.get("authorization") != self.expected
            or form.get("grant_type") != "client_credentials"
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = f"upstream-token-{next(self._ids)}"
        self.issued.append(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/token", self.token, methods=["POST"])])


class Guard:
    """In front of an upstream: 401 unless `accept(bearer token)` says yes; records what it saw."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.accept: Any = lambda token: False
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            token = auth.removeprefix("Bearer ")
            self.seen.append(token)
            if not auth.startswith("Bearer ") or not self.accept(token):
                await JSONResponse({"error": "invalid_token"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[Guard, str]]:
    guard = Guard(upstream_server.build().streamable_http_app())
    async with serve(guard) as url:
        yield guard, f"{url}/mcp"


async def test_client_credentials_at_the_upstream_authorization_server(guarded: tuple[Guard, str]) -> None:
    """Interlink fetches its own token (Basic auth, RFC 8707 resource = the upstream URL), uses it
    on every upstream request and fetches a new one when it expires."""
    guard, upstream_url = guarded
    desk = TokenDesk(
        "interlink-at-crm", "crm-secret", expires_in=30
    )  # renewed 30 s early, so: on every request
    guard.accept = lambda token: token in desk.issued
    async with serve(desk.app()) as as_url:
        auth = {
            "kind": "oauth_client_credentials",
            "token_url": f"{as_url}/token",
            "client_id": "interlink-at-crm",
            "client_secret": {"value": "crm-secret"},
            "scope": "tools",
        }
        upstream = {"name": "crm", "transport": "http", "url": upstream_url, "auth": auth}
        async with gateway(
            upstreams=[upstream], virtual_servers=[{"name": "v", "upstreams": ["crm"]}]
        ) as base:
            async with hold(Client(f"{base}/mcp/v")) as client:
                for _ in range(3):
                    assert (await client.call_tool("crm__add", {"a": 1, "b": 2})).structured_content == {
                        "result": 3
                    }
    assert len(desk.issued) >= 2, "expired tokens are replaced"
    assert desk.forms[0] == {"grant_type": "client_credentials", "scope": "tools", "resource": upstream_url}
    assert set(guard.seen) <= set(desk.issued)


async def test_refused_upstream_credentials_are_a_clear_error(guarded: tuple[Guard, str]) -> None:
    """A wrong client secret at the upstream's authorization server: calls fail with
    upstream_unavailable naming the upstream and the OAuth error, and nothing secret."""
    guard, upstream_url = guarded
    desk = TokenDesk("interlink-at-crm", "right", expires_in=300)
    async with serve(desk.app()) as as_url:
        auth = {
            "kind": "oauth_client_credentials",
            "token_url": f"{as_url}/token",
            "client_id": "interlink-at-crm",
            "client_secret": {"value": "wrong-secret"},
        }
        upstream = {"name": "crm", "transport": "http", "url": upstream_url, "auth": auth, "start": "lazy"}
        async with gateway(
            upstreams=[upstream], virtual_servers=[{"name": "v", "upstreams": ["crm"]}]
        ) as base:
            async with httpx2.AsyncClient() as http:
                ready = (await http.get(f"{base}/readyz")).json()
            async with hold(Client(f"{base}/mcp/v")) as client:
                result = await client.list_tools()
                with pytest.raises(MCPError) as err:
                    await client.call_tool("crm__add", {"a": 1, "b": 1})
    assert result.tools == []
    assert err.value.data["reason"] == "upstream_unavailable"
    message = str(err.value)
    assert "upstream 'crm'" in message and "refused a token (HTTP 401, invalid_client)" in message
    assert "wrong-secret" not in message
    assert guard.seen == []
    assert ready["upstreams"][0]["state"] == "idle"


async def test_interlink_signed_token_for_the_upstream(guarded: tuple[Guard, str]) -> None:
    """`auth: {kind: interlink}`: the upstream receives a token signed by Interlink (verifiable with
    its published JWKS) whose audience is the upstream and whose subject is the gateway."""
    guard, upstream_url = guarded
    keys: dict[str, KeySet] = {}
    claims_seen: list[dict[str, Any]] = []

    def accept(token: str) -> bool:
        try:
            decoded = jwt.decode(token, keys["gateway"], algorithms=["ES256"])
        except Exception:  # noqa: BLE001 - any failure is a refusal
            return False
        claims_seen.append(dict(decoded.claims))
        return decoded.claims.get("aud") == upstream_url

    guard.accept = accept
    upstream: dict[str, Any] = {"name": "crm", "transport": "http", "url": upstream_url, "start": "lazy"}
    upstream["auth"] = {"kind": "interlink", "scopes": ["tools"]}
    async with gateway(upstreams=[upstream], virtual_servers=[{"name": "v", "upstreams": ["crm"]}]) as base:
        async with httpx2.AsyncClient() as http:
            keys["gateway"] = KeySet.import_key_set((await http.get(f"{base}/oauth2/jwks.json")).json())
        async with hold(Client(f"{base}/mcp/v")) as client:
            assert (await client.call_tool("crm__add", {"a": 2, "b": 2})).structured_content == {"result": 4}
    assert claims_seen
    assert {(c["iss"], c["sub"], c["aud"], c["scope"]) for c in claims_seen} == {
        (base, "interlink", upstream_url, "tools")
    }
