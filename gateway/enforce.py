"""Policy and audit for the MCP face: the `Governor` of one virtual server.

`around` wraps every governed request (every MCP method except the `subscriptions/listen` stream):
it refuses the request when the audit trail cannot record it (fail closed, before any upstream is
touched), runs it, and appends one audit record with the decision and the outcome before the
response is sent. `check` decides a call against the policy (deny by default when a policy is
configured) and raises `PolicyDenied`; `shows` filters lists. `pinned` and `admit` apply tool
pinning (`gateway/pins.py`) on every virtual server, public ones included.

Only protected virtual servers are governed by the policy: a public one has no caller identity to
decide on, and its records name the client address instead. With no `policy` in the configuration,
a valid token with the virtual server's required scopes is enough (decision reason `no_policy`).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, TypeVar

import structlog
from a2a.types import Task as A2ATask
from a2a.types import TaskState as A2AState
from a2a.utils.errors import A2A_ERROR_REASONS, JSON_RPC_ERROR_CODE_MAP, A2AError
from mcp.shared.exceptions import MCPError

from adapters.governance import Failed
from adapters.mcp.errors import REASON_CODES
from gateway.approvals import APPROVAL_META, ApprovalDenied, ApprovalRequired, Approvals
from gateway.audit import (
    Actor,
    AuditLog,
    AuditUnavailable,
    DecisionInfo,
    Event,
    Outcome,
    Target,
    digest,
    pick_fields,
)
from gateway.auth import PRINCIPAL
from gateway.errors import GatewayError, PolicyDenied, ToolNotApproved
from gateway.ratelimit import Limiter, LocalLimiter, RateLimited, bucket_key
from identity.policy import Policy, Request, evaluate, rate_limits, resource_matches, visible
from identity.tokens import Principal

if TYPE_CHECKING:
    from gateway.pins import ToolPins  # which imports this module

log = structlog.get_logger(__name__)

T = TypeVar("T")

WRITE_AHEAD_ACTIONS: Final = frozenset({"tools/call", "SendMessage"})
"""Calls with effects downstream: their decision record is durable before they are forwarded."""

TOOL_DEFINITION_FIELDS: Final = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
"""What a tool-definition hash covers (identity-research §7.7)."""


@dataclass
class _Draft:
    """The record being built for the request in flight (filled by `check`)."""

    started: float = 0.0
    decision: DecisionInfo | None = None
    definition_sha256: str | None = None
    ref: str | None = None
    """Id of the write-ahead decision record of a tool call; the final record is its result."""
    meta: Mapping[str, Any] | None = None
    """The request's `_meta` (carries an approval id on a retried call)."""
    bridge: str | None = None
    """A bridged call's resource in the other protocol (see `audit.Target.bridge`)."""


class _WriteAhead:
    """Marks the write-ahead record of an allowed tool call (its outcome follows in a result record)."""


_WRITE_AHEAD: Final = _WriteAhead()


_DRAFT: contextvars.ContextVar[_Draft | None] = contextvars.ContextVar("interlink_audit_draft", default=None)


def definition_hash(tool: Any) -> str:
    """SHA-256 of the canonical JSON of a tool's definition (name as the upstream calls it)."""
    dumped = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return digest({k: dumped[k] for k in TOOL_DEFINITION_FIELDS if k in dumped})


