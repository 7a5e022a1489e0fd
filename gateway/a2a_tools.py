"""Wiring of `transport: a2a` upstreams: a downstream agent of the A2A face (`RemoteAgent`) as the
bridge's `Downstream` (adapters/bridge/a2a_tools.py), its A2A governor behind the agent's own
admission (`AgentGate`), and the shared secret the bridge's continuations are sealed with (derived
from the A2A push key, which replicas share)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from a2a.client import Client, ClientCallContext
from a2a.server.context import ServerCallContext
from a2a.types import AgentCard

from adapters.a2a.proxy import SCOPE_KEY
from adapters.bridge.a2a_tools import A2AToolProvider
from gateway.a2a_face import RemoteAgent, push_key
from gateway.auth import PRINCIPAL
from gateway.enforce import Governor
from gateway.errors import PolicyDenied
from gateway.settings import A2AToolsUpstream, GatewaySettings, RemoteAgentSettings
from identity.tokens import Principal

T = TypeVar("T")


def admission(settings: RemoteAgentSettings, scope: Mapping[str, Any]) -> tuple[str, PolicyDenied] | None:
    """Why a bridged call may not reach this agent, or None: what the agent's own endpoint checks
    at its edge (RFC 6750 §3.1), which a bridged call never passed. A protected agent (not `public`)
    takes an authenticated caller only, whose token (the one for the virtual server) carries every
    one of the agent's `required_scopes`. Refused as `policy_denied` (the caller did authenticate,
    to the virtual server; a 401/403 challenge has no place inside a tool call), its data naming
    the scopes needed; the A2A record's decision says `authentication_required` or
    `insufficient_scope`."""
    if settings.public:
        return None
    needed = " ".join(settings.required_scopes)
    principal = scope.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        message = f"agent {settings.name!r} takes authenticated callers only (a token with scope {needed})"
        return "authentication_required", PolicyDenied(message, required_scope=needed)
    missing = [s for s in settings.required_scopes if s not in principal.scopes]
    if not missing:
        return None
    message = (
        f"agent {settings.name!r} needs a token with scope {needed} (this one lacks {' '.join(missing)})"
    )
    return "insufficient_scope", PolicyDenied(message, required_scope=needed)


class AgentGate:
    """The agent's governor as the bridge sees it (a `CallGovernor`): before the agent's policy
    decides a message, the agent's admission (`admission`)."""

    def __init__(self, governor: Governor, settings: RemoteAgentSettings) -> None:
        self._governor = governor
        self._settings = settings

    async def check(
        self,
        scope: Mapping[str, Any],
        action: str,
        name: str,
        args: Mapping[str, Any],
        definition: Any = None,
        bridge: str | None = None,
    ) -> None:
        refused = admission(self._settings, scope)
        if refused is not None:
            self._governor.refuse(*refused, bridge=bridge)
        await self._governor.check(scope, action, name, args, definition, bridge)

    async def around(
        self,
        scope: Mapping[str, Any],
        method: str,
        name: str | None,
        args: Mapping[str, Any] | None,
        run: Callable[[], Awaitable[T]],
        meta: Mapping[str, Any] | None = None,
    ) -> T:
        return await self._governor.around(scope, method, name, args, run, meta)

    def shows(self, scope: Mapping[str, Any], action: str, name: str) -> bool:
        """Admitted to the agent, and shown by its policy."""
        return admission(self._settings, scope) is None and self._governor.shows(scope, action, name)


class AgentDownstream:
    """A `RemoteAgent` as the bridge sees it: its card, client, breaker, slots, and the per-call
    credential built from the caller's ASGI scope (as its A2A endpoint builds it)."""

    def __init__(self, agent: RemoteAgent) -> None:
        self._agent = agent
        self.name = agent.name
        self.timeout_s = agent.timeout_s
        self.slots = agent.slots

    @property
    def card(self) -> AgentCard | None:
        return self._agent.card

    def client(self) -> Client:
        return self._agent.client()

    async def call_context(self, scope: Mapping[str, Any]) -> ClientCallContext:
        # Defence in depth: never a credential (with `kind: interlink`, a token naming the gateway
        # itself as the subject) for a caller the agent would not admit.
        refused = admission(self._agent.settings, scope)
        if refused is not None:
            raise refused[1]
        return await self._agent.call_context_for(ServerCallContext(state={SCOPE_KEY: scope}))

    def record(self, ok: bool) -> None:
        self._agent.record(ok)

    def readiness(self) -> tuple[str, str | None]:
        return self._agent.status.state, self._agent.status.last_error


def caller_key(scope: Mapping[str, Any]) -> str:
    """Who a continuation is bound to: issuer, tenant, client and subject of the caller's token
    (empty on a public virtual server, which has no caller identity)."""
    principal = scope.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        return ""
    return json.dumps([principal.issuer, principal.tenant, principal.client_id, principal.subject])


def a2a_tool_provider(
    upstream: A2AToolsUpstream, agent: RemoteAgent, governor: Governor, settings: GatewaySettings
) -> A2AToolProvider:
    key_path = settings.a2a_push.key_path(settings.identity.database_url)
    return A2AToolProvider(
        upstream.name,
        AgentDownstream(agent),
        AgentGate(governor, agent.settings),
        skills=upstream.skills,
        call_timeout_s=upstream.call_timeout_s,
        secret=lambda: push_key(key_path),
        caller_of=caller_key,
    )
