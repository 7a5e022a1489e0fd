"""OAuth 2.0 failures, each carrying its wire `error` code and HTTP status as class attributes.

Messages are `error_description` text: safe to show, never containing tokens, secrets or key material.
Imports nothing from the gateway or the adapters.

    IdentityError
    ├── TokenEndpointError           RFC 6749 §5.2 (token endpoint) answers
    │   ├── InvalidRequest           400 invalid_request
    │   ├── InvalidClient            401 invalid_client (unknown, disabled or badly authenticated agent)
    │   ├── InvalidGrant             400 invalid_grant
    │   ├── UnauthorizedClient       400 unauthorized_client
    │   ├── UnsupportedGrantType     400 unsupported_grant_type
    │   ├── InvalidScope             400 invalid_scope
    │   └── InvalidTarget            400 invalid_target (RFC 8707 §2: bad or unregistered `resource`)
    └── BearerError                  RFC 6750 §3.1 (resource server) answers
        ├── InvalidToken             401 invalid_token (missing, malformed, expired, foreign, revoked)
        └── InsufficientScope        403 insufficient_scope
"""

from __future__ import annotations

from typing import ClassVar


class IdentityError(Exception):
    """Base of every identity failure."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 500

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class TokenEndpointError(IdentityError):
    error = "invalid_request"
    status_code = 400


class InvalidRequest(TokenEndpointError):
    error = "invalid_request"


class InvalidClient(TokenEndpointError):
    error = "invalid_client"
    status_code = 401


class InvalidGrant(TokenEndpointError):
    error = "invalid_grant"


class UnauthorizedClient(TokenEndpointError):
    error = "unauthorized_client"


class UnsupportedGrantType(TokenEndpointError):
    error = "unsupported_grant_type"


class InvalidScope(TokenEndpointError):
    error = "invalid_scope"


class InvalidTarget(TokenEndpointError):
    error = "invalid_target"


class BearerError(IdentityError):
    error = "invalid_token"
    status_code = 401


class InvalidToken(BearerError):
    error = "invalid_token"
    status_code = 401


class InsufficientScope(BearerError):
    error = "insufficient_scope"
    status_code = 403

    def __init__(self, description: str, required: tuple[str, ...]) -> None:
        super().__init__(description)
        self.required = required
