"""The gateway's own failure types; each carries a stable `reason` and an HTTP status as class attributes.

Messages are safe to show to the caller: they never contain tokens, secrets, upstream URLs or tracebacks.
Each protocol adapter maps `reason` to its wire code in its own `REASON_CODES` table.

    GatewayError
    ├── RequestError                 the caller's request is wrong
    │   ├── UnknownVirtualServer     no virtual server of that name (404)
    │   ├── UnknownTool              no such tool on this virtual server
    │   ├── UnknownSkill             no such skill on this (published) A2A agent
    │   ├── UnknownPrompt            no such prompt on this virtual server
    │   ├── UnknownResource          no upstream of this virtual server serves that URI
    │   ├── InvalidArguments         arguments do not match the tool's input schema
    │   ├── PolicyDenied             the policy does not allow this caller this call (403)
    │   └── ToolNotApproved          the tool's current definition was never approved (403)
    └── UpstreamError                the upstream could not give an answer
        ├── UpstreamUnavailable      not running, refused, died or restarting (502)
        └── UpstreamTimeout          no answer within the configured timeout (504)
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base of every error the gateway generates itself."""

    reason: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **detail: str) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        """Extra safe fields for the error's `data` (e.g. `upstream`)."""


class RequestError(GatewayError):
    reason = "invalid_request"
    http_status = 400


class UnknownVirtualServer(RequestError):
    reason = "unknown_virtual_server"
    http_status = 404


class UnknownTool(RequestError):
    reason = "unknown_tool"


class UnknownSkill(RequestError):
    reason = "unknown_skill"


class UnknownWebhook(RequestError):
    """A downstream agent's webhook call names no webhook Interlink registered (gateway/a2a_hooks.py)."""

    reason = "unknown_webhook"
    http_status = 404


class WebhookRefused(RequestError):
    reason = "invalid_webhook_token"
    http_status = 401


class WebhookTooLarge(RequestError):
    reason = "payload_too_large"
    http_status = 413


class InvalidWebhook(RequestError):
    reason = "invalid_webhook_payload"
    http_status = 400


class UnknownPrompt(RequestError):
    reason = "unknown_prompt"


class UnknownResource(RequestError):
    reason = "unknown_resource"
    http_status = 404


class InvalidArguments(RequestError):
    reason = "invalid_arguments"


class PolicyDenied(RequestError):
    reason = "policy_denied"
    http_status = 403


class ToolNotApproved(RequestError):
    """Tool pinning: the upstream changed the tool since it was approved, or it is new."""

    reason = "tool_not_approved"
    http_status = 403


class UpstreamError(GatewayError):
    reason = "upstream_error"
    http_status = 502


class UpstreamUnavailable(UpstreamError):
    reason = "upstream_unavailable"
    http_status = 502


class UpstreamTimeout(UpstreamError):
    reason = "upstream_timeout"
    http_status = 504
