"""Agent registrations and signing keys as operations, shared by the `interlink agents|keys`
commands and the admin HTTP API: validation, secrets shown once, revocation on disable."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.settings import GatewaySettings
from gateway.store import Store
from identity.agents import Agent, hash_secret, new_secret
from identity.keys import KeyRing, SigningKey, generate_key


class RegistryError(Exception):
    """A refused operation; `status` is the HTTP status the admin API answers with."""

    def __init__(self, message: str, status: int, error: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error


class NewAgent(BaseModel):
    """What registering an agent takes (the admin API's JSON body; the CLI's flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    tenant: str | None = None
    audiences: list[str] = Field(min_length=1)
    scopes: list[str] = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    """Public keys for private_key_jwt; without them the agent gets a development secret."""
    expires_at: datetime | None = None
    may_act_for: list[str] = []
    groups: list[str] = []


def describe(agent: Agent) -> dict[str, Any]:
    """An agent as shown to operators: everything but the secret hash."""
    shown = {k: v for k, v in agent.__dict__.items() if k != "secret_hash"}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in shown.items()}


class Registry:
    def __init__(self, store: Store, settings: GatewaySettings) -> None:
        self._store = store
        self._settings = settings

    async def all(self) -> list[Agent]:
        return await self._store.list_agents()

    async def get(self, client_id: str) -> Agent:
        agent = await self._store.agent(client_id)
        if agent is None:
            raise RegistryError(f"no agent {client_id!r}", 404)
        return agent

    async def add(self, new: NewAgent, *, source: str) -> tuple[Agent, str | None]:
        """Register; returns the agent and its development secret (None with `jwks`), shown once."""
        known = {f"mcp/{v.name}" for v in self._settings.virtual_servers}
        a2a = [a.name for a in self._settings.a2a_agents] + [p.name for p in self._settings.a2a_published]
        a2a += [r.name for r in await self._store.a2a_agents()]  # registered at run time
        known |= {f"a2a/{n}" for n in a2a} | ({"a2a"} if a2a else set())
        unknown = [a for a in new.audiences if a not in known]
        if unknown:
            listed = ", ".join(sorted(known)) or "none"
            raise RegistryError(f"unknown audience(s) {', '.join(unknown)}; known: {listed}", 422)
        if await self._store.agent(new.client_id) is not None:
            raise RegistryError(f"agent {new.client_id!r} exists", 409)
        secret = None if new.jwks else new_secret()
        agent = Agent(
            client_id=new.client_id,
            name=new.name,
            owner=new.owner,
            tenant=new.tenant,
            auth_method="private_key_jwt" if new.jwks else "client_secret",
            secret_hash=hash_secret(secret) if secret else None,
            jwks=new.jwks,
            audiences=tuple(new.audiences),
            scopes=tuple(new.scopes),
            expires_at=int(new.expires_at.timestamp()) if new.expires_at else None,
            may_act_for=tuple(new.may_act_for),
            groups=tuple(new.groups),
        )
        await self._store.put_agent(agent, source=source)
        return agent, secret

    async def set_enabled(self, client_id: str, enabled: bool, *, source: str) -> int:
        """Enable or disable; disabling revokes the agent's live tokens (returns how many)."""
        agent = await self.get(client_id)
        await self._store.put_agent(replace(agent, enabled=enabled), source=source)
        return 0 if enabled else await self._store.revoke_agent_tokens(client_id)

    async def rotate_secret(self, client_id: str, *, source: str) -> str:
        agent = await self.get(client_id)
        if agent.auth_method != "client_secret":
            raise RegistryError(
                f"{client_id} authenticates with private_key_jwt; rotate its keys instead", 409
            )
        secret = new_secret()
        await self._store.put_agent(replace(agent, secret_hash=hash_secret(secret)), source=source)
        return secret

    async def rotate_keys(self) -> tuple[SigningKey, list[SigningKey]]:
        """Publish a key that signs after one token lifetime; retire keys no live token can carry."""
        now = int(time.time())
        ttl = self._settings.identity.token_ttl_s
        retired = KeyRing(await self._store.signing_keys()).retirable(now, ttl)
        for old in retired:
            await self._store.remove_signing_key(old.kid)
        key = generate_key(now, active_from=now + ttl)
        await self._store.add_signing_key(key)
        return key, retired
