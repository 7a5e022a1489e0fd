"""Builders for the SDK clients the gateway holds to its upstreams (stdio, streamable HTTP, in-process).

Every upstream client is built the same way: no response cache (one client serves many callers, and a
cached answer for one must never reach another), the gateway's own client identity, and elicitation /
sampling callbacks that decline, so a handshake-era upstream asking for input gets a clean error
instead of a hang (modern-era input requests are relayed by the virtual server instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client._transport import TransportStreams
from mcp.client.client import ConnectMode
from mcp.client.session import ClientRequestContext, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    INTERNAL_ERROR,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    Implementation,
)


async def _decline_elicitation(
    context: ClientRequestContext, params: ElicitRequestParams
) -> ElicitResult | ErrorData:
    return ErrorData(
        code=INTERNAL_ERROR, message="Interlink does not relay elicitation from handshake-era upstreams"
    )


async def _decline_sampling(
    context: ClientRequestContext, params: CreateMessageRequestParams
) -> CreateMessageResult | ErrorData:
    return ErrorData(
        code=INTERNAL_ERROR, message="Interlink does not relay sampling from handshake-era upstreams"
    )


UPSTREAM_LIMITS: Final = httpx2.Limits(max_connections=100, max_keepalive_connections=100)
"""Concurrent requests to one HTTP upstream; all may stay open between calls (no reconnect churn)."""


def _client(
    server: Any, version: str, on_message: MessageHandlerFnT | None, mode: ConnectMode = "auto"
) -> Client:
    return Client(
        server,
        mode=mode,
        cache=None,
        client_info=Implementation(name="interlink", version=version),
        elicitation_callback=_decline_elicitation,
        sampling_callback=_decline_sampling,
        message_handler=on_message,
    )


def stdio_client(
    command: str,
    args: list[str],
    env: Mapping[str, str],
    cwd: Path | None,
    *,
    version: str,
    mode: ConnectMode = "auto",
    on_message: MessageHandlerFnT | None = None,
) -> Client:
    """A client that runs `command` as a child process (environment: a safe default set plus `env`)."""
    params = StdioServerParameters(command=command, args=args, env=dict(env) or None, cwd=cwd)
    return _client(params, version, on_message, mode)


@asynccontextmanager
async def _http_transport(
    url: str,
    headers: Mapping[str, str],
    connect_timeout_s: float,
    call_timeout_s: float,
    auth: httpx2.Auth | None,
) -> AsyncIterator[TransportStreams]:
    timeout = httpx2.Timeout(call_timeout_s, connect=connect_timeout_s)
    async with httpx2.AsyncClient(
        headers=dict(headers), auth=auth, timeout=timeout, limits=UPSTREAM_LIMITS, follow_redirects=False
    ) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


def http_client(
    url: str,
    headers: Mapping[str, str],
    *,
    connect_timeout_s: float,
    call_timeout_s: float,
    version: str,
    mode: ConnectMode = "auto",
    on_message: MessageHandlerFnT | None = None,
    auth: httpx2.Auth | None = None,
) -> Client:
    """A client for a streamable-HTTP upstream; `headers` and `auth` carry the gateway's own
    credential for it (never a caller's)."""
    transport = _http_transport(url, headers, connect_timeout_s, call_timeout_s, auth)
    return _client(transport, version, on_message, mode)


def inprocess_client(server: Any, *, version: str, on_message: MessageHandlerFnT | None = None) -> Client:
    """A client for a server object living in this process (the built-in demo)."""
    return _client(server, version, on_message)
