"""The tamper-evident audit trail: one record per decision, hash-chained, with signed checkpoints.

Record and chain (identity-research §7.6):

* A record is canonical JSON (RFC 8785, JCS) of `AuditRecord`: schema version, log id, `seq`
  (contiguous from 1 per log), event id, UTC time, event type, actor (agent, tenant, delegation chain,
  token id, client address), target (protocol, server, method, name, definition hash), decision
  (effect, stable reason, rule, policy version and hash), argument digest plus allow-listed argument
  fields, outcome, latency and trace id. Never a token, a secret or a non-allow-listed argument value.
* `record_hash = SHA-256(JCS(record))`; `chain_n = SHA-256(chain_{n-1} || record_hash_n)` with
  `chain_0 = SHA-256("interlink-audit-genesis:" || log_id)`. Editing, deleting or reordering a
  record breaks the chain at that point.
* Every `checkpoint_every` records or `checkpoint_interval_s` (and at shutdown) a checkpoint
  `(log id, seq, chain_seq, time)` is signed with an Ed25519 key kept in a file, separate from the
  token-signing keys and from the database: someone who can rewrite the database can recompute the
  chain, but not re-sign checkpoints, so a rewrite or a truncation below the last checkpoint is
  detected. Publish the public key (`interlink audit key`) where the gateway cannot change it.

Durability: `append` returns once the record is committed (one writer task batches concurrent
appends into one transaction: group commit; SQLite runs with `synchronous=FULL` in WAL mode). If the
store fails, the waiting calls fail with `AuditUnavailable`, the records stay queued in memory (up to
`max_pending`, with their sequence numbers) and are written first when the store is back; while any
record is unwritten, `ensure_ready` refuses new calls, so a governed call fails closed before it
reaches an upstream.

One log per gateway process (`log_id`): replicas sharing a database must use distinct ids.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import rfc8785
import sqlalchemy as sa
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from gateway.errors import GatewayError

log = structlog.get_logger(__name__)

SCHEMA_VERSION: Final = 1
GENESIS_PREFIX: Final = b"interlink-audit-genesis:"


class AuditUnavailable(GatewayError):
    """The audit store cannot record this call right now; the call is refused (fail closed)."""

    reason = "audit_unavailable"
    http_status = 503


# -- the record ------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Actor(_Model):
    agent: str | None = None
    """The authenticated client id; None for an anonymous caller of a public server."""
    tenant: str | None = None
    act: list[str] = []
    """Delegation chain (RFC 8693 `act`), outermost actor first."""
    subject: str | None = None
    """On whose behalf (the token's `sub`) when it differs from the agent."""
    token_id: str | None = None
    """The access token's `jti` (never the token itself)."""
    address: str | None = None
    person: str | None = None
    """A human acting (an approver, an administrator), as they named themselves."""


class Target(_Model):
    protocol: Literal["mcp", "a2a", "oauth", "admin", "gateway"]
    server: str | None = None
    method: str
    name: str | None = None
    definition_sha256: str | None = None
    """Hash of the tool definition the call was decided against (see tool pinning)."""
    bridge: str | None = None
    """A bridged call's other side, in the other protocol (`a2a:<agent>/<skill>` on the record of
    an MCP tool that sends an A2A message; `mcp:<server>/<tool>` on the record of an A2A message
    that calls an MCP tool): the two records of one bridged call name each other."""


class DecisionInfo(_Model):
    effect: Literal["allow", "deny"]
    reason: str
    """Stable code: permit, forbid, evaluation_error, default_deny, public, no_policy, unknown_tool,
    invalid_arguments, invalid_token, insufficient_scope, audit_unavailable, ..."""
    rule: str | None = None
    policy_version: str | None = None
    policy_sha256: str | None = None
    approval_id: str | None = None
    """The human approval this decision asked for or used."""


class Outcome(_Model):
    status: Literal["ok", "tool_error", "error", "denied", "pending"]
    """`pending`: the write-ahead record of an allowed tool call, durable before the upstream sees
    the call; a result record (`ref` = this record's id) follows with the outcome."""
    reason: str | None = None
    """The stable error reason when status is error or denied."""
    code: int | None = None
    """The JSON-RPC or HTTP code the caller received, when not a success."""


class AuditRecord(_Model):
    v: int = SCHEMA_VERSION
    log: str
    seq: int
    id: str
    ts: str
    event: str
    actor: Actor
    target: Target
    decision: DecisionInfo
    args_sha256: str | None = None
    args: dict[str, Any] = {}
    outcome: Outcome
    latency_us: int = 0
    trace_id: str | None = None
    instance: str | None = None
    ref: str | None = None
    """For a result record: the id of the decision record it completes."""


@dataclass
class Event:
    """What a face reports; the log adds `log`, `seq`, `id` and `ts`."""

    event: str
    actor: Actor
    target: Target
    decision: DecisionInfo
    outcome: Outcome
    args_sha256: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    latency_us: int = 0
    trace_id: str | None = None
    ref: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


def canonical(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON. Values of only strings, ASCII keys, booleans, null and
    integers within ±2**53 serialise identically with the standard library's sorted, compact
    `json.dumps` (tested), which is several times faster; anything else (floats) goes to `rfc8785`."""
    if _plain(value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate: let the reference implementation refuse it
            pass
    return rfc8785.dumps(value)


_MAX_SAFE_INT: Final = 2**53 - 1


def _plain(value: Any) -> bool:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def digest(value: Any) -> str:
    """SHA-256 of the canonical JSON of `value` (argument digests, definition hashes)."""
    return hashlib.sha256(canonical(value)).hexdigest()


def genesis(log_id: str) -> bytes:
    return hashlib.sha256(GENESIS_PREFIX + log_id.encode()).digest()


def link(previous: bytes, record_hash: bytes) -> bytes:
    return hashlib.sha256(previous + record_hash).digest()


def pick_fields(args: Any, paths: Sequence[str]) -> dict[str, Any]:
    """The allow-listed argument fields (dotted paths) present in `args`; everything else is left out."""
    picked: dict[str, Any] = {}
    for path in paths:
        current: Any = args
        for part in path.split("."):
            if not isinstance(current, dict) or part not in current:
                break
            current = current[part]
        else:
            picked[path] = current
    return picked


# -- checkpoint signing ----------------------------------------------------------------------------


class CheckpointSigner:
    """An Ed25519 key for checkpoints, kept in a PEM file (created with mode 0600 on first use)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def ephemeral(cls) -> CheckpointSigner:
        """A throw-away key, for an in-memory log that dies with the process."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> CheckpointSigner:
        if path.is_file():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"{path}: not an Ed25519 private key")
            return cls(loaded)
        if not create:
            raise FileNotFoundError(f"{path}: no audit checkpoint key")
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        log.info("audit_checkpoint_key_created", key_id=key_id(key.public_key()))
        return cls(key)

    def sign(self, note: bytes) -> str:
        return base64.b64encode(self._key.sign(note)).decode()

    def public_pem(self) -> str:
        return public_pem(self.public_key)


def signer_for(key_file: Path | None) -> CheckpointSigner:
    """The checkpoint signer of a log: the key in `key_file` (created on first use), or a
    throw-away key when there is no file (an in-memory log)."""
    return CheckpointSigner.from_file(key_file) if key_file is not None else CheckpointSigner.ephemeral()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    loaded = serialization.load_pem_public_key(pem)
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return loaded


def checkpoint_note(log_id: str, seq: int, chain: str, ts: str) -> bytes:
    """The signed text (C2SP tlog-checkpoint shaped): origin, size, chain head, time."""
    head = base64.b64encode(bytes.fromhex(chain)).decode()
    return f"interlink-audit/{log_id}\n{seq}\n{head}\n{ts}\n".encode()


# -- storage ---------------------------------------------------------------------------------------

metadata = sa.MetaData()

records_table = sa.Table(
    "interlink_audit_records",
    metadata,
    sa.Column("log_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.String(32), nullable=False, index=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("agent", sa.String(128), index=True),
    sa.Column("server", sa.String(128)),
    sa.Column("name", sa.String(512), index=True),
    sa.Column("effect", sa.String(8), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("record_hash", sa.String(64), nullable=False),
    sa.Column("chain", sa.String(64), nullable=False),
)
checkpoints_table = sa.Table(
    "interlink_audit_checkpoints",
    metadata,
    sa.Column("log_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("chain", sa.String(64), nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class StoredRecord:
    log_id: str
    seq: int
    body: str
    record_hash: str
    chain: str

    def record(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass(frozen=True)
class Checkpoint:
    log_id: str
    seq: int
    chain: str
    ts: str
    key_id: str
    signature: str


@dataclass(frozen=True)
class Query:
    agent: str | None = None
    name: str | None = None
    effect: Literal["allow", "deny"] | None = None
    since: str | None = None
    until: str | None = None
    log_id: str | None = None
    limit: int = 100
    newest_first: bool = False


class _SqliteWriter:
    """Writes to a SQLite file through one plain `sqlite3` connection on one thread: a batch is one
    hop to that thread and one transaction, instead of the several loop round trips each statement
    costs through the async engine (about 4x less CPU per durable append, bench/audit.py)."""

    def __init__(self, path: str, busy_timeout_s: float) -> None:
        self._path = path
        self._timeout = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interlink-audit")
        self._conn: sqlite3.Connection | None = None
        columns = [c.name for c in records_table.columns]
        marks = ", ".join("?" * len(columns))
        self._insert = f"INSERT INTO {records_table.name} ({', '.join(columns)}) VALUES ({marks})"
        self._columns = columns
        cp_columns = [c.name for c in checkpoints_table.columns]
        self._insert_cp = (
            f"INSERT INTO {checkpoints_table.name} ({', '.join(cp_columns)}) "
            f"VALUES ({', '.join('?' * len(cp_columns))})"
        )
        self._cp_columns = cp_columns

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._conn = conn
        return self._conn

    def _write(self, rows: Sequence[dict[str, Any]], checkpoint: Checkpoint | None) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(self._insert, [tuple(r[c] for c in self._columns) for r in rows])
            if checkpoint is not None:
                conn.execute(self._insert_cp, tuple(checkpoint.__dict__[c] for c in self._cp_columns))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def write(self, rows: Sequence[dict[str, Any]], checkpoint: Checkpoint | None) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows, checkpoint)

    def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(shut).result(timeout=5)
        self._executor.shutdown(wait=True)


class AuditStore:
    """The audit tables, in their own engine (a separate SQLite file or PostgreSQL database)."""

    def __init__(self, engine: AsyncEngine, writer: _SqliteWriter | None = None) -> None:
        self.engine = engine
        self._writer = writer

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, *, busy_timeout_s: float = 2.0) -> AsyncIterator[AuditStore]:
        options: dict[str, Any] = {}
        sqlite = url.startswith("sqlite")
        if sqlite:
            path = sa.make_url(url).database
            if path in (None, "", ":memory:"):
                options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                options = {"connect_args": {"timeout": busy_timeout_s}}
        engine = create_async_engine(url, **options)
        if sqlite:

            @sa.event.listens_for(engine.sync_engine, "connect")
            def _durable(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.close()

        writer = None
        if sqlite and options.get("poolclass") is not StaticPool:
            writer = _SqliteWriter(str(sa.make_url(url).database), busy_timeout_s)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            yield cls(engine, writer)
        finally:
            if writer is not None:
                writer.close()
            await engine.dispose()

    async def head(self, log_id: str) -> tuple[int, str] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(records_table.c.seq, records_table.c.chain)
                    .where(records_table.c.log_id == log_id)
                    .order_by(records_table.c.seq.desc())
                    .limit(1)
                )
            ).first()
        return (int(row.seq), str(row.chain)) if row else None

    async def last_checkpoint(self, log_id: str) -> Checkpoint | None:
        found = await self.checkpoints(log_id, newest_only=True)
        return found[0] if found else None

    async def write(self, rows: Sequence[dict[str, Any]], checkpoint: Checkpoint | None = None) -> None:
        if self._writer is not None:
            await self._writer.write(rows, checkpoint)
            return
        async with self.engine.begin() as conn:
            if rows:
                await conn.execute(records_table.insert(), list(rows))
            if checkpoint is not None:
                await conn.execute(checkpoints_table.insert().values(**checkpoint.__dict__))

    async def log_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(records_table.c.log_id).distinct())).all()
        return sorted(r[0] for r in rows)

    async def records(self, log_id: str, *, after: int = 0, batch: int = 5000) -> AsyncIterator[StoredRecord]:
        """Every record of one log in `seq` order (streamed in batches)."""
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.select(records_table)
                        .where(records_table.c.log_id == log_id, records_table.c.seq > after)
                        .order_by(records_table.c.seq)
                        .limit(batch)
                    )
                ).all()
            for r in rows:
                yield StoredRecord(r.log_id, int(r.seq), r.body, r.record_hash, r.chain)
            if len(rows) < batch:
                return
            after = int(rows[-1].seq)

    async def query(self, q: Query) -> list[StoredRecord]:
        t = records_table
        where = []
        if q.log_id:
            where.append(t.c.log_id == q.log_id)
        if q.agent:
            where.append(t.c.agent == q.agent)
        if q.name:
            where.append(t.c.name == q.name)
        if q.effect:
            where.append(t.c.effect == q.effect)
        if q.since:
            where.append(t.c.ts >= q.since)
        if q.until:
            where.append(t.c.ts < q.until)
        order = (t.c.ts.desc(), t.c.seq.desc()) if q.newest_first else (t.c.ts, t.c.seq)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t).where(*where).order_by(*order).limit(q.limit))).all()
        return [StoredRecord(r.log_id, int(r.seq), r.body, r.record_hash, r.chain) for r in rows]

    async def checkpoints(self, log_id: str, *, newest_only: bool = False) -> list[Checkpoint]:
        t = checkpoints_table
        stmt = sa.select(t).where(t.c.log_id == log_id)
        stmt = stmt.order_by(t.c.seq.desc()).limit(1) if newest_only else stmt.order_by(t.c.seq)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Checkpoint(r.log_id, int(r.seq), r.chain, r.ts, r.key_id, r.signature) for r in rows]


# -- the writer ------------------------------------------------------------------------------------


@dataclass
class _Pending:
    row: dict[str, Any]
    waiter: asyncio.Future[AuditRecord] | None
    record: AuditRecord


class AuditLog:
    """Appends records to one log, durably, in order; see the module docstring."""

    def __init__(
        self,
        store: AuditStore | None,
        log_id: str,
        signer: CheckpointSigner,
        *,
        instance: str | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        max_pending: int = 10_000,
        retry_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.log_id = log_id
        self._signer = signer
        self._instance = instance
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._max_pending = max_pending
        self._retry = retry_interval_s
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Event | None, asyncio.Future[AuditRecord] | None]] = asyncio.Queue()
        self._closing = False
        self._drain_timeout_s = 5.0
        self._unwritten: list[_Pending] = []
        self._dropped = 0
        self._seq = 0
        self._chain = genesis(log_id)
        self._checkpointed_seq = 0
        self._checkpointed_at = 0.0
        self._healthy = True
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """False from a failed write until every queued record has been written."""
        return self._healthy

    def ensure_ready(self) -> None:
        """Refuse (fail closed) while the store is failing or records are still unwritten."""
        if not self.healthy:
            raise AuditUnavailable("the audit trail cannot record calls right now; try again shortly")

    @property
    def store(self) -> AuditStore:
        if self._store is None:
            raise RuntimeError("the audit log is not running")
        return self._store

    @asynccontextmanager
    async def running(self, store: AuditStore | None = None) -> AsyncIterator[AuditLog]:
        """Continue the log from its last record, write until exit, then drain and checkpoint."""
        if store is not None:
            self._store = store
        head = await self.store.head(self.log_id)
        if head is not None:
            self._seq, self._chain = head[0], bytes.fromhex(head[1])
        last = await self.store.last_checkpoint(self.log_id)
        self._checkpointed_seq = last.seq if last else 0
        self._checkpointed_at = self._clock()
        writer = asyncio.create_task(self._write_forever(), name=f"audit-writer-{self.log_id}")
        try:
            yield self
        finally:
            self._closing = True
            self._queue.put_nowait((None, None))
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout=self._drain_timeout_s)
            except TimeoutError:
                log.error("audit_records_not_written", count=len(self._unwritten))
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer
            with suppress(Exception):
                await self._checkpoint(force=True)

    async def append(self, event: Event) -> AuditRecord:
        """Record `event`; returns once it is durable. Raises AuditUnavailable when it is not."""
        waiter: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, waiter))
        return await waiter

    def append_nowait(self, event: Event) -> None:
        """Record `event` without waiting (events that must not block, e.g. rejected tokens)."""
        self._queue.put_nowait((event, None))

    # -- internals --------------------------------------------------------------------------------

    def _seal(self, event: Event) -> _Pending | None:
        if len(self._unwritten) >= self._max_pending:
            self._dropped += 1
            return None
        if self._dropped and self._healthy:
            dropped, self._dropped = self._dropped, 0
            self._seal(
                Event(
                    "audit.dropped",
                    Actor(),
                    Target(protocol="gateway", method="audit"),
                    DecisionInfo(effect="deny", reason="audit_unavailable"),
                    Outcome(status="error", reason=f"{dropped} records were dropped during an outage"),
                )
            )
        self._seq += 1
        now = datetime.fromtimestamp(self._clock(), UTC)
        record = AuditRecord(
            log=self.log_id,
            seq=self._seq,
            id=event.id,
            ts=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            event=event.event,
            actor=event.actor,
            target=event.target,
            decision=event.decision,
            args_sha256=event.args_sha256,
            args=event.args,
            outcome=event.outcome,
            latency_us=event.latency_us,
            trace_id=event.trace_id,
            instance=self._instance,
            ref=event.ref,
        )
        body = canonical(record.model_dump(mode="json"))
        record_hash = hashlib.sha256(body).digest()
        self._chain = link(self._chain, record_hash)
        row = {
            "log_id": self.log_id,
            "seq": self._seq,
            "ts": record.ts,
            "event": record.event,
            "agent": record.actor.agent,
            "server": record.target.server,
            "name": record.target.name,
            "effect": record.decision.effect,
            "body": body.decode(),
            "record_hash": record_hash.hex(),
            "chain": self._chain.hex(),
        }
        pending = _Pending(row, None, record)
        self._unwritten.append(pending)
        return pending

    def _accept(self, event: Event | None, waiter: asyncio.Future[AuditRecord] | None) -> None:
        if event is None:
            return  # a wake-up
        pending = self._seal(event)
        if pending is None:
            if waiter is not None and not waiter.done():
                waiter.set_exception(AuditUnavailable("the audit trail is full; try again shortly"))
            return
        pending.waiter = waiter

    def _take_queued(self) -> None:
        while True:
            try:
                event, waiter = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._accept(event, waiter)

    async def _write_forever(self) -> None:
        while True:
            if not self._unwritten and self._queue.empty():
                if self._closing:
                    return
                try:
                    event, waiter = await asyncio.wait_for(self._queue.get(), timeout=self._interval)
                except TimeoutError:
                    await self._checkpoint_quietly()
                    continue
                self._accept(event, waiter)
            elif self._unwritten and not self._healthy:
                await asyncio.sleep(self._retry)
            await self._flush()

    async def _flush(self) -> None:
        self._take_queued()
        if not self._unwritten:
            return
        batch = list(self._unwritten)
        try:
            await self.store.write([p.row for p in batch], self._due_checkpoint(batch[-1]))
        except Exception as exc:  # noqa: BLE001 - any store failure means: not durable
            if self._healthy:
                log.error("audit_store_failed", error=type(exc).__name__, unwritten=len(batch))
            self._healthy = False
            self.last_error = type(exc).__name__
            for p in batch:
                if p.waiter is not None and not p.waiter.done():
                    p.waiter.set_exception(AuditUnavailable("the audit trail could not record this call"))
                p.waiter = None
            return
        if not self._healthy:
            log.info("audit_store_recovered", written=len(batch))
        self._healthy = True
        self.last_error = None
        del self._unwritten[: len(batch)]
        for p in batch:
            if p.waiter is not None and not p.waiter.done():
                p.waiter.set_result(p.record)

    def _due_checkpoint(self, last: _Pending) -> Checkpoint | None:
        seq = last.row["seq"]
        overdue = self._clock() - self._checkpointed_at >= self._interval
        if seq - self._checkpointed_seq >= self._every or (overdue and seq > self._checkpointed_seq):
            checkpoint = self._make_checkpoint(seq, last.row["chain"])
            self._checkpointed_seq, self._checkpointed_at = seq, self._clock()
            return checkpoint
        return None

    def _make_checkpoint(self, seq: int, chain: str) -> Checkpoint:
        ts = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        note = checkpoint_note(self.log_id, seq, chain, ts)
        return Checkpoint(self.log_id, seq, chain, ts, self._signer.key_id, self._signer.sign(note))

    async def _checkpoint(self, *, force: bool = False) -> None:
        if self._unwritten or self._seq <= self._checkpointed_seq:
            return
        if not force and self._clock() - self._checkpointed_at < self._interval:
            return
        await self.store.write([], self._make_checkpoint(self._seq, self._chain.hex()))
        self._checkpointed_seq, self._checkpointed_at = self._seq, self._clock()

    async def _checkpoint_quietly(self) -> None:
        try:
            await self._checkpoint()
        except Exception as exc:  # noqa: BLE001
            log.warning("audit_checkpoint_failed", error=type(exc).__name__)


OPERATOR_LOG_ID: Final = "cli"
"""The log the command-line tools write (approvals, tool approvals): never the gateway's own `main`,
so the two never compete for a sequence number."""


@asynccontextmanager
async def operator_log(database_url: str, key_file: Path | None) -> AsyncIterator[AuditLog]:
    """An audit log for one command-line operation; its records are durable when `append` returns."""
    async with AuditStore.open(database_url) as store:
        log = AuditLog(store, OPERATOR_LOG_ID, signer_for(key_file), instance=OPERATOR_LOG_ID)
        async with log.running():
            yield log


# -- verification ----------------------------------------------------------------------------------


@dataclass
class Report:
    log_id: str
    records: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    last_checkpoint: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_log(store: AuditStore, log_id: str, public_keys: Iterable[Ed25519PublicKey]) -> Report:
    """Recompute every hash and link of one log and check its checkpoints' signatures.

    Finds: edited records (content no longer matches its hash, or its seq moved), deleted records
    (gaps), reordered or inserted records (broken links), rewritten history (chain differs from a
    signed checkpoint), truncation (a checkpoint beyond the last record), and checkpoints signed by
    an unknown key or with a bad signature."""
    keys = {key_id(k): k for k in public_keys}
    report = Report(log_id)
    checkpoints = await store.checkpoints(log_id)
    report.checkpoints = len(checkpoints)
    good_checkpoints: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        key = keys.get(cp.key_id)
        if key is None:
            report.problems.append(f"checkpoint at seq {cp.seq}: signed by unknown key {cp.key_id}")
            continue
        try:
            key.verify(base64.b64decode(cp.signature), checkpoint_note(cp.log_id, cp.seq, cp.chain, cp.ts))
        except (InvalidSignature, ValueError):
            report.problems.append(f"checkpoint at seq {cp.seq}: bad signature (checkpoint forged or edited)")
            continue
        good_checkpoints[cp.seq] = cp
        report.last_checkpoint = max(report.last_checkpoint, cp.seq)

    chain = genesis(log_id)
    expected = 1
    async for row in store.records(log_id):
        report.records += 1
        if row.seq > expected:
            missing = f"{expected}" if row.seq == expected + 1 else f"{expected}-{row.seq - 1}"
            report.problems.append(f"record(s) {missing} missing (deleted)")
        problem = _check_record(row)
        if problem:
            report.problems.append(problem)
        recomputed = link(chain, bytes.fromhex(row.record_hash)).hex()
        if recomputed != row.chain and not problem and row.seq == expected:
            report.problems.append(
                f"record {row.seq}: chain broken (a record was inserted, reordered or rewritten here)"
            )
        signed = good_checkpoints.get(row.seq)
        if signed is not None and signed.chain != row.chain:
            report.problems.append(
                f"record {row.seq}: chain differs from the signed checkpoint (history up to here rewritten)"
            )
        chain = bytes.fromhex(row.chain)
        expected = row.seq + 1
        report.last_seq = row.seq
    if report.last_checkpoint > report.last_seq:
        report.problems.append(
            f"log truncated: a signed checkpoint covers seq {report.last_checkpoint} "
            f"but the records end at {report.last_seq}"
        )
    return report


def _check_record(row: StoredRecord) -> str | None:
    try:
        body = row.record()
    except ValueError:
        return f"record {row.seq}: not valid JSON (edited)"
    if hashlib.sha256(row.body.encode()).hexdigest() != row.record_hash:
        return f"record {row.seq}: content does not match its hash (edited)"
    if canonical(body) != row.body.encode():
        return f"record {row.seq}: not in canonical form (edited)"
    if body.get("seq") != row.seq or body.get("log") != row.log_id:
        other = body.get("seq")
        return f"record {row.seq}: holds record {other}'s content (moved or reordered)"
    return None
