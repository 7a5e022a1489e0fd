"""`interlink policy explain` and `interlink policy test`: decide calls offline with the gateway's own
evaluator, show why rule by rule, and check a table of expected decisions (for CI). No network, no
database: only the policy and the agents declared in the configuration are read."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from gateway.settings import ConfigError, load_settings
from identity.policy import (
    DAYS,
    RESOURCE,
    ArgCondition,
    Decision,
    EvaluationError,
    Policy,
    Request,
    Rule,
    _conditions_hold,
    _targets,
    evaluate,
)

Model = TypeVar("Model", bound=BaseModel)
Tenants = Mapping[str, str | None]
"""client_id -> tenant of every agent declared in `identity.agents`."""

RESOURCE_HINT = "expected mcp:<server>/<tool> or a2a:<agent>/<skill>"


class Case(BaseModel):
    """One row of a `policy test` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    agent: str
    tenant: str | None = None
    """Default: the agent's tenant in `identity.agents`."""
    action: str
    resource: str
    args: dict[str, JsonValue] = {}
    at: AwareDatetime | None = None
    """Default: now."""
    expect: Literal["allow", "deny"]
    rule: str | None = None
    """The expected deciding rule; `rule: null` expects none (deny by default); absent: not checked."""

    @field_validator("resource")
    @classmethod
    def _scoped(cls, value: str) -> str:
        if not RESOURCE.match(value):
            raise ValueError(RESOURCE_HINT)
        return value


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cases: list[Case] = Field(min_length=1)


def add_parsers(sub: Any) -> None:
    """The `policy` command group."""
    source = argparse.ArgumentParser(add_help=False)
    where = source.add_mutually_exclusive_group()
    where.add_argument(
        "--config", type=Path, metavar="FILE", help="configuration: its `policy` and `identity.agents`"
    )
    where.add_argument(
        "--policy", type=Path, metavar="FILE", help="a YAML file holding just a policy (version, rules)"
    )
    policy = sub.add_parser("policy", help="explain a policy decision; run policy test cases")
    verbs = policy.add_subparsers(dest="verb", metavar="VERB", required=True)
    explain = verbs.add_parser(
        "explain", parents=[source], help="ALLOW or DENY for one call, and why (exit 0 allow, 1 deny)"
    )
    explain.add_argument("--agent", required=True, metavar="CLIENT_ID")
    explain.add_argument("--action", required=True, help="e.g. tools/call")
    explain.add_argument("--resource", required=True, type=_resource, metavar="mcp:SERVER/TOOL")
    explain.add_argument("--args", type=_json_object, default={}, metavar="JSON", help="a JSON object")
    explain.add_argument("--tenant", help="default: the agent's tenant in identity.agents")
    explain.add_argument("--at", type=_aware, metavar="ISO-8601", help="with a UTC offset; default: now")
    test = verbs.add_parser(
        "test", parents=[source], help="check a YAML file of cases against the policy (exit 0 = all pass)"
    )
    test.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="cases: [{name, agent, tenant, action, resource, args, at, expect: allow|deny, rule}]",
    )


def run(args: argparse.Namespace, config: Path | None) -> int:
    try:
        policy, tenants = _sources(args.policy, config)
        if args.verb == "explain":
            return _explain(args, policy, tenants)
        return _test(_load(args.file, CaseFile), policy, tenants)
    except ConfigError as exc:
        print(f"interlink: {exc}", file=sys.stderr)
        return 2


def _resource(text: str) -> str:
    if not RESOURCE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: {RESOURCE_HINT}")
    return text


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"amount\": 5}}', got {text!r}")
    return value


def _aware(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date and time") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; write e.g. 2026-11-30T09:00:00+01:00 or ...T08:00:00Z"
        )
    return when


def _sources(policy_file: Path | None, config: Path | None) -> tuple[Policy, Tenants]:
    """The policy to decide with, and the tenants of the agents the configuration declares."""
    if policy_file is not None:
        return _load(policy_file, Policy), {}
    if config is None:
        raise ConfigError("no policy to use: give --config FILE or --policy FILE (no ./interlink.yaml here)")
    from gateway.policies import initial_policy

    settings = load_settings(config)
    policy = initial_policy(settings)
    if policy is None:
        raise ConfigError(
            f"{config}: no `policy` or `policy_file` (without one, any call with a valid token is allowed)"
        )
    return policy, {a.client_id: a.tenant for a in settings.identity.agents}


