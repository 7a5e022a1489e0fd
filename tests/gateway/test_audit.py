"""The audit log on SQLite and PostgreSQL: contiguous, durable, and `verify_log` names every kind of
tampering (identity-research §9 case 37): edit, edit-and-rehash, delete, reorder, truncate, a full
rewrite with recomputed hashes, and checkpoints forged or signed by another key."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import (
    Actor,
    AuditLog,
    AuditStore,
    CheckpointSigner,
    DecisionInfo,
    Event,
    Outcome,
    Target,
    canonical,
    checkpoints_table,
    genesis,
    link,
    records_table,
    verify_log,
)
from tests.gateway.test_store import postgres_url

RECORDS = 12
EVERY = 5


def event(i: int) -> Event:
    return Event(
        event="mcp.tools/call",
        actor=Actor(agent=f"agent-{i % 3}", tenant="acme", token_id=f"jti-{i}"),
        target=Target(protocol="mcp", server="desk", method="tools/call", name=f"tool_{i}"),
        decision=DecisionInfo(effect="allow" if i % 2 else "deny", reason="permit" if i % 2 else "forbid"),
        outcome=Outcome(status="ok" if i % 2 else "denied"),
        args_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
        args={"amount": i},
        latency_us=100 + i,
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}" if request.param == "sqlite" else postgres_url()
    async with AuditStore.open(url) as opened:
        yield opened


@pytest.fixture
async def written(store: AuditStore) -> tuple[AuditStore, str, CheckpointSigner]:
    """RECORDS records in a fresh log, checkpointed every EVERY records and at shutdown."""
    log_id = f"t-{uuid.uuid4().hex[:12]}"
    signer = CheckpointSigner.ephemeral()
    log = AuditLog(store, log_id, signer, checkpoint_every=EVERY)
    async with log.running():
        first = await asyncio.gather(*(log.append(event(i)) for i in range(3)))  # one group commit
        rest = [await log.append(event(i)) for i in range(3, RECORDS)]
    assert sorted(r.seq for r in first + rest) == list(range(1, RECORDS + 1))
    return store, log_id, signer


async def problems(store: AuditStore, log_id: str, signer: CheckpointSigner) -> list[str]:
    return (await verify_log(store, log_id, [signer.public_key])).problems


async def execute(store: AuditStore, *statements: sa.Executable) -> None:
    async with store.engine.begin() as conn:
        for statement in statements:
            await conn.execute(statement)


def row(log_id: str, seq: int) -> sa.ColumnElement[bool]:
    return sa.and_(records_table.c.log_id == log_id, records_table.c.seq == seq)


async def test_intact_log_verifies(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    report = await verify_log(store, log_id, [signer.public_key])
    assert report.ok, report.problems
    assert (report.records, report.last_seq, report.last_checkpoint) == (RECORDS, RECORDS, RECORDS)
    assert report.checkpoints >= 3  # at 5, 10 and the final one at shutdown


async def test_restart_continues_the_chain(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    async with AuditLog(store, log_id, signer).running() as log:
        record = await log.append(event(99))
    assert record.seq == RECORDS + 1
    assert await problems(store, log_id, signer) == []


async def test_edited_record(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    async with store.engine.connect() as conn:
        body = (await conn.execute(sa.select(records_table.c.body).where(row(log_id, 4)))).scalar_one()
    await execute(
        store, records_table.update().where(row(log_id, 4)).values(body=body.replace("agent-0", "agent-9"))
    )
    assert await problems(store, log_id, signer) == ["record 4: content does not match its hash (edited)"]


async def test_edited_and_rehashed_record(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    async with store.engine.connect() as conn:
        body = (await conn.execute(sa.select(records_table.c.body).where(row(log_id, 4)))).scalar_one()
    forged = body.replace("agent-0", "agent-9")
    await execute(
        store,
        records_table.update()
        .where(row(log_id, 4))
        .values(body=forged, record_hash=hashlib.sha256(forged.encode()).hexdigest()),
    )
    assert await problems(store, log_id, signer) == [
        "record 4: chain broken (a record was inserted, reordered or rewritten here)"
    ]


async def test_deleted_record(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    await execute(store, records_table.delete().where(row(log_id, 7)))
    assert await problems(store, log_id, signer) == ["record(s) 7 missing (deleted)"]


async def test_reordered_records(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    async with store.engine.connect() as conn:
        rows = {
            r.seq: r
            for r in (
                await conn.execute(sa.select(records_table).where(records_table.c.log_id == log_id))
            ).all()
        }
    swap = []
    for a, b in ((2, 3), (3, 2)):
        swap.append(
            records_table.update()
            .where(row(log_id, a))
            .values(body=rows[b].body, record_hash=rows[b].record_hash, chain=rows[b].chain)
        )
    await execute(store, *swap)
    found = await problems(store, log_id, signer)
    assert "record 2: holds record 3's content (moved or reordered)" in found
    assert "record 3: holds record 2's content (moved or reordered)" in found


async def test_truncated_log(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    await execute(
        store, records_table.delete().where(records_table.c.log_id == log_id, records_table.c.seq > 8)
    )
    assert await problems(store, log_id, signer) == [
        f"log truncated: a signed checkpoint covers seq {RECORDS} but the records end at 8"
    ]


async def test_rewritten_history_with_recomputed_chain(
    written: tuple[AuditStore, str, CheckpointSigner],
) -> None:
    """Whoever holds the database can recompute every hash; only the signed checkpoints catch it."""
    store, log_id, signer = written
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(records_table).where(records_table.c.log_id == log_id).order_by(records_table.c.seq)
            )
        ).all()
    chain = genesis(log_id)
    updates = []
    for r in rows:
        body = r.body
        if r.seq == 3:
            body = canonical({**__import__("json").loads(body), "args": {"amount": 0}}).decode()
        record_hash = hashlib.sha256(body.encode()).digest()
        chain = link(chain, record_hash)
        updates.append(
            records_table.update()
            .where(row(log_id, r.seq))
            .values(body=body, record_hash=record_hash.hex(), chain=chain.hex())
        )
    await execute(store, *updates)
    found = await problems(store, log_id, signer)
    assert found == [
        f"record {seq}: chain differs from the signed checkpoint (history up to here rewritten)"
        for seq in (5, 10, RECORDS)
    ]


async def test_forged_and_foreign_checkpoints(written: tuple[AuditStore, str, CheckpointSigner]) -> None:
    store, log_id, signer = written
    cp = checkpoints_table
    await execute(
        store,
        cp.update().where(cp.c.log_id == log_id, cp.c.seq == 5).values(signature="AAAA" + "A" * 84),
    )
    other = CheckpointSigner.ephemeral()
    found = await problems(store, log_id, signer)
    assert found == ["checkpoint at seq 5: bad signature (checkpoint forged or edited)"]
    assert all("unknown key" in p for p in await problems(store, log_id, other))


async def test_store_failure_fails_waiters_and_keeps_the_records(tmp_path: Path) -> None:
    """While the store cannot write, appends fail (the caller refuses the call) and ensure_ready
    refuses new work; the records stay queued with their sequence numbers and land on recovery."""
    import sqlite3

    path = tmp_path / "audit.db"
    async with AuditStore.open(f"sqlite+aiosqlite:///{path}", busy_timeout_s=0.2) as store:
        signer = CheckpointSigner.ephemeral()
        log = AuditLog(store, "main", signer, retry_interval_s=0.1)
        async with log.running():
            await log.append(event(0))
            lock = sqlite3.connect(path, isolation_level=None, timeout=5)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                with pytest.raises(Exception) as err:
                    await log.append(event(1))
                assert type(err.value).__name__ == "AuditUnavailable"
                assert not log.healthy
                with pytest.raises(Exception, match="cannot record"):
                    log.ensure_ready()
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            async with asyncio.timeout(10):
                while not log.healthy:
                    await asyncio.sleep(0.05)
            await log.append(event(2))
        report = await verify_log(store, "main", [signer.public_key])
        assert report.ok and report.records == 3, report.problems


_plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=8), children, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_plain_json)
def test_fast_canonical_json_is_rfc8785(value: Any) -> None:
    """The standard-library fast path produces exactly the RFC 8785 bytes for the values it takes."""
    assert canonical(value) == rfc8785.dumps(value)


def test_floats_take_the_reference_path() -> None:
    assert canonical({"b": 1e21, "a": 0.000001}) == b'{"a":0.000001,"b":1e+21}'
