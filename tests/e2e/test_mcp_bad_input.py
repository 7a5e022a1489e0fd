"""Bad input on the MCP face: each gets its precise HTTP status and JSON-RPC error, and the gateway
keeps serving. Raw HTTP on purpose: the official client never sends these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

from tests.support import gateway

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
LIMIT = 4096


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with gateway(
        upstreams=[{"name": "demo", "transport": "builtin"}],
        virtual_servers=[{"name": "demo", "upstreams": ["demo"]}],
        limits={"max_body_bytes": LIMIT},
    ) as url:
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            yield client


def modern(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    """Keyword arguments for a 2026-07-28 request: envelope in `_meta` plus the routing headers."""
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": META}}
    headers = {**JSON, "mcp-protocol-version": MODERN, "mcp-method": method}
    if "name" in (params or {}):
        headers["mcp-name"] = str(params["name"])  # type: ignore[index]
    return {"json": body, "headers": headers}


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC error object, from a JSON body or the first SSE `data:` line."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    parsed: dict[str, Any] = httpx2.Response(200, content=text).json()
    return parsed["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("label", "content", "status", "code"),
    [
        ("malformed JSON", b"{nope", 400, PARSE_ERROR),
        ("not JSON-RPC", b'{"x": 1}', 400, INVALID_REQUEST),
        ("batch array", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, INVALID_REQUEST),
    ],
)
async def test_unparseable_bodies(
    http: httpx2.AsyncClient, label: str, content: bytes, status: int, code: int
) -> None:
    """Bodies that are not one JSON-RPC message get 400 and the JSON-RPC 2.0 §5.1 code."""
    response = await http.post("/mcp/demo", content=content, headers={**JSON, "mcp-protocol-version": MODERN})
    assert response.status_code == status, label
    assert error_of(response)["code"] == code, label


async def test_unknown_method(http: httpx2.AsyncClient) -> None:
    """An unknown method is -32601 with HTTP 404 on the modern wire."""
    response = await http.post("/mcp/demo", **modern("foo/bar"))
    assert response.status_code == 404
    assert error_of(response)["code"] == METHOD_NOT_FOUND


async def test_unknown_tool(http: httpx2.AsyncClient) -> None:
    """An unknown tool is -32602 with reason unknown_tool, and the caller's id is echoed."""
    response = await http.post(
        "/mcp/demo", **modern("tools/call", {"name": "x", "arguments": {}}, request_id=41)
    )
    assert response.status_code == 400
    assert response.json()["id"] == 41
    error = error_of(response)
    assert (error["code"], error["data"]["reason"]) == (INVALID_PARAMS, "unknown_tool")


async def test_wrong_argument_types(http: httpx2.AsyncClient) -> None:
    """A wrong argument type is rejected before the upstream, as a tool error naming the field."""
    call = modern("tools/call", {"name": "demo__lookup_person", "arguments": {"query": 42}})
    response = await http.post("/mcp/demo", **call)
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    assert result["_meta"]["io.interlink/reason"] == "invalid_arguments"
    assert "$.query" in result["content"][0]["text"]


async def test_oversized_body_declared(http: httpx2.AsyncClient) -> None:
    """A body over the configured limit is refused with 413 and reason payload_too_large."""
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"a" * LIMIT + b'"}}'
    response = await http.post("/mcp/demo", content=big, headers=JSON)
    assert response.status_code == 413
    assert error_of(response)["data"]["reason"] == "payload_too_large"


async def test_oversized_body_chunked(http: httpx2.AsyncClient) -> None:
    """A chunked body without Content-Length is counted as it streams and refused past the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    response = await http.post("/mcp/demo", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert error_of(response)["data"]["reason"] == "payload_too_large"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type(http: httpx2.AsyncClient, content_type: str) -> None:
    """Anything but application/json is 415 with reason unsupported_media_type."""
    headers = {**JSON, "content-type": content_type}
    response = await http.post(
        "/mcp/demo", content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}', headers=headers
    )
    assert response.status_code == 415
    assert error_of(response)["data"]["reason"] == "unsupported_media_type"


async def test_unknown_virtual_server(http: httpx2.AsyncClient) -> None:
    """A path naming no virtual server is 404 with reason unknown_virtual_server."""
    response = await http.post("/mcp/nope", **modern("ping"))
    assert response.status_code == 404
    assert error_of(response)["data"]["reason"] == "unknown_virtual_server"


async def test_legacy_session_errors(http: httpx2.AsyncClient) -> None:
    """On the 2025-11-25 handshake, errors ride the session's SSE stream with the same codes."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    response = await http.post("/mcp/demo", json=init, headers=JSON)
    session = {**JSON, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
    await http.post(
        "/mcp/demo", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
    )
    cases = [
        (b'{"jsonrpc":"2.0","id":3,"method":"foo/bar"}', METHOD_NOT_FOUND),
        (
            b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","arguments":{}}}',
            INVALID_PARAMS,
        ),
        (b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":5}}', INVALID_PARAMS),
        (b"{nope", PARSE_ERROR),
    ]
    for body, code in cases:
        response = await http.post("/mcp/demo", content=body, headers=session)
        assert error_of(response)["code"] == code, body


async def test_gateway_keeps_serving_after_bad_input(http: httpx2.AsyncClient) -> None:
    """After a burst of bad requests, a good call still succeeds."""
    for _ in range(5):
        await http.post("/mcp/demo", content=b"{nope", headers=JSON)
    call = modern("tools/call", {"name": "demo__lookup_person", "arguments": {"query": "ada"}})
    response = await http.post("/mcp/demo", **call)
    assert response.status_code == 200
    assert "Ada Lovelace" in response.text