def _load(path: Path, model: type[Model]) -> Model:
    """A YAML file validated by `model`; ConfigError names the file, key path and expectation."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _describe(exc: ValidationError, path: Path) -> str:
    """As `gateway.settings.describe_errors`, without the environment (these files have no overrides)."""
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) and len(repr(got)) < 80 else ""
        lines.append(f"  {loc}: {err['msg']}{shown}")
    return "\n".join(lines)


def _tenant(agent: str, given: str | None, tenants: Tenants) -> str | None:
    return given if given is not None else tenants.get(agent)


def _explain(args: argparse.Namespace, policy: Policy, tenants: Tenants) -> int:
    if args.tenant is None and args.agent not in tenants:
        print(
            f"note: no tenant known for {args.agent} (not in identity.agents); see --tenant", file=sys.stderr
        )
    request = Request(
        agent=args.agent,
        tenant=_tenant(args.agent, args.tenant, tenants),
        action=args.action,
        resource=args.resource,
        args=args.args,
        now=args.at or datetime.now(UTC),
    )
    decision = evaluate(policy, request)  # the verdict is the gateway's own; the trace only explains it
    if decision.allow and decision.approval:
        print("ALLOW, once a human approves it (the deciding rule asks for approval)")
    else:
        print("ALLOW" if decision.allow else "DENY")
    print(f"rule:     {decision.rule or 'none: deny by default'}")
    print(f"reason:   {decision.reason}")
    print(f"policy:   version {decision.policy_version}")
    print(
        f"request:  agent {request.agent}, tenant {request.tenant or '(none)'}, "
        f"{request.action} {request.resource}, at {request.now.isoformat()}"
    )
    print("trace (rules that target this request, in policy order):")
    lines = [line for rule in policy.rules if _targets(rule, request) for line in _trace(rule, request)]
    for line in lines or ["  none: no rule names this agent/tenant, action and resource"]:
        print(line)
    return 0 if decision.allow else 1


def _trace(rule: Rule, request: Request) -> list[str]:
    """The rule's outcome as `evaluate` sees it, then each of its conditions on its own."""
    try:
        outcome = "matched" if _conditions_hold(rule, request) else "not matched"
    except EvaluationError as exc:
        outcome = f"error: {exc} (an error denies)"
    if rule.time is None and not rule.args:
        outcome += " (no conditions)"
    lines = [f"  {rule.id}  {rule.effect}  {outcome}"]
    in_window = True
    if rule.time is not None:
        in_window = _conditions_hold(rule.model_copy(update={"args": []}), request)
        lines.append(f"      {_window(rule, request, in_window)}")
    for condition in rule.args:
        lines.append(f"      {_condition(rule, condition, request, in_window)}")
    return lines


def _window(rule: Rule, request: Request, inside: bool) -> str:
    window = rule.time
    assert window is not None
    days = "every day" if list(window.days) == list(DAYS) else ",".join(window.days)
    local = request.now.astimezone(ZoneInfo(window.timezone))
    span = f"{_clock(window.start)}-{_clock(window.end)}"
    seen = f"{DAYS[local.weekday()]} {_clock(local.time())}"
    return f"time {days} {span} {window.timezone}: {'inside' if inside else 'outside'} (local {seen})"


def _clock(moment: time) -> str:
    return moment.isoformat(timespec="minutes")


def _condition(rule: Rule, condition: ArgCondition, request: Request, in_window: bool) -> str:
    text = f"{condition.path} {condition.op} {json.dumps(condition.value)}"
    if not in_window:
        return f"{text}: not evaluated (outside the time window)"
    alone = rule.model_copy(update={"args": [condition], "time": None})
    try:
        held = _conditions_hold(alone, request)
    except EvaluationError as exc:
        return f"{text}: error: {exc}{_got(request.args, condition.path)}"
    return f"{text}: {'holds' if held else 'fails'}{_got(request.args, condition.path)}"


def _got(args: Mapping[str, Any], path: str) -> str:
    current: Any = args
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    shown = json.dumps(current, default=str)
    return f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"


def _test(table: CaseFile, policy: Policy, tenants: Tenants) -> int:
    now = datetime.now(UTC)
    failed = 0
    for number, case in enumerate(table.cases, 1):
        request = Request(
            agent=case.agent,
            tenant=_tenant(case.agent, case.tenant, tenants),
            action=case.action,
            resource=case.resource,
            args=case.args,
            now=case.at or now,
        )
        decision = evaluate(policy, request)
        name = case.name or f"#{number} {case.agent} {case.action} {case.resource}"
        if _as_expected(case, decision):
            print(f"PASS  {name}: {_outcome(decision)}")
        else:
            failed += 1
            print(f"FAIL  {name}: got {_outcome(decision)}, expected {_expected(case)}")
            print(f"      {decision.reason}")
    print(f"{len(table.cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _as_expected(case: Case, decision: Decision) -> bool:
    if decision.allow != (case.expect == "allow"):
        return False
    return "rule" not in case.model_fields_set or decision.rule == case.rule


def _outcome(decision: Decision) -> str:
    verdict = "allow" if decision.allow else "deny"
    return f"{verdict} by rule {decision.rule}" if decision.rule else f"{verdict} by default"


def _expected(case: Case) -> str:
    if "rule" not in case.model_fields_set:
        return case.expect
    return f"{case.expect} by rule {case.rule}" if case.rule else f"{case.expect} by default"
