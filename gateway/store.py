"""The gateway's database (SQLAlchemy async): agent registrations, signing keys, revoked tokens,
used client-assertion ids and approved tool definitions (`gateway/pins.py`). SQLite by default;
PostgreSQL (`postgresql+asyncpg://`) to share it between replicas. Tables are created on first start."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from identity.agents import Agent
from identity.keys import SigningKey

metadata = sa.MetaData()

agents = sa.Table(
    "interlink_agents",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
signing_keys = sa.Table(
    "interlink_signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("jwk", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("active_from", sa.BigInteger, nullable=False),
)
revoked = sa.Table(
    "interlink_revoked_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)
issued = sa.Table(
    "interlink_issued_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False, index=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)
seen_assertions = sa.Table(
    "interlink_seen_assertions",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)
tool_pins = sa.Table(
    "interlink_tool_pins",
    metadata,
    sa.Column("upstream", sa.String(64), primary_key=True),
    sa.Column("tool", sa.String(256), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("approved_by", sa.String(256), nullable=False),
    sa.Column("approved_at", sa.BigInteger, nullable=False),
)
a2a_agents = sa.Table(
    "interlink_a2a_agents",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
)
"""Downstream A2A agents registered at run time (`gateway/a2a_remote.py`); `settings` is the JSON
of a `RemoteAgentSettings`, with secrets only as `{env: ...}`/`{file: ...}` references."""


@dataclass(frozen=True)
class A2AAgentRow:
    """One run-time A2A agent as stored."""

    name: str
    settings: dict[str, Any]
    created_at: int
    enabled: bool
    source: str


@dataclass(frozen=True)
class ToolPin:
    """One approved tool definition: `sha256` of its canonical JSON, and the definition itself (so a
    later change can be shown field by field)."""

    upstream: str
    tool: str
    sha256: str
    definition: dict[str, Any]
    approved_by: str
    approved_at: int


class Store:
    """Async access to the tables; one instance per process, shared by every component."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Store]:
        """Connect (creating a SQLite file's folder and every table), and dispose on exit."""
        options: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = sa.make_url(url).database
            if path in (None, "", ":memory:"):
                options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **options)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            yield cls(engine)
        finally:
            await engine.dispose()

    # -- agents -----------------------------------------------------------------------------------

    async def agent(self, client_id: str) -> Agent | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(agents.c.record).where(agents.c.client_id == client_id))
            ).first()
        return _agent(row[0]) if row else None

    async def list_agents(self) -> list[Agent]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(agents.c.record).order_by(agents.c.client_id))).all()
        return [_agent(r[0]) for r in rows]

    async def put_agent(self, agent: Agent, *, source: str) -> None:
        """Insert or replace. `source`: `config` (re-applied at every start) or `cli`."""
        record = json.dumps(asdict(agent) | {"jwks": dict(agent.jwks) if agent.jwks else None})
        values = {"record": record, "source": source, "updated_at": int(time.time())}
        async with self.engine.begin() as conn:
            updated = await conn.execute(
                agents.update().where(agents.c.client_id == agent.client_id).values(values)
            )
            if updated.rowcount == 0:
                await conn.execute(agents.insert().values(client_id=agent.client_id, **values))

    # -- signing keys -----------------------------------------------------------------------------

    async def signing_keys(self) -> list[SigningKey]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(signing_keys))).all()
        return [SigningKey(r.kid, json.loads(r.jwk), r.created_at, r.active_from) for r in rows]

    async def add_signing_key(self, key: SigningKey) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                signing_keys.insert().values(
                    kid=key.kid,
                    jwk=json.dumps(key.private_jwk),
                    created_at=key.created_at,
                    active_from=key.active_from,
                )
            )

    async def remove_signing_key(self, kid: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(signing_keys.delete().where(signing_keys.c.kid == kid))

    # -- revocation and replay ----------------------------------------------------------------------

    async def revoke(self, jti: str, expires_at: int) -> None:
        async with self.engine.begin() as conn:
            try:
                await conn.execute(revoked.insert().values(jti=jti, expires_at=expires_at))
            except IntegrityError:
                pass  # already revoked

    async def record_issued(self, jti: str, client_id: str, expires_at: int) -> None:
        """Remember a live token, so disabling its agent can revoke it (expired rows are pruned)."""
        async with self.engine.begin() as conn:
            await conn.execute(issued.delete().where(issued.c.expires_at < int(time.time())))
            await conn.execute(issued.insert().values(jti=jti, client_id=client_id, expires_at=expires_at))

    async def revoke_agent_tokens(self, client_id: str) -> int:
        """Revoke every live token of one agent; returns how many."""
        now = int(time.time())
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(issued.c.jti, issued.c.expires_at).where(
                        issued.c.client_id == client_id, issued.c.expires_at >= now
                    )
                )
            ).all()
        for jti, expires_at in rows:
            await self.revoke(jti, expires_at)
        return len(rows)

    async def revoked_ids(self, now: int) -> set[str]:
        """Revoked token ids that have not expired yet (expired ones are pruned)."""
        async with self.engine.begin() as conn:
            await conn.execute(revoked.delete().where(revoked.c.expires_at < now))
            rows = (await conn.execute(sa.select(revoked.c.jti))).all()
        return {r[0] for r in rows}

    async def add(self, key: str, expires_at: int) -> bool:
        """ReplayCache: False when `key` was already seen and has not expired."""
        now = int(time.time())
        async with self.engine.begin() as conn:
            await conn.execute(seen_assertions.delete().where(seen_assertions.c.expires_at < now))
            try:
                await conn.execute(seen_assertions.insert().values(key=key, expires_at=expires_at))
            except IntegrityError:
                return False
        return True

    # -- tool pins --------------------------------------------------------------------------------

    async def tool_pins(self) -> list[ToolPin]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(tool_pins))).all()
        return [
            ToolPin(r.upstream, r.tool, r.sha256, json.loads(r.definition), r.approved_by, int(r.approved_at))
            for r in rows
        ]

    async def add_tool_pin(self, pin: ToolPin) -> bool:
        """Pin a tool seen for the first time; False when it is pinned already (by another replica)."""
        async with self.engine.begin() as conn:
            try:
                await conn.execute(tool_pins.insert().values(_pin_row(pin)))
            except IntegrityError:
                return False
        return True

    async def put_tool_pins(self, pins: list[ToolPin]) -> None:
        """Insert or replace (an approval), all in one transaction."""
        async with self.engine.begin() as conn:
            for pin in pins:
                key = (tool_pins.c.upstream == pin.upstream) & (tool_pins.c.tool == pin.tool)
                await conn.execute(tool_pins.delete().where(key))
                await conn.execute(tool_pins.insert().values(_pin_row(pin)))

    # -- run-time A2A agents ----------------------------------------------------------------------

    async def a2a_agents(self) -> list[A2AAgentRow]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(a2a_agents).order_by(a2a_agents.c.name))).all()
        return [
            A2AAgentRow(r.name, json.loads(r.settings), int(r.created_at), bool(r.enabled), r.source)
            for r in rows
        ]

    async def add_a2a_agent(self, row: A2AAgentRow, before: Commit | None = None) -> bool:
        """Insert; False when the name is taken (by another replica or operator meanwhile).
        `before` runs inside the transaction, before it commits (the audit record: its failure
        leaves the table unchanged)."""
        values = asdict(row) | {"settings": json.dumps(row.settings, sort_keys=True)}
        async with self.engine.begin() as conn:
            try:
                await conn.execute(a2a_agents.insert().values(values))
            except IntegrityError:
                return False
            if before is not None:
                await before()
        return True

    async def set_a2a_agent_enabled(self, name: str, enabled: bool, before: Commit | None = None) -> bool:
        """False when there is no such row (nothing changed, `before` not run)."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                a2a_agents.update().where(a2a_agents.c.name == name).values(enabled=enabled)
            )
            if done.rowcount and before is not None:
                await before()
        return bool(done.rowcount)

    async def remove_a2a_agent(self, name: str, before: Commit | None = None) -> bool:
        """False when there is no such row (nothing changed, `before` not run)."""
        async with self.engine.begin() as conn:
            done = await conn.execute(a2a_agents.delete().where(a2a_agents.c.name == name))
            if done.rowcount and before is not None:
                await before()
        return bool(done.rowcount)


Commit = Callable[[], Awaitable[None]]
"""Run inside a change's transaction just before it commits (see `add_a2a_agent`)."""


def _pin_row(pin: ToolPin) -> dict[str, Any]:
    return asdict(pin) | {"definition": json.dumps(pin.definition, sort_keys=True)}


def _agent(record: str) -> Agent:
    data = json.loads(record)
    data["audiences"] = tuple(data["audiences"])
    data["scopes"] = tuple(data["scopes"])
    data["may_act_for"] = tuple(data.get("may_act_for", ()))
    data["groups"] = tuple(data.get("groups", ()))
    return Agent(**data)
