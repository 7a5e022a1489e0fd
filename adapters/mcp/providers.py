"""Tool providers: upstreams of a virtual server that are not MCP servers (the protocol bridges).

A provider serves tools only: an OpenAPI document's operations, or an A2A agent's skills. The virtual
server lists, namespaces, pins, validates, governs and audits a provider's tools exactly as an MCP
upstream's, then hands the call to the provider in-process (no extra hop), with the caller's request
scope so a bridge can delegate the caller's identity and be governed in its own protocol too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcp_types import CallToolResult, InputRequiredResult, Tool

from adapters.mcp.pool import UpstreamStatus


class ProgressFn(Protocol):
    """Reports progress to the caller."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


@dataclass(frozen=True)
class ProviderCall:
    """One governed, validated tool call handed to a provider."""

    virtual: str
    """The virtual server the caller called."""
    exposed: str
    """The tool's name as the caller called it (namespaced)."""
    tool: Tool
    """The provider's own definition of the tool (its name, not the exposed one)."""
    arguments: Mapping[str, Any]
    """Validated against the tool's input schema."""
    scope: Mapping[str, Any]
    """The caller's ASGI request scope; the authenticated principal travels in it (the gateway's key)."""
    progress: ProgressFn | None = None
    """Set when the caller asked for progress notifications."""
    can_elicit: bool = False
    """The caller can answer an elicitation: the provider may return an `InputRequiredResult`
    carrying `elicitation/create` requests (the virtual server asks a handshake-era caller itself
    and passes the result through to a 2026-07-28 one, which retries with `input_responses`)."""
    input_responses: Mapping[str, Any] | None = None
    request_state: str | None = None
    """On a retried call: the caller's answers and the state the provider returned (opaque to the
    caller; a provider must authenticate what it puts there)."""
    meta: Mapping[str, Any] = field(default_factory=dict)


class ToolProvider(Protocol):
    """A virtual server's non-MCP upstream. `name` is its upstream name (unique among upstreams)."""

    name: str

    async def start(self) -> None:
        """Called once by the gateway's lifespan before any call (load a document, open clients);
        a failure here is reported by `status()`, never raised: the gateway serves the others."""
        ...

    async def stop(self) -> None:
        """Called once at shutdown."""
        ...

    async def tools(self, *, refresh: bool = False) -> dict[str, Tool]:
        """The provider's tools by their own names."""
        ...

    def bridged(self, tool: Tool) -> str | None:
        """The resource a call of `tool` becomes in the other protocol (`a2a:<agent>/<skill>`),
        recorded with the MCP call's audit record; None when it leaves the gateway's protocols."""
        ...

    def shows(self, scope: Mapping[str, Any], tool: Tool) -> bool:
        """Whether the caller in `scope` may be shown `tool` as far as the system behind is
        concerned (the virtual server's own policy decides too): lists show only what may be used."""
        ...

    async def call_tool(self, call: ProviderCall) -> CallToolResult | InputRequiredResult:
        """Run the call; a failure of the system behind is a tool error result (`is_error`) or a
        GatewayError (the MCP face maps it), never a leak of URLs or credentials."""
        ...

    def status(self) -> UpstreamStatus:
        """Its state for `/readyz` (no URLs, no secrets)."""
        ...
