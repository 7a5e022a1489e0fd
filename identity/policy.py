"""The least-privilege policy: declarative rules and their pure evaluator.

Semantics (Cedar-shaped): deny by default; a request is allowed only if some `permit` rule matches
and no `forbid` rule matches; if evaluating any rule that could apply raises an error (a missing
argument, a type mismatch: `"1000"` is not `1000`), the decision is deny. No type coercion anywhere.
Imports nothing from the gateway or the adapters.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from fnmatch import fnmatchcase, translate
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Effect = Literal["permit", "forbid"]
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "matches"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: Final[tuple[Day, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RESOURCE: Final = re.compile(r"^(mcp|a2a):([a-z0-9][a-z0-9_-]*)/(.+)$")
"""`mcp:<server>/<tool>` or `a2a:<agent>/<skill>`; the server part is literal, the rest may be a glob."""

Scalar = int | float | str | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArgCondition(_Model):
    """One constraint on a call argument, addressed by a dotted path (`amount`, `address.country`)."""

    path: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
    op: Op
    value: Scalar | list[Scalar]

    @model_validator(mode="after")
    def _shape(self) -> ArgCondition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"'{self.op}' needs a list value")
        if self.op not in ("in", "not_in") and isinstance(self.value, list):
            raise ValueError(f"'{self.op}' needs a single value")
        if self.op in ("<", "<=", ">", ">=") and not _is_number(self.value):
            raise ValueError(f"'{self.op}' compares numbers; give a number")
        if self.op == "matches":
            if not isinstance(self.value, str):
                raise ValueError("'matches' needs a regular expression string")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class TimeWindow(_Model):
    """Allowed local times: `start <= now < end` on the listed days, in a named time zone."""

    timezone: str = "UTC"
    days: list[Day] = list(DAYS)
    start: time = time(0, 0)
    end: time = time(23, 59, 59, 999999)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Principals(_Model):
    """Who a rule applies to; an empty list means any. All given lists must match."""

    agents: list[str] = []
    tenants: list[str] = []
    groups: list[str] = []
    """Any of these groups (from the agent's registration, or an external token's `groups` claim)."""


def _scoped_resources(values: list[str]) -> list[str]:
    for value in values:
        if not RESOURCE.match(value):
            raise ValueError(f"{value!r}: expected mcp:<server>/<tool> or a2a:<agent>/<skill>")
    return values


class Rule(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    effect: Effect
    principals: Principals = Principals()
    actions: list[str] = Field(min_length=1)
    resources: list[str] = Field(min_length=1)
    args: list[ArgCondition] = []
    time: TimeWindow | None = None
    approval: bool = False
    """A permit that holds the call until a human approves it (see gateway/approvals.py)."""
    description: str = ""

    @model_validator(mode="after")
    def _approval_on_permit(self) -> Rule:
        if self.approval and self.effect != "permit":
            raise ValueError("approval applies to permit rules only")
        return self

    @field_validator("resources")
    @classmethod
    def _scoped(cls, values: list[str]) -> list[str]:
        return _scoped_resources(values)


class RateLimit(_Model):
    """At most `limit` calls per `window_s` seconds (a token bucket: bursts up to `limit`, refilled
    evenly), counted per agent, per resource, or per agent and resource, for the calls it targets.
    Only calls the rules allow are counted."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    principals: Principals = Principals()
    actions: list[str] = ["tools/call"]
    resources: list[str] = Field(min_length=1)
    per: Literal["agent", "resource", "agent_resource"] = "agent"
    limit: int = Field(ge=1)
    window_s: float = Field(gt=0, le=86_400)

    @field_validator("resources")
    @classmethod
    def _scoped(cls, values: list[str]) -> list[str]:
        return _scoped_resources(values)


class Policy(_Model):
    version: str = "1"
    rules: list[Rule] = []
    rate_limits: list[RateLimit] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        ids = [r.id for r in self.rules] + [r.id for r in self.rate_limits]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(dupes)}")
        return self


@dataclass(frozen=True)
class Request:
    """A protocol-neutral call to decide: who, what action, on which resource, with which arguments."""

    agent: str
    tenant: str | None
    action: str
    resource: str
    args: Mapping[str, Any] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(ZoneInfo("UTC")))
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    allow: bool
    rule: str | None
    """The deciding rule: the forbid that denied, the permit that allowed, or None (default deny)."""
    reason: str
    policy_version: str
    code: Literal["permit", "forbid", "evaluation_error", "default_deny"] = "default_deny"
    """Stable kind of the decision, for audit records and error data."""
    approval: bool = False
    """Allowed only once a human approves this call (the deciding permit asks for approval)."""


