"""An enterprise IdP trusted by issuer and JWKS URL: its access tokens open exactly the virtual
server they name, with the same checks as Interlink's own; its keys are fetched as a hostile URL."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import gateway, hold, serve

IDP = "https://idp.example.test"
IDP_KEY = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)
ROGUE_KEY = ECKey.generate_key("P-256", parameters={"kid": "idp-1"}, private=True)


@asynccontextmanager
async def idp_and_gateway(allow_private: bool) -> AsyncIterator[str]:
    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [IDP_KEY.as_dict(private=False)]})

    async with serve(Starlette(routes=[Route("/jwks.json", jwks)])) as idp_url:
        trusted = {
            "issuer": IDP,
            "jwks_url": f"{idp_url}/jwks.json",
            "algorithms": ["ES256"],
            "allow_private_network": allow_private,
        }
        async with gateway(
            upstreams=[{"name": "demo", "transport": "builtin"}],
            virtual_servers=[
                {"name": "secure", "upstreams": ["demo"], "public": False},
                {"name": "payroll", "upstreams": ["demo"], "public": False},
            ],
            identity={"trusted_issuers": [trusted]},
        ) as base:
            yield base


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with idp_and_gateway(allow_private=True) as url:
        yield url


def idp_token(audience: str, key: ECKey = IDP_KEY, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": IDP,
        "sub": "alice@example.com",
        "client_id": "partner-agent",
        "aud": audience,
        "scope": "mcp",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "tenant": "acme",
    }
    claims.update(changes)
    return jwt.encode({"alg": "ES256", "kid": "idp-1", "typ": "at+jwt"}, claims, key)


async def status_with(base: str, virtual: str, token: str) -> int:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base}/mcp/{virtual}",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"},
        )
    return response.status_code


async def test_idp_token_opens_its_virtual_server(base: str) -> None:
    """A token from the trusted IdP, for /mcp/secure, works with the official client."""
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {idp_token(f'{base}/mcp/secure')}"})
    async with http, hold(Client(streamable_http_client(f"{base}/mcp/secure", http_client=http))) as client:
        assert "demo__lookup_person" in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.parametrize(
    ("virtual", "key", "changes"),
    [
        ("payroll", IDP_KEY, {}),  # for another virtual server
        ("secure", ROGUE_KEY, {}),  # same kid, key not in the IdP's JWKS
        ("secure", IDP_KEY, {"iss": IDP + "/"}),  # issuer differs by a slash: not trusted at all
        ("secure", IDP_KEY, {"exp": int(time.time()) - 120}),
        ("secure", IDP_KEY, {"exp": int(time.time()) + 7200}),  # lifetime above max_token_ttl_s
        ("secure", IDP_KEY, {"client_id": None}),
    ],
)
async def test_idp_tokens_get_the_same_checks(
    base: str, virtual: str, key: ECKey, changes: dict[str, Any]
) -> None:
    claims = {k: v for k, v in changes.items() if v is not None}
    token = idp_token(f"{base}/mcp/secure", key, **claims)
    if "client_id" in changes and changes["client_id"] is None:
        token = idp_token(f"{base}/mcp/secure", key, client_id=None)
        token = _drop_claim(f"{base}/mcp/secure", "client_id")
    assert await status_with(base, virtual, token) == 401


def _drop_claim(audience: str, name: str) -> str:
    now = int(time.time())
    claims = {"iss": IDP, "sub": "a", "client_id": "p", "aud": audience, "iat": now, "exp": now + 60}
    claims["jti"] = uuid.uuid4().hex
    del claims[name]
    return jwt.encode({"alg": "ES256", "kid": "idp-1", "typ": "at+jwt"}, claims, IDP_KEY)


async def test_private_jwks_url_is_not_fetched_unless_allowed() -> None:
    """Fail closed: the IdP's keys live on a loopback address, which is refused by default, so its
    tokens are refused too."""
    async with idp_and_gateway(allow_private=False) as base:
        assert await status_with(base, "secure", idp_token(f"{base}/mcp/secure")) == 401
