"""Builds the tool providers (adapters/mcp/providers.py) of the upstreams that are not MCP servers:
`transport: openapi` (a REST system's operations as tools) and `transport: a2a` (an A2A agent's
skills as tools). The MCP upstreams are the pool's (gateway/upstreams.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from adapters.mcp.providers import ToolProvider
from gateway.a2a_face import A2AFace
from gateway.a2a_tools import a2a_tool_provider
from gateway.auth import Identity
from gateway.enforce import Governor
from gateway.settings import A2AToolsUpstream, GatewaySettings, OpenApiUpstream


def build_providers(
    settings: GatewaySettings,
    *,
    identity: Identity,
    face: A2AFace,
    a2a_governors: Mapping[str, Governor],
    config_dir: Path | None = None,
) -> dict[str, ToolProvider]:
    """One provider per bridged upstream; secrets are resolved now (a missing one fails start-up)."""
    providers: dict[str, ToolProvider] = {}
    for upstream in settings.upstreams:
        if isinstance(upstream, OpenApiUpstream):
            providers[upstream.name] = _openapi(upstream, config_dir)
        elif isinstance(upstream, A2AToolsUpstream):
            providers[upstream.name] = _a2a_tools(upstream, face, a2a_governors, settings)
    return providers


def _openapi(upstream: OpenApiUpstream, config_dir: Path | None) -> ToolProvider:
    """A REST system's operations (gateway/openapi_upstream.py); a file document is converted now."""
    from gateway.openapi_upstream import build_openapi

    return build_openapi(upstream, config_dir)


def _a2a_tools(
    upstream: A2AToolsUpstream,
    face: A2AFace,
    a2a_governors: Mapping[str, Governor],
    settings: GatewaySettings,
) -> ToolProvider:
    return a2a_tool_provider(upstream, face.agents[upstream.agent], a2a_governors[upstream.agent], settings)
