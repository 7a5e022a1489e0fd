"""Identity end to end: agents obtain tokens from Interlink and use them on exactly the virtual
server they were issued for; every refusal has its RFC status and error code (identity-research
§9 cases 1, 2, 8-12 and 15 over real HTTP); no caller token ever reaches an upstream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp, Receive, Scope, Send

from tests import upstream_server
from tests.support import gateway, hold, serve

SECRET = "s3cret-for-tests-only"
AGENT_KEY = ECKey.generate_key("P-256", parameters={"kid": "agent-key-1"}, private=True)


class RecordingApp:
    """Wraps an upstream app and keeps every request's headers (the test's witness)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers: list[dict[bytes, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.headers.append(dict(scope["headers"]))
        await self.app(scope, receive, send)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[RecordingApp, str]]:
    app = RecordingApp(upstream_server.build().streamable_http_app())
    async with serve(app) as url:
        yield app, f"{url}/mcp"


def agents() -> list[dict[str, Any]]:
    common = {"owner": "platform-team", "tenant": "acme", "audiences": ["mcp/secure"]}
    return [
        {"client_id": "demo-agent", "name": "Demo", "secret": {"value": SECRET}, "scopes": ["mcp"], **common},
        {
            "client_id": "other-agent",
            "name": "Other",
            "secret": {"value": SECRET},
            "scopes": ["mcp"],
            **common,
        },
        {"client_id": "narrow", "name": "Narrow", "secret": {"value": SECRET}, "scopes": ["read"], **common},
        {
            "client_id": "off",
            "name": "Off",
            "secret": {"value": SECRET},
            "scopes": ["mcp"],
            "enabled": False,
            **common,
        },
        {
            "client_id": "orchestrator",
            "name": "Orchestrator",
            "secret": {"value": SECRET},
            "scopes": ["mcp", "read"],
            "may_act_for": ["demo-agent"],
            **{**common, "audiences": ["mcp/secure", "mcp/payroll"]},
        },
        {
            "client_id": "relay",
            "name": "Relay",
            "secret": {"value": SECRET},
            "scopes": ["mcp"],
            "may_act_for": ["orchestrator"],
            **{**common, "audiences": ["mcp/payroll"]},
        },
        {
            "client_id": "keyed-agent",
            "name": "Keyed",
            "jwks": {"keys": [AGENT_KEY.as_dict(private=False)]},
            "scopes": ["mcp"],
            **common,
        },
    ]


@asynccontextmanager
async def secured(upstream_url: str, database_url: str | None = None) -> AsyncIterator[str]:
    identity: dict[str, Any] = {"agents": agents()}
    if database_url:
        identity["database_url"] = database_url
    async with gateway(
        upstreams=[
            {"name": "web", "transport": "http", "url": upstream_url},
            {"name": "demo", "transport": "builtin"},
        ],
        virtual_servers=[
            {"name": "secure", "upstreams": ["web", "demo"], "public": False},
            {"name": "payroll", "upstreams": ["demo"], "public": False},
        ],
        identity=identity,
    ) as base:
        yield base


@pytest.fixture
async def base(recorder: tuple[RecordingApp, str]) -> AsyncIterator[str]:
    async with secured(recorder[1]) as url:
        yield url


def basic(client_id: str, secret: str = SECRET) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def token_response(
    base: str, form: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(f"{base}/oauth2/token", data=form, headers=headers or {})


async def get_token(
    base: str, client_id: str = "demo-agent", resource: str = "secure", scope: str = "mcp"
) -> str:
    form = {"grant_type": "client_credentials", "resource": f"{base}/mcp/{resource}", "scope": scope}
    response = await token_response(base, form, basic(client_id))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def authed(url: str, token: str, mode: str = "auto") -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
    return http, Client(streamable_http_client(url, http_client=http), mode=mode)


async def post_mcp(url: str, headers: dict[str, str] | None = None, params: str = "") -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx2.AsyncClient() as http:
        return await http.post(
            url + params,
            json=body,
            headers={"accept": "application/json, text/event-stream", **(headers or {})},
        )


async def test_no_token_gets_401_naming_the_resource_metadata(base: str) -> None:
    """Case 1: 401 with `WWW-Authenticate: Bearer resource_metadata=...`; the document and the
    authorization server's metadata and keys are reachable and consistent."""
    response = await post_mcp(f"{base}/mcp/secure")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    assert metadata_url == f"{base}/.well-known/oauth-protected-resource/mcp/secure"
    async with httpx2.AsyncClient() as http:
        prm = (await http.get(metadata_url)).json()
        server = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
        jwks = (await http.get(server["jwks_uri"])).json()
    assert prm["resource"] == f"{base}/mcp/secure"
    assert prm["authorization_servers"] == [base] == [server["issuer"]]
    assert prm["scopes_supported"] == ["mcp"]
    assert server["token_endpoint"] == f"{base}/oauth2/token"
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_agent_calls_a_tool_with_its_token(base: str, mode: str) -> None:
    """client_credentials -> RFC 9068 token -> tools/list and tools/call on the protected server."""
    http, client = authed(f"{base}/mcp/secure", await get_token(base), mode)
    async with http, hold(client) as c:
        assert "demo__lookup_person" in {t.name for t in (await c.list_tools()).tools}
        result = await c.call_tool("web__add", {"a": 2, "b": 3})
    assert result.structured_content == {"result": 5}


async def test_token_response_shape(base: str) -> None:
    """Case 12: 5-minute Bearer token, no refresh token, not cacheable."""
    form = {"grant_type": "client_credentials", "resource": f"{base}/mcp/secure", "scope": "mcp"}
    response = await token_response(base, form, basic("demo-agent"))
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 300, "mcp")
    assert response.headers["cache-control"] == "no-store"


async def test_token_for_one_virtual_server_never_opens_another(base: str) -> None:
    """Case 2: a token for /mcp/secure is refused by /mcp/payroll (same origin)."""
    token = await get_token(base)
    response = await post_mcp(f"{base}/mcp/payroll", {"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "invalid_token"


async def test_insufficient_scope_is_403(base: str) -> None:
    """Case 24: a token without the virtual server's required scope gets 403 insufficient_scope,
    and the challenge names the scope needed."""
    token = await get_token(base, "narrow", scope="read")
    response = await post_mcp(f"{base}/mcp/secure", {"authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="mcp"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("headers", "params", "status", "error"),
    [
        ({"authorization": "Basic abc"}, "", 401, "invalid_token"),
        ({"authorization": "Bearer not.a.jwt"}, "", 401, "invalid_token"),
        ({}, "?access_token=x.y.z", 400, "invalid_request"),
    ],
)
async def test_bad_bearer_presentations(
    base: str, headers: dict[str, str], params: str, status: int, error: str
) -> None:
    """Case 8: wrong scheme, garbage, a token in the query string."""
    response = await post_mcp(f"{base}/mcp/secure", headers, params)
    assert (response.status_code, response.json()["error"]) == (status, error)


@pytest.mark.parametrize(
    ("form", "client", "status", "error"),
    [
        ({"grant_type": "password"}, "demo-agent", 400, "unsupported_grant_type"),
        ({"resource": None}, "demo-agent", 400, "invalid_target"),
        ({"resource": "{base}/mcp/payroll"}, "demo-agent", 400, "invalid_target"),
        ({"resource": "{base}/mcp/secure#x"}, "demo-agent", 400, "invalid_target"),
        ({"resource": "/mcp/secure"}, "demo-agent", 400, "invalid_target"),
        ({"resource": "{base}/mcp/nowhere"}, "demo-agent", 400, "invalid_target"),
        ({"scope": None}, "demo-agent", 400, "invalid_scope"),
        ({"scope": "mcp admin"}, "demo-agent", 400, "invalid_scope"),
        ({}, "off", 401, "invalid_client"),
        ({}, "nobody", 401, "invalid_client"),
    ],
)
async def test_token_endpoint_refusals(
    base: str, form: dict[str, str | None], client: str, status: int, error: str
) -> None:
    """Case 10 and the client checks: each refusal with its RFC 6749 §5.2 / RFC 8707 code."""
    request = {"grant_type": "client_credentials", "resource": f"{base}/mcp/secure", "scope": "mcp"}
    request.update({k: v.format(base=base) for k, v in form.items() if v is not None})
    for k in [k for k, v in form.items() if v is None]:
        del request[k]
    response = await token_response(base, request, basic(client))
    assert (response.status_code, response.json()["error"]) == (status, error), response.text


async def test_wrong_secret_and_two_resources(base: str) -> None:
    form = {"grant_type": "client_credentials", "resource": f"{base}/mcp/secure", "scope": "mcp"}
    response = await token_response(base, form, basic("demo-agent", "wrong"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    async with httpx2.AsyncClient() as http:
        two = await http.post(
            f"{base}/oauth2/token",
            content=f"grant_type=client_credentials&scope=mcp&resource={base}/mcp/secure&resource={base}/mcp/secure",
            headers={"content-type": "application/x-www-form-urlencoded", **basic("demo-agent")},
        )
    assert (two.status_code, two.json()["error"]) == (400, "invalid_target")


def assertion(base: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": "keyed-agent", "sub": "keyed-agent", "aud": f"{base}/oauth2/token", "exp": now + 60}
    claims |= {"jti": f"j-{time.monotonic_ns()}", "iat": now}
    claims.update(changes)
    return jwt.encode({"alg": "ES256", "kid": "agent-key-1"}, claims, AGENT_KEY)


async def keyed_token(base: str, signed: str) -> httpx2.Response:
    form = {
        "grant_type": "client_credentials",
        "resource": f"{base}/mcp/secure",
        "scope": "mcp",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
    }
    return await token_response(base, form)


async def test_private_key_jwt(base: str) -> None:
    """RFC 7523: a signed assertion authenticates; replaying it does not (case 11)."""
    signed = assertion(base)
    first = await keyed_token(base, signed)
    assert first.status_code == 200, first.text
    replay = await keyed_token(base, signed)
    assert (replay.status_code, replay.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "http://other-as.example/token"},
        {"sub": "someone-else"},
        {"exp": int(time.time()) - 120},
        {"exp": int(time.time()) + 3600},
        {"jti": None},
    ],
)
async def test_bad_client_assertions(base: str, changes: dict[str, Any]) -> None:
    """Case 11: foreign audience, iss != sub, expired, too far ahead, no jti -> invalid_client."""
    signed = assertion(base, **changes) if changes.get("jti", 1) is not None else _without_jti(base)
    response = await keyed_token(base, signed)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def _without_jti(base: str) -> str:
    now = int(time.time())
    claims = {"iss": "keyed-agent", "sub": "keyed-agent", "aud": f"{base}/oauth2/token", "exp": now + 60}
    return jwt.encode({"alg": "ES256", "kid": "agent-key-1"}, claims, AGENT_KEY)


async def test_revocation_and_introspection(base: str) -> None:
    """Case 9: a revoked token stops working at once; introspection reports it inactive."""
    token = await get_token(base)
    async with httpx2.AsyncClient(headers=basic("demo-agent")) as http:
        active = (await http.post(f"{base}/oauth2/introspect", data={"token": token})).json()
        assert active["active"] is True and active["aud"] == f"{base}/mcp/secure"
        foreign = await http.post(
            f"{base}/oauth2/introspect", data={"token": await get_token(base, "other-agent")}
        )
        assert foreign.json() == {"active": False}, "an agent may not inspect another agent's tokens"
        assert (await http.post(f"{base}/oauth2/revoke", data={"token": token})).status_code == 200
        assert (await http.post(f"{base}/oauth2/introspect", data={"token": token})).json() == {
            "active": False
        }
    response = await post_mcp(f"{base}/mcp/secure", {"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "revoked" in response.json()["error_description"]


async def test_legacy_session_is_bound_to_its_agent(base: str) -> None:
    """Another agent presenting a valid token of its own cannot use someone else's session id."""
    # Open a raw session as demo-agent, then present its id with other-agent's token.
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as raw:
        opened = await raw.post(
            f"{base}/mcp/secure",
            json=init,
            headers={"authorization": f"Bearer {await get_token(base)}", **accept},
        )
        sid = opened.headers["mcp-session-id"]
        stolen = await raw.post(
            f"{base}/mcp/secure",
            json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
            headers={
                "authorization": f"Bearer {await get_token(base, 'other-agent')}",
                "mcp-session-id": sid,
                "mcp-protocol-version": "2025-11-25",
                **accept,
            },
        )
    assert opened.status_code == 200
    assert stolen.status_code == 404


async def test_no_inbound_token_ever_reaches_an_upstream(
    recorder: tuple[RecordingApp, str], base: str
) -> None:
    """Case 15: the caller's bearer token is never forwarded; the upstream sees no Authorization."""
    app, _url = recorder
    token = await get_token(base)
    for mode in ("auto", "legacy"):
        http, client = authed(f"{base}/mcp/secure", token, mode)
        async with http, hold(client) as c:
            await c.list_tools()
            await c.call_tool("web__echo", {"text": "hi"})
    assert app.headers, "the upstream was called"
    for headers in app.headers:
        assert b"authorization" not in headers
        assert not any(token.encode() in v for v in headers.values())


async def test_restart_keeps_keys_and_registrations(
    recorder: tuple[RecordingApp, str], tmp_path: Path
) -> None:
    """The signing keys survive a restart (persisted in the database), so tokens issued before it
    keep verifying; registrations are there too."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}"
    async with secured(recorder[1], url) as first, httpx2.AsyncClient() as http:
        await get_token(first)
        jwks_before = (await http.get(f"{first}/oauth2/jwks.json")).json()
    async with secured(recorder[1], url) as second, httpx2.AsyncClient() as http:
        jwks_after = (await http.get(f"{second}/oauth2/jwks.json")).json()
        await get_token(second)
    assert jwks_before == jwks_after


async def test_key_rotation_while_serving(recorder: tuple[RecordingApp, str], tmp_path: Path) -> None:
    """`interlink keys rotate` against the live database: the running gateway publishes the next key
    within seconds, keeps signing with the current one until the next is due, and earlier tokens
    stay valid."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'interlink.db'}"
    config = tmp_path / "rotate.yaml"
    config.write_text(f'identity: {{database_url: "{url}"}}\n')
    async with secured(recorder[1], url) as base, httpx2.AsyncClient() as http:
        before = await get_token(base)
        (old_kid,) = [k["kid"] for k in (await http.get(f"{base}/oauth2/jwks.json")).json()["keys"]]
        command = [sys.executable, "-m", "gateway", "keys", "rotate", "--config", str(config)]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        async with asyncio.timeout(10):
            while len((await http.get(f"{base}/oauth2/jwks.json")).json()["keys"]) < 2:
                await asyncio.sleep(0.2)
        after = await get_token(base)
        assert _kid(after) == old_kid, "the new key signs only after one token lifetime"
        for token in (before, after):
            mcp_http, client = authed(f"{base}/mcp/secure", token)
            async with mcp_http, hold(client) as c:
                assert (await c.call_tool("web__add", {"a": 1, "b": 1})).structured_content == {"result": 2}


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def test_gateway_on_postgresql(recorder: tuple[RecordingApp, str]) -> None:
    """The same flow with registrations, keys and revocations in PostgreSQL."""
    url = os.environ.get("INTERLINK_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("INTERLINK_TEST_POSTGRES_URL is not set (CI sets it)")
    async with secured(recorder[1], url.replace("postgresql://", "postgresql+asyncpg://", 1)) as base:
        token = await get_token(base)
        http, client = authed(f"{base}/mcp/secure", token)
        async with http, hold(client) as c:
            assert (await c.call_tool("web__add", {"a": 4, "b": 4})).structured_content == {"result": 8}
        async with httpx2.AsyncClient(headers=basic("demo-agent")) as admin_http:
            await admin_http.post(f"{base}/oauth2/revoke", data={"token": token})
        response = await post_mcp(f"{base}/mcp/secure", {"authorization": f"Bearer {token}"})
        assert response.status_code == 401


EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


async def exchange(
    base: str, actor: str, subject_token: str, resource: str, scope: str | None = None
) -> httpx2.Response:
    form = {
        "grant_type": EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS,
        "resource": f"{base}/mcp/{resource}",
    }
    if scope:
        form["scope"] = scope
    return await token_response(base, form, basic(actor))


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def test_token_exchange_for_delegation(base: str) -> None:
    """Case 14, allowed path: the orchestrator acts for demo-agent on another virtual server; the new
    token keeps the subject, records the actor in `act`, narrows scope and never outlives the subject
    token; a second hop nests the chain."""
    subject = await get_token(base)
    response = await exchange(base, "orchestrator", subject, "payroll")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == ACCESS and body["scope"] == "mcp"
    claims, original = claims_of(body["access_token"]), claims_of(subject)
    assert (claims["sub"], claims["client_id"], claims["act"]) == (
        "demo-agent",
        "orchestrator",
        {"sub": "orchestrator"},
    )
    assert claims["aud"] == f"{base}/mcp/payroll" and claims["exp"] <= original["exp"]
    http, client = authed(f"{base}/mcp/payroll", body["access_token"])
    async with http, hold(client) as c:
        assert "demo__lookup_person" in {t.name for t in (await c.list_tools()).tools}
    second = await exchange(base, "relay", body["access_token"], "payroll")
    assert second.status_code == 200, second.text
    chain = claims_of(second.json()["access_token"])
    assert chain["sub"] == "demo-agent"
    assert chain["act"] == {"sub": "relay", "act": {"sub": "orchestrator"}}


@pytest.mark.parametrize(
    ("actor", "resource", "scope", "status", "error"),
    [
        ("other-agent", "secure", None, 400, "invalid_grant"),  # not allowed to act for demo-agent
        ("orchestrator", "secure", "mcp read", 400, "invalid_scope"),  # widening beyond the subject
        ("orchestrator", "nowhere", None, 400, "invalid_target"),
        ("relay", "payroll", None, 400, "invalid_grant"),  # relay may act for the orchestrator only
    ],
)
async def test_token_exchange_refusals(
    base: str, actor: str, resource: str, scope: str | None, status: int, error: str
) -> None:
    """Case 14: who may act, scope only narrows, audience must be registered for the actor."""
    response = await exchange(base, actor, await get_token(base), resource, scope)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text


async def test_token_exchange_with_a_bad_subject_token(base: str) -> None:
    response = await exchange(base, "orchestrator", "not-a-token", "payroll")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


async def test_two_authorization_headers_are_refused(base: str) -> None:
    """Case 8: duplicate Authorization headers are ambiguous: 400 invalid_request."""
    token = await get_token(base)
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base}/mcp/secure",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers=[("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")],
        )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def _unsigned_assertion(base: str) -> str:
    now = int(time.time())
    claims = {"iss": "keyed-agent", "sub": "keyed-agent", "aud": f"{base}/oauth2/token", "exp": now + 60}
    claims["jti"] = f"j-{time.monotonic_ns()}"
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}."


def _hs256_assertion(base: str) -> str:
    now = int(time.time())
    claims = {"iss": "keyed-agent", "sub": "keyed-agent", "aud": f"{base}/oauth2/token", "exp": now + 60}
    claims["jti"] = f"j-{time.monotonic_ns()}"
    public = json.dumps(AGENT_KEY.as_dict(private=False)).encode()
    head = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "agent-key-1"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signing_input = head + b"." + body
    mac = base64.urlsafe_b64encode(hmac.new(public, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + mac).decode()


@pytest.mark.parametrize("forge", [_unsigned_assertion, _hs256_assertion])
async def test_forged_client_assertions(base: str, forge: Any) -> None:
    """Case 11: an unsigned assertion, or one HMAC-signed with the agent's public key."""
    response = await keyed_token(base, forge(base))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