class EvaluationError(Exception):
    """A rule could not be evaluated for this request; the decision becomes deny."""


def evaluate(policy: Policy, request: Request) -> Decision:
    """Deny by default; any matching forbid wins; any evaluation error denies (Cedar's semantics).

    Rules are looked at in policy order, so the first forbid or error decides a deny and the first
    matching permit an allow."""
    permit: Rule | None = None
    for target in _targeting(policy, request):
        rule = target.rule
        try:
            matched = target.unconditional or _conditions_hold(rule, request)
        except EvaluationError as exc:
            return Decision(
                False,
                rule.id,
                f"rule {rule.id} could not be evaluated: {exc}",
                policy.version,
                "evaluation_error",
            )
        if matched and target.forbid:
            return Decision(False, rule.id, f"forbidden by rule {rule.id}", policy.version, "forbid")
        if matched and permit is None:
            permit = rule
    if permit is not None:
        return Decision(
            True, permit.id, f"permitted by rule {permit.id}", policy.version, "permit", permit.approval
        )
    return Decision(False, None, "no rule permits this request (deny by default)", policy.version)


def rate_limits(policy: Policy, request: Request) -> list[RateLimit]:
    """The rate limits that count this request (in policy order)."""
    out = []
    for limit in policy.rate_limits:
        who = limit.principals
        if who.agents and request.agent not in who.agents:
            continue
        if who.tenants and request.tenant not in who.tenants:
            continue
        if who.groups and request.groups.isdisjoint(who.groups):
            continue
        if request.action not in limit.actions and "*" not in limit.actions:
            continue
        if any(resource_matches(p, request.resource) for p in limit.resources):
            out.append(limit)
    return out


def visible(policy: Policy, request: Request) -> bool:
    """Whether a resource may be shown at all (lists): some permit could apply, ignoring arguments
    and time, and no unconditional forbid applies."""
    permitted = False
    for target in _targeting(policy, request):
        if target.forbid and target.unconditional:
            return False
        if not target.forbid:
            permitted = True
    return permitted


# -- the compiled policy: what `_targets` decides, parsed once per Policy --------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """One rule as it applies to one `kind:server`: its principals, actions and tool patterns parsed
    once. An empty `agents`/`tenants` means any, as in `Principals`."""

    rule: Rule
    agents: frozenset[str]
    tenants: frozenset[str]
    groups: frozenset[str]
    actions: frozenset[str]
    any_action: bool
    tools: frozenset[str]
    """Tool patterns without glob characters: `fnmatchcase` on them is plain equality."""
    globs: tuple[Callable[[str], re.Match[str] | None], ...]
    """The others, compiled exactly as `fnmatchcase` compiles them."""
    forbid: bool
    unconditional: bool
    """No argument conditions and no time window: the rule matches whenever it targets."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    rules: list[Rule]
    """The list this was built from; a Policy whose `rules` is another list is compiled afresh."""
    by_server: dict[tuple[str, str], tuple[_Target, ...]]
    """`(kind, server)` -> the rules naming that server, in policy order."""


_COMPILED: Final[dict[int, _Compiled]] = {}
"""id(policy) -> its compiled form. Keyed by id, not the Policy, because a Policy is unhashable (its
lists) and equal policies may differ in identity; not a pydantic `PrivateAttr`, because private
attributes take part in `==` and are carried over by `model_copy(update=...)`. A finalizer drops the
entry when the Policy is collected, before its id can be reused; two threads racing compile the same
thing twice, harmlessly. A Policy is treated as immutable, as its frozen model says: editing its lists
in place is not seen by a compiled form."""


def _compiled(policy: Policy) -> _Compiled:
    key = id(policy)
    compiled = _COMPILED.get(key)
    if compiled is None or compiled.rules is not policy.rules:
        if compiled is None:
            weakref.finalize(policy, _COMPILED.pop, key, None)
        compiled = _COMPILED[key] = _compile(policy.rules)
    return compiled


def _compile(rules: list[Rule]) -> _Compiled:
    by_server: dict[tuple[str, str], list[_Target]] = {}
    for rule in rules:
        patterns: dict[tuple[str, str], list[str]] = {}
        for pattern in rule.resources:
            parsed = RESOURCE.match(pattern)
            if parsed is not None:  # always, once validated
                patterns.setdefault((parsed.group(1), parsed.group(2)), []).append(parsed.group(3))
        for server, tools in patterns.items():
            by_server.setdefault(server, []).append(_target(rule, tools))
    return _Compiled(rules, {server: tuple(targets) for server, targets in by_server.items()})


