"""Turns the upstream section of the settings into pool specs: secrets resolved, clients ready to build.

Secrets are read here, once, at start-up; a missing variable or file fails start-up (and
`interlink check`) with its name, never its value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx2
from mcp import Client
from mcp.client.session import MessageHandlerFnT

from adapters.mcp.clients import http_client, inprocess_client, stdio_client
from adapters.mcp.credentials import BearerAuth, TokenSource, client_credentials
from adapters.mcp.pool import UpstreamSpec
from gateway import __version__
from gateway.demo import build_demo_server
from gateway.settings import (
    BuiltinUpstream,
    ConfigError,
    HttpUpstream,
    InterlinkTokenAuth,
    McpUpstream,
    SecretRef,
    StdioUpstream,
)


def resolve_values(values: Mapping[str, str | SecretRef], where: str) -> dict[str, str]:
    """Literal strings pass; SecretRefs are read now. Errors name `where` and the key, not the value."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, SecretRef):
            try:
                out[key] = value.resolve()
            except ConfigError as exc:
                raise ConfigError(f"{where}.{key}: {exc}") from None
        else:
            out[key] = value
    return out


Minter = Callable[[str, list[str]], TokenSource]
"""(audience, scopes) -> a source of Interlink-signed tokens for that audience."""


def build_spec(upstream: McpUpstream, mint: Minter | None = None) -> UpstreamSpec:
    """The pool spec for one configured upstream; `mint` serves `auth: {kind: interlink}`."""
    connect = _connector(upstream, mint)
    return UpstreamSpec(
        name=upstream.name,
        connect=connect,
        eager=upstream.start == "eager",
        call_timeout_s=upstream.call_timeout_s,
        connect_timeout_s=upstream.connect_timeout_s,
        backoff_s=upstream.restart_backoff_s,
        backoff_max_s=upstream.restart_backoff_max_s,
        health_interval_s=upstream.health_interval_s,
    )


def _auth(upstream: HttpUpstream, mint: Minter | None) -> httpx2.Auth | None:
    auth = upstream.auth
    if auth is None:
        return None
    if isinstance(auth, InterlinkTokenAuth):
        if mint is None:
            raise ConfigError(f"upstreams.{upstream.name}.auth: interlink tokens need the gateway's identity")
        return BearerAuth(mint(auth.audience or upstream.url, auth.scopes))
    secret = resolve_values({"client_secret": auth.client_secret}, f"upstreams.{upstream.name}.auth")
    source = client_credentials(
        upstream.name,
        auth.token_url,
        auth.client_id,
        secret["client_secret"],
        scope=auth.scope,
        resource=auth.resource or upstream.url,
        timeout_s=upstream.connect_timeout_s,
    )
    return BearerAuth(source)


def _connector(upstream: McpUpstream, mint: Minter | None) -> Callable[[MessageHandlerFnT], Client]:
    where = f"upstreams.{upstream.name}"
    if isinstance(upstream, StdioUpstream):
        env = resolve_values(upstream.env, f"{where}.env")
        return lambda on_message: stdio_client(
            upstream.command,
            upstream.args,
            env,
            upstream.cwd,
            version=__version__,
            mode=upstream.protocol,
            on_message=on_message,
        )
    if isinstance(upstream, HttpUpstream):
        headers = resolve_values(upstream.headers, f"{where}.headers")
        auth = _auth(upstream, mint)
        return lambda on_message: http_client(
            upstream.url,
            headers,
            connect_timeout_s=upstream.connect_timeout_s,
            call_timeout_s=upstream.call_timeout_s,
            version=__version__,
            mode=upstream.protocol,
            on_message=on_message,
            auth=auth,
        )
    assert isinstance(upstream, BuiltinUpstream)
    demo = build_demo_server()
    return lambda on_message: inprocess_client(demo, version=__version__, on_message=on_message)
