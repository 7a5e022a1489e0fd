"""Wiring of `transport: a2a` upstreams: a downstream agent of the A2A face (`RemoteAgent`) as the
bridge's `Downstream` (adapters/bridge/a2a_tools.py), its A2A governor, and the shared secret the
bridge's continuations are sealed with (derived from the A2A push key, which replicas share)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from a2a.client import Client, ClientCallContext
from a2a.server.context import ServerCallContext
from a2a.types import AgentCard

from adapters.a2a.proxy import SCOPE_KEY
from adapters.bridge.a2a_tools import A2AToolProvider
from gateway.a2a_face import RemoteAgent, push_key
from gateway.auth import PRINCIPAL
from gateway.enforce import Governor
from gateway.settings import A2AToolsUpstream, GatewaySettings
from identity.tokens import Principal


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
        governor,
        skills=upstream.skills,
        call_timeout_s=upstream.call_timeout_s,
        secret=lambda: push_key(key_path),
        caller_of=caller_key,
    )