class Governor:
    """Policy and audit for one virtual server (the adapter's `Governor` seam)."""

    def __init__(
        self,
        virtual: str,
        *,
        policy: Policy | None,
        audit: AuditLog | None,
        public: bool,
        argument_fields: Mapping[str, Sequence[str]] | None = None,
        limiter: Limiter | None = None,
        approvals: Approvals | None = None,
        pins: ToolPins | None = None,
        clock: Callable[[], float] = time.time,
        protocol: Literal["mcp", "a2a"] = "mcp",
    ) -> None:
        self._virtual = virtual
        self._protocol: Literal["mcp", "a2a"] = protocol
        self._audit = audit
        self._public = public
        self.set_policy(policy)
        self._argument_fields = dict(argument_fields or {})
        self._fields_cache: dict[str, list[str]] = {}
        self._definitions: dict[int, tuple[Any, str]] = {}
        self._limiter = limiter or LocalLimiter()
        self._approvals = approvals
        self._clock = clock
        self._pins = pins

    def set_policy(self, policy: Policy | None) -> None:
        """Set or swap the policy (hot reload); requests already decided keep their decision. A
        public server has no caller to decide on: no policy applies to it."""
        self._policy: Policy | None = policy if not self._public else None
        self._policy_sha256 = digest(policy.model_dump(mode="json"))[:16] if policy else None

    # -- policy -----------------------------------------------------------------------------------

    def _request(self, principal: Principal, action: str, name: str, args: Mapping[str, Any]) -> Request:
        return Request(
            agent=principal.client_id,
            tenant=principal.tenant,
            action=action,
            resource=f"{self._protocol}:{self._virtual}/{name}",
            args=args,
            now=datetime.fromtimestamp(self._clock(), UTC),
            groups=principal.groups,
        )

    async def check(
        self,
        scope: Mapping[str, Any],
        action: str,
        name: str,
        args: Mapping[str, Any],
        definition: Any = None,
        bridge: str | None = None,
    ) -> None:
        """Decide; raise PolicyDenied on deny. An allowed tool call is recorded write-ahead: its
        decision record is durable before this returns (and so before the upstream sees the call).
        `bridge`: the resource of the other protocol this call becomes (recorded with it)."""
        draft = _DRAFT.get()
        if draft is not None and bridge is not None:
            draft.bridge = bridge
        if draft is not None and definition is not None:
            draft.definition_sha256 = self._definition_sha256(definition)
        principal: Principal | None = scope.get(PRINCIPAL)
        policy = self._policy
        if principal is None or policy is None:
            info = DecisionInfo(effect="allow", reason="public" if self._public else "no_policy")
        else:
            request = self._request(principal, action, name, args)
            decision = evaluate(policy, request)
            info = DecisionInfo(
                effect="allow" if decision.allow else "deny",
                reason=decision.code,
                rule=decision.rule,
                policy_version=decision.policy_version,
                policy_sha256=self._policy_sha256,
            )
            if not decision.allow:
                if draft is not None:
                    draft.decision = info
                detail = {"rule": decision.rule} if decision.rule else {}
                raise PolicyDenied(f"{action} {name!r} denied: {decision.reason}", **detail)
            if decision.approval:
                info = await self._approved(principal, action, name, args, info, draft)
            if policy.rate_limits:
                await self._count(policy, request, info, draft)
        if draft is None:
            return
        draft.decision = info
        if action in WRITE_AHEAD_ACTIONS and self._audit is not None:
            event = self._event(scope, action, name, args, draft, _WRITE_AHEAD, draft.started)
            draft.ref = event.id
            await self._audit.append(event)

    async def _approved(
        self,
        principal: Principal,
        action: str,
        name: str,
        args: Mapping[str, Any],
        info: DecisionInfo,
        draft: _Draft | None,
    ) -> DecisionInfo:
        """The call needs a human's approval: use the one the retry names, or hold the call."""
        args_sha256 = safe_digest(args)
        wanted = (draft.meta or {}).get(APPROVAL_META) if draft is not None else None
        approvals = self._approvals
        try:
            if approvals is None:
                raise ApprovalDenied("this gateway cannot hold calls for approval")
            if isinstance(wanted, str):
                used = await approvals.consume(
                    wanted,
                    agent=principal.client_id,
                    server=self._virtual,
                    name=name,
                    args_sha256=args_sha256,
                )
                return info.model_copy(update={"reason": "approved", "approval_id": used.id})
            held = await approvals.request(
                agent=principal.client_id,
                tenant=principal.tenant,
                server=self._virtual,
                action=action,
                name=name,
                args=args,
                args_sha256=args_sha256,
                rule=info.rule or "",
            )
            raise ApprovalRequired(
                f"{action} {name!r} is held for a human's approval ({held.id}); once approved, retry the "
                f'same call with _meta {{"{APPROVAL_META}": "{held.id}"}}',
                approval_id=held.id,
                status="pending",
            )
        except (ApprovalRequired, ApprovalDenied) as exc:
            if draft is not None:
                draft.decision = info.model_copy(
                    update={
                        "effect": "deny",
                        "reason": exc.reason,
                        "approval_id": exc.detail.get("approval_id"),
                    }
                )
            raise

    async def _count(
        self, policy: Policy, request: Request, info: DecisionInfo, draft: _Draft | None
    ) -> None:
        for limit in rate_limits(policy, request):
            wait = await self._limiter.hit(limit, bucket_key(limit, request.agent, request.resource))
            if wait > 0:
                if draft is not None:
                    draft.decision = info.model_copy(
                        update={"effect": "deny", "reason": "rate_limited", "rule": limit.id}
                    )
                raise RateLimited(
                    f"rate limit {limit.id} ({limit.limit} per {limit.window_s:g} s) reached; "
                    f"retry in {wait:.2f} s",
                    rule=limit.id,
                    retry_after_s=f"{wait:.3f}",
                )

    def refuse(self, reason: str, error: GatewayError, *, bridge: str | None = None) -> NoReturn:
        """Refuse the request in flight before its policy is evaluated (its caller lacks what the
        resource requires, e.g. a bridged call's token lacks the agent's scopes): its record's
        decision is a deny for `reason`; raises `error`."""
        draft = _DRAFT.get()
        if draft is not None:
            draft.decision = DecisionInfo(effect="deny", reason=reason)
            draft.bridge = bridge if bridge is not None else draft.bridge
        raise error

    def shows(self, scope: Mapping[str, Any], action: str, name: str) -> bool:
        principal = scope.get(PRINCIPAL)
        policy = self._policy
        if principal is None or policy is None:
            return True
        return visible(policy, self._request(principal, action, name, {}))

    async def pinned(self, upstream: str, tool: Any) -> bool:
        """Tool pinning: whether `upstream`'s `tool` may be listed as it is defined now."""
        pins = self._pins
        if pins is None or not pins.covers(upstream):
            return True
        return await pins.admits(upstream, tool, self._definition_sha256(tool))

    async def admit(self, name: str, upstream: str, tool: Any) -> None:
        """Refuse a call to a tool whose current definition is not approved. Runs before the
        arguments are validated: against a schema nobody approved, that would be meaningless."""
        draft = _DRAFT.get()
        if draft is not None:
            draft.definition_sha256 = self._definition_sha256(tool)
        if not await self.pinned(upstream, tool):
            raise ToolNotApproved(
                f"tool {name!r} is not approved as its upstream defines it now (new or changed); "
                "an operator must approve it (interlink tools approve)",
                upstream=upstream,
            )

    def _definition_sha256(self, tool: Any) -> str:
        cached = self._definitions.get(id(tool))
        if cached is not None and cached[0] is tool:
            return cached[1]
        value = definition_hash(tool)
        if len(self._definitions) > 10_000:
            self._definitions.clear()
        self._definitions[id(tool)] = (tool, value)
        return value

    # -- audit ------------------------------------------------------------------------------------

    async def around(
        self,
        scope: Mapping[str, Any],
        method: str,
        name: str | None,
        args: Mapping[str, Any] | None,
        run: Callable[[], Awaitable[T]],
        meta: Mapping[str, Any] | None = None,
    ) -> T:
        draft = _Draft(started=time.perf_counter(), meta=meta)
        audit = self._audit
        if audit is None:
            token = _DRAFT.set(draft)
            try:
                return await run()
            finally:
                _DRAFT.reset(token)
        try:
            audit.ensure_ready()
        except AuditUnavailable as exc:
            audit.append_nowait(self._event(scope, method, name, args, draft, exc, draft.started))
            raise
        token = _DRAFT.set(draft)
        try:
            result = await run()
        except BaseException as exc:
            event = self._event(scope, method, name, args, draft, exc, draft.started)
            if isinstance(exc, AuditUnavailable) or not isinstance(exc, Exception):
                audit.append_nowait(event)  # the store is failing, or the request was cancelled
            else:
                await audit.append(event)
            raise
        finally:
            _DRAFT.reset(token)
        await audit.append(self._event(scope, method, name, args, draft, result, draft.started))
        return result

    def _event(
        self,
        scope: Mapping[str, Any],
        method: str,
        name: str | None,
        args: Mapping[str, Any] | None,
        draft: _Draft,
        result: Any,
        started: float,
    ) -> Event:
        outcome, denied_reason = _outcome(result, method)
        decision = draft.decision
        result_of = draft.ref if not isinstance(result, _WriteAhead) else None
        if denied_reason is not None:
            if decision is None or decision.effect == "allow":
                decision = DecisionInfo(effect="deny", reason=denied_reason)
        elif decision is None:
            decision = DecisionInfo(effect="allow", reason=self._default_reason(scope, method))
        resource = f"{self._protocol}:{self._virtual}/{name}" if name is not None else None
        return Event(
            event=f"{self._protocol}.{method}.result" if result_of else f"{self._protocol}.{method}",
            ref=result_of,
            actor=_actor(scope),
            target=Target(
                protocol=self._protocol,
                server=self._virtual,
                method=method,
                name=name,
                definition_sha256=draft.definition_sha256,
                bridge=draft.bridge,
            ),
            decision=decision,
            outcome=outcome,
            args_sha256=safe_digest(args) if args is not None else None,
            args=pick_fields(args, self._fields_for(resource)) if args and resource and not result_of else {},
            latency_us=int((time.perf_counter() - started) * 1_000_000),
            trace_id=_trace_id(scope),
        )

    def _default_reason(self, scope: Mapping[str, Any], method: str) -> str:
        """Why a request nobody `check`ed was allowed: a list shown through the policy's filter, a
        public server, or a protected one without a policy."""
        if self._public:
            return "public"
        if self._policy is not None and scope.get(PRINCIPAL) is not None and method.endswith("/list"):
            return "filtered"
        return "no_policy"

    def _fields_for(self, resource: str) -> list[str]:
        cached = self._fields_cache.get(resource)
        if cached is None:
            cached = [
                f
                for pattern, fields in self._argument_fields.items()
                if resource_matches(pattern, resource)
                for f in fields
            ]
            if len(self._fields_cache) < 10_000:
                self._fields_cache[resource] = cached
        return cached


