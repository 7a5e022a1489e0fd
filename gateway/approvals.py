"""Human approval of calls the policy marks `approval: true`.

Flow (MCP): the agent's call is held: it gets error `approval_required` (JSON-RPC -32017) whose
`data.approval_id` names a pending approval; nothing reaches the upstream. An approver sees the
request with its context (agent, tenant, server, tool, full arguments, deciding rule) through
`interlink approvals list|show` or `GET /admin/approvals`, and approves or denies it
(`interlink approvals approve|deny ID`, `POST /admin/approvals/{id}/approve|deny`). The agent then
retries the same call with `_meta: {"io.interlink/approval": "<id>"}`: an approved approval lets
exactly that call through once (same agent, server, tool and arguments, within `approval_ttl_s`);
a pending one answers `approval_required` again; a denied, expired, used or mismatched one answers
`approval_denied`. Every step is in the audit trail. A retry of the same held call without an id
reuses its pending approval instead of opening another.

Approvals live in the gateway database (`identity.database_url`), so every replica and the CLI see
the same ones. Arguments are kept here (approvers need them) and never in the audit trail.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import Actor, AuditLog, DecisionInfo, Event, Outcome, Target
from gateway.errors import GatewayError

APPROVAL_META: Final = "io.interlink/approval"
"""The `_meta` key a retried call carries its approval id in."""

Status = Literal["pending", "approved", "denied", "used", "expired"]

metadata = sa.MetaData()
approvals_table = sa.Table(
    "interlink_approvals",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("agent", sa.String(128), nullable=False, index=True),
    sa.Column("tenant", sa.String(128)),
    sa.Column("server", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("args_sha256", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("decided_by", sa.String(256)),
    sa.Column("decided_at", sa.BigInteger),
    sa.Column("note", sa.Text),
    sa.Column("used_at", sa.BigInteger),
)


class ApprovalRequired(GatewayError):
    reason = "approval_required"
    http_status = 403


class ApprovalDenied(GatewayError):
    reason = "approval_denied"
    http_status = 403


class ApprovalError(Exception):
    """An approver's operation that cannot be done (unknown id, already decided, expired)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Approval:
    id: str
    agent: str
    tenant: str | None
    server: str
    action: str
    name: str
    args: dict[str, Any]
    args_sha256: str
    rule: str
    status: Status
    created_at: int
    expires_at: int
    decided_by: str | None = None
    decided_at: int | None = None
    note: str | None = None
    used_at: int | None = None

    def describe(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Approvals:
    """The approvals table; `engine` is looked up on use (the gateway opens its database later)."""

    def __init__(
        self, engine: Callable[[], AsyncEngine], *, ttl_s: int = 3600, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self.ttl_s = ttl_s
        self._clock = clock

    async def setup(self) -> None:
        async with self._engine().begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def request(
        self,
        *,
        agent: str,
        tenant: str | None,
        server: str,
        action: str,
        name: str,
        args: Mapping[str, Any],
        args_sha256: str,
        rule: str,
    ) -> Approval:
        """A pending approval for this exact call: the open one if there is one, else a new one."""
        now = int(self._clock())
        t = approvals_table
        async with self._engine().begin() as conn:
            row = (
                await conn.execute(
                    sa.select(t).where(
                        t.c.agent == agent,
                        t.c.server == server,
                        t.c.name == name,
                        t.c.args_sha256 == args_sha256,
                        t.c.status == "pending",
                        t.c.expires_at > now,
                    )
                )
            ).first()
            if row is not None:
                return _approval(row)
            new_id = "apr_" + secrets.token_urlsafe(18)
            values = {
                "id": new_id,
                "agent": agent,
                "tenant": tenant,
                "server": server,
                "action": action,
                "name": name,
                "args": json.dumps(dict(args), sort_keys=True),
                "args_sha256": args_sha256,
                "rule": rule,
                "status": "pending",
                "created_at": now,
                "expires_at": now + self.ttl_s,
            }
            await conn.execute(t.insert().values(**values))
        return await self._require(new_id)

    async def get(self, approval_id: str) -> Approval | None:
        async with self._engine().connect() as conn:
            row = (
                await conn.execute(sa.select(approvals_table).where(approvals_table.c.id == approval_id))
            ).first()
        if row is None:
            return None
        found = _approval(row)
        if found.status in ("pending", "approved") and found.expires_at <= int(self._clock()):
            return _replace_status(found, "expired")
        return found

    async def list(self, status: Status | None = None, limit: int = 100) -> list[Approval]:
        t = approvals_table
        stmt = sa.select(t).order_by(t.c.created_at.desc()).limit(limit)
        async with self._engine().connect() as conn:
            rows = (await conn.execute(stmt)).all()
        now = int(self._clock())
        out = []
        for row in rows:
            found = _approval(row)
            if found.status in ("pending", "approved") and found.expires_at <= now:
                found = _replace_status(found, "expired")
            if status is None or found.status == status:
                out.append(found)
        return out

    async def decide(self, approval_id: str, *, approve: bool, by: str, note: str | None = None) -> Approval:
        """Approve or deny a pending approval (once; an expired one cannot be decided)."""
        now = int(self._clock())
        t = approvals_table
        async with self._engine().begin() as conn:
            done = await conn.execute(
                t.update()
                .where(t.c.id == approval_id, t.c.status == "pending", t.c.expires_at > now)
                .values(
                    status="approved" if approve else "denied",
                    decided_by=by[:256],
                    decided_at=now,
                    note=(note or None),
                )
            )
        if done.rowcount != 1:
            found = await self.get(approval_id)
            if found is None:
                raise ApprovalError(f"no approval {approval_id!r}", 404)
            raise ApprovalError(f"approval {approval_id} is {found.status}, not pending")
        return await self._require(approval_id)

    async def consume(
        self, approval_id: str, *, agent: str, server: str, name: str, args_sha256: str
    ) -> Approval:
        """Use an approved approval for this exact call, once. Raises ApprovalRequired while it is
        pending and ApprovalDenied for anything else (denied, used, expired, another call)."""
        found = await self.get(approval_id)
        if found is None or (found.agent, found.server, found.name) != (agent, server, name):
            raise ApprovalDenied("no such approval for this agent and tool")
        if found.args_sha256 != args_sha256:
            raise ApprovalDenied(f"approval {approval_id} was given for other arguments")
        if found.status == "pending":
            raise ApprovalRequired(
                f"approval {approval_id} is still pending", approval_id=approval_id, status="pending"
            )
        if found.status != "approved":
            raise ApprovalDenied(f"approval {approval_id} is {found.status}", approval_id=approval_id)
        now = int(self._clock())
        t = approvals_table
        async with self._engine().begin() as conn:
            done = await conn.execute(
                t.update()
                .where(t.c.id == approval_id, t.c.status == "approved", t.c.expires_at > now)
                .values(status="used", used_at=now)
            )
        if done.rowcount != 1:
            raise ApprovalDenied(f"approval {approval_id} was already used", approval_id=approval_id)
        return await self._require(approval_id)

    async def _require(self, approval_id: str) -> Approval:
        found = await self.get(approval_id)
        if found is None:
            raise ApprovalError(f"no approval {approval_id!r}", 404)
        return found


async def decide_and_record(
    approvals: Approvals,
    audit: AuditLog | None,
    approval_id: str,
    *,
    approve: bool,
    by: str,
    note: str | None,
    via: str,
) -> Approval:
    """An approver's decision, then its audit record (`approval.approved` / `approval.denied`)."""
    decided = await approvals.decide(approval_id, approve=approve, by=by, note=note)
    if audit is not None:
        await audit.append(
            Event(
                event=f"approval.{decided.status}",
                actor=Actor(person=by[:256]),
                target=Target(
                    protocol="mcp", server=decided.server, method=decided.action, name=decided.name
                ),
                decision=DecisionInfo(
                    effect="allow" if approve else "deny",
                    reason="approved_by_human" if approve else "denied_by_human",
                    rule=decided.rule,
                    approval_id=decided.id,
                ),
                outcome=Outcome(status="ok"),
                args_sha256=decided.args_sha256,
                args={"agent": decided.agent, "via": via, **({"note": note[:500]} if note else {})},
            )
        )
    return decided


def _approval(row: Any) -> Approval:
    return Approval(
        id=row.id,
        agent=row.agent,
        tenant=row.tenant,
        server=row.server,
        action=row.action,
        name=row.name,
        args=json.loads(row.args),
        args_sha256=row.args_sha256,
        rule=row.rule,
        status=row.status,
        created_at=int(row.created_at),
        expires_at=int(row.expires_at),
        decided_by=row.decided_by,
        decided_at=int(row.decided_at) if row.decided_at is not None else None,
        note=row.note,
        used_at=int(row.used_at) if row.used_at is not None else None,
    )


def _replace_status(approval: Approval, status: Status) -> Approval:
    from dataclasses import replace

    return replace(approval, status=status)
