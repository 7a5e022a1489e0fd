"""Shared test helpers: run ASGI apps under uvicorn on ephemeral loopback ports, and build gateways."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import uvicorn
from starlette.types import ASGIApp

from gateway.app import create_app
from gateway.settings import GatewaySettings

T = TypeVar("T")

MEMORY_DB = "sqlite+aiosqlite:///:memory:"
"""A private in-memory database per gateway, so tests leave no files behind."""

UPSTREAM_SERVER = Path(__file__).parent / "upstream_server.py"
"""Our small test MCP server (stdio by default, `--http PORT` for HTTP)."""


@asynccontextmanager
async def serve(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Run `app` under uvicorn on an ephemeral loopback port (or the given bound socket); yield its
    base URL."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))

    async def run(sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn calls sys.exit() when startup fails
            raise RuntimeError(f"uvicorn failed to start (exit code {exc.code})") from None

    with sock or bound_socket() as sock:
        task = asyncio.create_task(run(sock))
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
            host, port = sock.getsockname()
            yield f"http://{host}:{port}"
        finally:
            server.should_exit = True
            async with asyncio.timeout(10):
                await task


@asynccontextmanager
async def gateway(**settings: Any) -> AsyncIterator[str]:
    """A gateway built from `GatewaySettings(**settings)`, served on loopback; yields its base URL.

    Virtual servers are public unless a test says otherwise (identity is tested on its own)."""
    virtuals = [{"public": True, **v} for v in settings.pop("virtual_servers", [])]
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity = {"database_url": MEMORY_DB, "public_url": base, **settings.pop("identity", {})}
    audit = {"database_url": MEMORY_DB, **settings.pop("audit", {})}
    app = create_app(GatewaySettings(virtual_servers=virtuals, identity=identity, audit=audit, **settings))
    async with serve(app, sock) as url:
        yield url


async def issued_token(
    base: str, client_id: str, secret: str, resource: str, scope: str, *, resource_base: str | None = None
) -> str:
    """An access token from the gateway at `base` for `<resource_base or base>/<resource>` (e.g.
    `mcp/desk`, `a2a/helpdesk`, `a2a`), by client credentials with HTTP Basic authentication."""
    form = {
        "grant_type": "client_credentials",
        "resource": f"{resource_base or base}/{resource}",
        "scope": scope,
    }
    async with httpx2.AsyncClient() as http:
        answer = await http.post(f"{base}/oauth2/token", data=form, auth=(client_id, secret))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def bound_socket() -> socket.socket:
    """A loopback socket bound to a free port, so a URL is known before the server starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def stdio_upstream(name: str, *extra_args: str, **options: Any) -> dict[str, Any]:
    """Config for our test server as a stdio child process."""
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(UPSTREAM_SERVER), *extra_args],
        **options,
    }


@asynccontextmanager
async def hold(cm: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit `cm` in one dedicated task, so an async fixture may hold an anyio context.

    pytest-asyncio may run a fixture's setup and teardown in different tasks, which anyio cancel
    scopes (inside every MCP client) forbid.
    """
    entered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def owner() -> None:
        try:
            async with cm as value:
                entered.set_result(value)
                await release.wait()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            raise

    task = asyncio.create_task(owner())
    try:
        async with asyncio.timeout(30):
            value = await entered
        yield value
    finally:
        release.set()
        async with asyncio.timeout(30):
            await task