def _target(rule: Rule, tools: list[str]) -> _Target:
    globs = [tool for tool in tools if any(c in tool for c in "*?[")]
    return _Target(
        rule=rule,
        agents=frozenset(rule.principals.agents),
        tenants=frozenset(rule.principals.tenants),
        groups=frozenset(rule.principals.groups),
        actions=frozenset(rule.actions),
        any_action="*" in rule.actions,
        tools=frozenset(tool for tool in tools if tool not in globs),
        globs=tuple(re.compile(translate(glob)).match for glob in globs),
        forbid=rule.effect == "forbid",
        unconditional=not rule.args and rule.time is None,
    )


def _targeting(policy: Policy, request: Request) -> Iterator[_Target]:
    """The rules that `_targets` the request, in policy order: only those naming its server."""
    parsed = RESOURCE.match(request.resource)
    if parsed is None:
        return
    tool = parsed.group(3)
    agent, tenant, action = request.agent, request.tenant, request.action
    for target in _compiled(policy).by_server.get((parsed.group(1), parsed.group(2)), ()):
        if target.agents and agent not in target.agents:
            continue
        if target.tenants and tenant not in target.tenants:
            continue
        if target.groups and request.groups.isdisjoint(target.groups):
            continue
        if not target.any_action and action not in target.actions:
            continue
        if tool in target.tools or any(match(tool) for match in target.globs):
            yield target


# -- per rule: the reference the compiled form must agree with (also used by `policy explain`) ------


def _targets(rule: Rule, request: Request) -> bool:
    who = rule.principals
    if who.agents and request.agent not in who.agents:
        return False
    if who.tenants and request.tenant not in who.tenants:
        return False
    if who.groups and request.groups.isdisjoint(who.groups):
        return False
    if request.action not in rule.actions and "*" not in rule.actions:
        return False
    return any(resource_matches(pattern, request.resource) for pattern in rule.resources)


def resource_matches(pattern: str, resource: str) -> bool:
    """Whether a rule's resource pattern covers a resource: same kind and server, glob on the rest."""
    p, r = RESOURCE.match(pattern), RESOURCE.match(resource)
    if p is None or r is None:
        return False
    return p.group(1) == r.group(1) and p.group(2) == r.group(2) and fnmatchcase(r.group(3), p.group(3))


def _conditions_hold(rule: Rule, request: Request) -> bool:
    """Every condition is evaluated (no short-circuit), so whether a request errors does not depend
    on the order conditions are written in."""
    if rule.time is not None and not _in_window(rule.time, request.now):
        return False
    results = [_holds(c, request.args) for c in rule.args]
    return all(results)


def _in_window(window: TimeWindow, now: datetime) -> bool:
    if now.tzinfo is None:
        raise EvaluationError("the request time has no time zone")
    local = now.astimezone(ZoneInfo(window.timezone))
    if DAYS[local.weekday()] not in window.days:
        return False
    return window.start <= local.time().replace(tzinfo=None) < window.end


def _holds(condition: ArgCondition, args: Mapping[str, Any]) -> bool:
    value = _lookup(args, condition.path)
    expected = condition.value
    op = condition.op
    if op in ("in", "not_in"):
        assert isinstance(expected, list)
        found = any(_same(value, item) for item in expected)
        return found if op == "in" else not found
    if op == "matches":
        if not isinstance(value, str):
            raise EvaluationError(f"{condition.path} is not a string")
        return re.fullmatch(str(expected), value) is not None
    if op in ("==", "!="):
        return _same(value, expected) == (op == "==")
    if not _is_number(value):
        raise EvaluationError(f"{condition.path} is not a number")
    number, bound = float(value), float(expected)  # type: ignore[arg-type]
    return {"<": number < bound, "<=": number <= bound, ">": number > bound, ">=": number >= bound}[op]


def _lookup(args: Mapping[str, Any], path: str) -> Any:
    current: Any = args
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            raise EvaluationError(f"argument {path} is missing")
        current = current[part]
    return current


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is not


def _same(a: Any, b: Any) -> bool:
    """Equality without coercion: 1 == 1.0 (both numbers), but "1" != 1 and True != 1."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)
