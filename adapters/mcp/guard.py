"""Pre-checks on MCP POST bodies, so every malformed request gets a JSON-RPC error with the right status.

The SDK answers a too-large body or a wrong Content-Type with plain text; a gateway's callers deserve
the same JSON-RPC shape (and a stable `reason`) as every other error. The body is read once, bounded by
the limit, and replayed to the SDK unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.mcp.errors import REASON_CODES


def error_body(reason: str, message: str, request_id: Any = None) -> tuple[int, bytes]:
    """(HTTP status, JSON-RPC error body) for a failure the gateway answers itself (JSON-RPC 2.0 §5.1)."""
    code, status = REASON_CODES[reason]
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": {"reason": reason}},
    }
    return status, json.dumps(body, separators=(",", ":")).encode()


async def send_error(send: Send, reason: str, message: str, request_id: Any = None) -> None:
    status, body = error_body(reason, message, request_id)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class McpRequestGuard:
    """Checks Content-Type and size of POST bodies before the SDK sees them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            await send_error(send, "unsupported_media_type", "Content-Type must be application/json")
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, "payload_too_large", f"request body exceeds {self.max_body_bytes} bytes")
            return
        body = await self._read(receive)
        if body is None:
            await send_error(send, "payload_too_large", f"request body exceeds {self.max_body_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later reads wait for the client's disconnect, as the SDK expects

    return replay
