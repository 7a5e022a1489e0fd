"""The gateway database on SQLite and PostgreSQL: registrations, keys, revocations and replay ids
round-trip and behave the same on both (PostgreSQL from INTERLINK_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.store import Store
from identity.agents import Agent, hash_secret
from identity.keys import generate_key

POSTGRES = os.environ.get("INTERLINK_TEST_POSTGRES_URL")


def postgres_url() -> str:
    if not POSTGRES:
        pytest.skip(
            "INTERLINK_TEST_POSTGRES_URL is not set (CI sets it; e.g. postgresql://postgres@127.0.0.1/test)"
        )
    return POSTGRES.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite" else postgres_url()
    async with Store.open(url) as opened:
        yield opened


def agent(client_id: str, **changes: object) -> Agent:
    base = Agent(
        client_id=client_id,
        name="Bot",
        owner="ops",
        auth_method="client_secret",
        audiences=("mcp/secure",),
        scopes=("mcp",),
        tenant="acme",
        secret_hash=hash_secret("s"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_agents_round_trip(store: Store) -> None:
    cid = f"bot-{uuid.uuid4().hex[:8]}"
    registered = agent(cid)
    await store.put_agent(registered, source="cli")
    assert await store.agent(cid) == registered
    await store.put_agent(agent(cid, enabled=False, jwks={"keys": []}), source="cli")
    again = await store.agent(cid)
    assert again is not None and again.enabled is False and again.jwks == {"keys": []}
    assert cid in {a.client_id for a in await store.list_agents()}
    assert await store.agent("nobody-" + cid) is None


async def test_keys_round_trip(store: Store) -> None:
    key = generate_key(int(time.time()))
    await store.add_signing_key(key)
    assert key in await store.signing_keys()
    await store.remove_signing_key(key.kid)
    assert key not in await store.signing_keys()


async def test_revocation_and_agent_token_revocation(store: Store) -> None:
    now = int(time.time())
    jti, old, cid = uuid.uuid4().hex, uuid.uuid4().hex, f"bot-{uuid.uuid4().hex[:8]}"
    await store.revoke(jti, now + 300)
    await store.revoke(jti, now + 300)  # idempotent
    await store.revoke(old, now - 10)  # expired: pruned
    revoked = await store.revoked_ids(now)
    assert jti in revoked and old not in revoked
    live = uuid.uuid4().hex
    await store.record_issued(live, cid, now + 300)
    assert await store.revoke_agent_tokens(cid) == 1
    assert live in await store.revoked_ids(now)


async def test_replay_cache(store: Store) -> None:
    key = f"agent:{uuid.uuid4().hex}"
    assert await store.add(key, int(time.time()) + 60) is True
    assert await store.add(key, int(time.time()) + 60) is False
