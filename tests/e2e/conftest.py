"""Fixtures for end-to-end tests: a gateway in front of a stdio, an HTTP and an in-process upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests import upstream_server
from tests.support import gateway, serve, stdio_upstream


@pytest.fixture
async def http_upstream() -> AsyncIterator[str]:
    """Our test server over streamable HTTP on a loopback port; yields its MCP URL."""
    async with serve(upstream_server.build().streamable_http_app()) as url:
        yield f"{url}/mcp"


@pytest.fixture
async def federation(http_upstream: str) -> AsyncIterator[str]:
    """A gateway whose virtual server `all` fronts three upstreams; yields the gateway's base URL."""
    async with gateway(
        upstreams=[
            stdio_upstream("stdio", start="eager"),
            {"name": "web", "transport": "http", "url": http_upstream},
            {"name": "demo", "transport": "builtin"},
        ],
        virtual_servers=[
            {
                "name": "all",
                "upstreams": ["stdio", "web", "demo"],
                "tools": {"exclude": ["*/crash"]},
            }
        ],
    ) as url:
        yield url
