"""How the gateway's failure reasons appear on the MCP wire (JSON-RPC code and HTTP status).

MCP leaves -32000..-32019 to implementations and its SDK already uses -32000 (connection closed) and
-32001 (request timeout), so our own codes start at -32010. Spec-defined cases keep the spec's code:
unknown tool and invalid params are -32602 (MCP 2025-11-25 "Tools" §Error Handling), an unknown
resource is -32002 (MCP "Resources" §Error Handling). Our reason travels in `error.data.reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

from gateway.errors import GatewayError

RESOURCE_NOT_FOUND: Final = -32002
"""MCP's code for a resource URI nobody serves."""

REASON_CODES: Final[Mapping[str, tuple[int, int]]] = {
    "parse_error": (PARSE_ERROR, 400),
    "invalid_request": (INVALID_REQUEST, 400),
    "unsupported_media_type": (INVALID_REQUEST, 415),
    "not_acceptable": (INVALID_REQUEST, 406),
    "payload_too_large": (INVALID_REQUEST, 413),
    "method_not_found": (METHOD_NOT_FOUND, 404),
    "unknown_virtual_server": (METHOD_NOT_FOUND, 404),
    "unknown_agent": (METHOD_NOT_FOUND, 404),
    "session_not_found": (INVALID_REQUEST, 404),
    "unknown_tool": (INVALID_PARAMS, 200),
    "unknown_skill": (INVALID_PARAMS, 200),
    "unknown_prompt": (INVALID_PARAMS, 200),
    "unknown_resource": (RESOURCE_NOT_FOUND, 200),
    "invalid_arguments": (INVALID_PARAMS, 200),
    "policy_denied": (-32013, 403),
    "audit_unavailable": (-32014, 503),
    "rate_limited": (-32015, 429),
    "tool_not_approved": (-32016, 403),
    "approval_required": (-32017, 403),
    "approval_denied": (-32018, 403),
    "rate_limit_unavailable": (-32019, 503),
    "upstream_error": (-32012, 502),
    "upstream_unavailable": (-32010, 502),
    "upstream_timeout": (-32011, 504),
    "internal_error": (-32603, 500),
}
"""reason -> (JSON-RPC code, HTTP status). The status applies when the gateway answers before an MCP
exchange exists (bad body, unknown endpoint); inside an exchange MCP carries errors in a 200 response."""


def to_mcp_error(error: GatewayError) -> MCPError:
    """The JSON-RPC error the caller receives for `error` (message and data are safe to show)."""
    code, _status = REASON_CODES.get(error.reason, REASON_CODES["internal_error"])
    return MCPError(code, error.message, {"reason": error.reason, **error.detail})
