"""Policy enforcement for the protocol faces: builds the protocol-neutral request from the
authenticated caller and the call, and turns a deny into `PolicyDenied` (never reaching the upstream).

Only protected virtual servers are governed: a public one has no caller identity to decide on.
With no `policy` in the configuration, a valid token with the required scopes is enough."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from gateway.auth import PRINCIPAL
from gateway.errors import PolicyDenied
from identity.policy import Policy, Request, evaluate, visible
from identity.tokens import Principal

log = structlog.get_logger(__name__)


class Enforcer:
    """The `Authorizer` of one virtual server."""

    def __init__(self, policy: Policy, virtual: str, clock: Callable[[], float] = time.time) -> None:
        self._policy = policy
        self._virtual = virtual
        self._clock = clock

    def _request(self, principal: Principal, action: str, name: str, args: Mapping[str, Any]) -> Request:
        return Request(
            agent=principal.client_id,
            tenant=principal.tenant,
            action=action,
            resource=f"mcp:{self._virtual}/{name}",
            args=args,
            now=datetime.fromtimestamp(self._clock(), UTC),
        )

    def check(self, scope: Mapping[str, Any], action: str, name: str, args: Mapping[str, Any]) -> None:
        principal = scope.get(PRINCIPAL)
        if principal is None:
            return
        decision = evaluate(self._policy, self._request(principal, action, name, args))
        log.info(
            "policy_decision",
            agent=principal.client_id,
            action=action,
            resource=f"mcp:{self._virtual}/{name}",
            allow=decision.allow,
            rule=decision.rule,
            policy_version=decision.policy_version,
        )
        if not decision.allow:
            detail = {"rule": decision.rule} if decision.rule else {}
            raise PolicyDenied(f"{action} {name!r} denied: {decision.reason}", **detail)

    def shows(self, scope: Mapping[str, Any], action: str, name: str) -> bool:
        principal = scope.get(PRINCIPAL)
        if principal is None:
            return True
        return visible(self._policy, self._request(principal, action, name, {}))