DENYING_REASONS: Final = frozenset(
    {
        "policy_denied",
        "unknown_tool",
        "unknown_skill",
        "unknown_prompt",
        "unknown_resource",
        "invalid_arguments",
        "audit_unavailable",
        "rate_limited",
        "tool_not_approved",
        "approval_required",
        "approval_denied",
        "rate_limit_unavailable",
    }
)
"""Failure reasons that mean the gateway refused the call (nothing reached an upstream)."""


def _outcome(result: Any, method: str = "") -> tuple[Outcome, str | None]:
    """The outcome of a request, and the refusal reason when the gateway refused it."""
    if isinstance(result, _WriteAhead):
        return Outcome(status="pending"), None
    if isinstance(result, Failed):
        return Outcome(status="error", reason=result.reason), None
    if isinstance(result, BaseException):
        return _failure(result)
    if (
        method == "SendMessage"
        and isinstance(result, A2ATask)
        and result.status.state
        in (
            A2AState.TASK_STATE_FAILED,
            A2AState.TASK_STATE_REJECTED,
        )
    ):
        return Outcome(status="error", reason="downstream_failed"), None
    if getattr(result, "is_error", False):
        meta = getattr(result, "meta", None) or {}
        reason = meta.get("io.interlink/reason") if isinstance(meta, Mapping) else None
        if reason == "invalid_arguments":
            return Outcome(status="denied", reason=reason), reason
        if isinstance(reason, str):  # a bridge's own reason, e.g. an OpenAPI upstream's HTTP status
            http = meta.get("io.interlink/status")
            return Outcome(status="tool_error", reason=reason, code=http if type(http) is int else None), None
        return Outcome(status="tool_error"), None
    return Outcome(status="ok"), None


