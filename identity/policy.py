"""The least-privilege policy: declarative rules and their pure evaluator.

Semantics (Cedar-shaped): deny by default; a request is allowed only if some `permit` rule matches
and no `forbid` rule matches; if evaluating any rule that could apply raises an error (a missing
argument, a type mismatch: `"1000"` is not `1000`), the decision is deny. No type coercion anywhere.
Imports nothing from the gateway or the adapters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from fnmatch import fnmatchcase
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


class Rule(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    effect: Effect
    principals: Principals = Principals()
    actions: list[str] = Field(min_length=1)
    resources: list[str] = Field(min_length=1)
    args: list[ArgCondition] = []
    time: TimeWindow | None = None
    description: str = ""

    @field_validator("resources")
    @classmethod
    def _scoped(cls, values: list[str]) -> list[str]:
        for value in values:
            if not RESOURCE.match(value):
                raise ValueError(f"{value!r}: expected mcp:<server>/<tool> or a2a:<agent>/<skill>")
        return values


class Policy(_Model):
    version: str = "1"
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        ids = [r.id for r in self.rules]
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


@dataclass(frozen=True)
class Decision:
    allow: bool
    rule: str | None
    """The deciding rule: the forbid that denied, the permit that allowed, or None (default deny)."""
    reason: str
    policy_version: str


class EvaluationError(Exception):
    """A rule could not be evaluated for this request; the decision becomes deny."""


def evaluate(policy: Policy, request: Request) -> Decision:
    """Deny by default; any matching forbid wins; any evaluation error denies."""
    permit: Rule | None = None
    for rule in policy.rules:
        if not _targets(rule, request):
            continue
        try:
            matched = _conditions_hold(rule, request)
        except EvaluationError as exc:
            return Decision(False, rule.id, f"rule {rule.id} could not be evaluated: {exc}", policy.version)
        if matched and rule.effect == "forbid":
            return Decision(False, rule.id, f"forbidden by rule {rule.id}", policy.version)
        if matched and permit is None:
            permit = rule
    if permit is not None:
        return Decision(True, permit.id, f"permitted by rule {permit.id}", policy.version)
    return Decision(False, None, "no rule permits this request (deny by default)", policy.version)


def visible(policy: Policy, request: Request) -> bool:
    """Whether a resource may be shown at all (lists): some permit could apply, ignoring arguments
    and time, and no unconditional forbid applies."""
    permitted = False
    for rule in policy.rules:
        if not _targets(rule, request):
            continue
        if rule.effect == "forbid" and not rule.args and rule.time is None:
            return False
        if rule.effect == "permit":
            permitted = True
    return permitted


def _targets(rule: Rule, request: Request) -> bool:
    who = rule.principals
    if who.agents and request.agent not in who.agents:
        return False
    if who.tenants and request.tenant not in who.tenants:
        return False
    if request.action not in rule.actions and "*" not in rule.actions:
        return False
    return any(_resource_matches(pattern, request.resource) for pattern in rule.resources)


def _resource_matches(pattern: str, resource: str) -> bool:
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