def _failure(exc: BaseException) -> tuple[Outcome, str | None]:
    """The outcome of a request that raised, and the refusal reason when the gateway refused it."""
    if isinstance(exc, asyncio.CancelledError):
        return Outcome(status="error", reason="cancelled"), None
    if isinstance(exc, GatewayError):
        code = REASON_CODES.get(exc.reason, REASON_CODES["internal_error"])[0]
        if exc.reason in DENYING_REASONS:
            return Outcome(status="denied", reason=exc.reason, code=code), exc.reason
        return Outcome(status="error", reason=exc.reason, code=code), None
    if isinstance(exc, MCPError):
        data = exc.data if isinstance(exc.data, Mapping) else {}
        reason = data.get("reason") if isinstance(data.get("reason"), str) else "upstream_error"
        return Outcome(status="error", reason=reason, code=exc.code), None
    if isinstance(exc, A2AError):  # the SDK's own answers (TaskNotFound, TaskNotCancelable...)
        reason = A2A_ERROR_REASONS.get(type(exc), "internal_error").lower()
        return Outcome(status="error", reason=reason, code=JSON_RPC_ERROR_CODE_MAP.get(type(exc))), None
    return Outcome(status="error", reason="internal_error", code=-32603), None


def _actor(scope: Mapping[str, Any]) -> Actor:
    principal: Principal | None = scope.get(PRINCIPAL)
    client = scope.get("client")
    address = client[0] if client else None
    if principal is None:
        return Actor(address=address)
    return Actor(
        agent=principal.client_id,
        tenant=principal.tenant,
        act=list(principal.actors),
        subject=principal.subject if principal.subject != principal.client_id else None,
        token_id=principal.token_id,
        address=address,
    )


def _trace_id(scope: Mapping[str, Any]) -> str | None:
    """The W3C trace id of the caller's `traceparent` header, when well formed."""
    for key, value in scope.get("headers", ()):
        if key == b"traceparent":
            parts: list[str] = bytes(value).decode("latin-1").split("-")
            if len(parts) == 4 and len(parts[1]) == 32 and all(c in "0123456789abcdef" for c in parts[1]):
                return parts[1]
    return None


def safe_digest(args: Any) -> str:
    """`digest`, or for values JCS refuses (integers beyond 2**53, NaN) a sorted-keys JSON digest."""
    try:
        return digest(args)
    except Exception:  # noqa: BLE001 - any value the canonicaliser refuses
        return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()
