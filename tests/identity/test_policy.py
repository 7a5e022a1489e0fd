"""The policy evaluator (identity-research §9 cases 31-35): deny by default, forbid wins, errors
deny, no coercion, time windows in named zones across DST, wildcards scoped to one server, and a
property test against an independent brute-force reference."""

from __future__ import annotations

import gc
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from identity.policy import (
    _COMPILED,
    DAYS,
    Decision,
    EvaluationError,
    Policy,
    Request,
    _compiled,
    _conditions_hold,
    _targeting,
    _targets,
    evaluate,
    visible,
)

AMOUNT_RULES = {
    "rules": [
        {
            "id": "invoices",
            "effect": "permit",
            "principals": {"agents": ["billing-bot"]},
            "actions": ["tools/call"],
            "resources": ["mcp:crm/create_invoice"],
            "args": [{"path": "amount", "op": "<", "value": 1000}],
        },
        {
            "id": "no-huge",
            "effect": "forbid",
            "actions": ["tools/call"],
            "resources": ["mcp:crm/*"],
            "args": [{"path": "amount", "op": ">=", "value": 5000}],
        },
    ]
}


def call(
    args: dict[str, Any], resource: str = "mcp:crm/create_invoice", agent: str = "billing-bot"
) -> Request:
    return Request(agent=agent, tenant="acme", action="tools/call", resource=resource, args=args)


@pytest.mark.parametrize(
    ("args", "allow"),
    [
        ({"amount": 999}, True),
        ({"amount": 999.9999}, True),
        ({"amount": -5}, True),
        ({"amount": 1000}, False),
        ({"amount": 1e3}, False),
        ({"amount": "999"}, False),  # a string is not a number: no coercion
        ({"amount": True}, False),  # nor is a boolean
        ({"amount": float("nan")}, False),
        ({}, False),  # missing
        ({"amount": None}, False),
    ],
)
def test_amount_boundaries_and_types(args: dict[str, Any], allow: bool) -> None:
    """Case 31."""
    assert evaluate(Policy.model_validate(AMOUNT_RULES), call(args)).allow is allow


def test_forbid_that_errors_still_denies() -> None:
    """Case 31 (the Cedar-without-schema regression): the forbid cannot evaluate `"5000"`, and the
    permit would allow; the decision is deny, naming the forbid."""
    rules = {"rules": [{**AMOUNT_RULES["rules"][0], "args": []}, AMOUNT_RULES["rules"][1]]}  # type: ignore[dict-item]
    decision = evaluate(Policy.model_validate(rules), call({"amount": "5000"}))
    assert (decision.allow, decision.rule) == (False, "no-huge")
    assert "could not be evaluated" in decision.reason


def test_forbid_beats_permit_and_default_is_deny() -> None:
    """Case 33."""
    policy = Policy.model_validate(AMOUNT_RULES)
    assert evaluate(policy, call({"amount": 6000})).rule == "no-huge"
    nobody = evaluate(policy, call({"amount": 1}, agent="someone-else"))
    assert (nobody.allow, nobody.rule) == (False, None)
    assert evaluate(Policy(), call({"amount": 1})).allow is False


@pytest.mark.parametrize(
    ("resource", "allow"),
    [
        ("mcp:crm/lookup", True),
        ("mcp:crm2/lookup", False),
        ("mcp:hr/lookup", False),
        ("a2a:crm/lookup", False),
        ("mcp:crm/Lookup", False),  # case matters
        ("mcp:crm/lооkup", False),  # Cyrillic о: a look-alike is another name
    ],
)
def test_wildcards_are_scoped_to_one_server(resource: str, allow: bool) -> None:
    """Case 33: `mcp:crm/look*` never reaches another server or a look-alike name."""
    policy = Policy.model_validate(
        {
            "rules": [
                {"id": "r", "effect": "permit", "actions": ["tools/call"], "resources": ["mcp:crm/look*"]}
            ]
        }
    )
    assert evaluate(policy, call({}, resource=resource)).allow is allow


BUSINESS = {
    "rules": [
        {
            "id": "office-hours",
            "effect": "permit",
            "actions": ["tools/call"],
            "resources": ["mcp:crm/*"],
            "time": {
                "timezone": "Europe/Berlin",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "09:00",
                "end": "17:00",
            },
        }
    ]
}


@pytest.mark.parametrize(
    ("utc", "allow"),
    [
        ("2026-01-14T07:59:59", False),  # Wed 08:59:59 CET
        ("2026-01-14T08:00:00", True),  # 09:00:00 CET
        ("2026-01-14T15:59:59", True),  # 16:59:59 CET
        ("2026-01-14T16:00:00", False),  # 17:00:00 CET
        ("2026-01-17T10:00:00", False),  # Saturday
        ("2026-03-30T07:00:00", True),  # Monday after the DST switch: 09:00 CEST
        ("2026-03-30T06:59:59", False),  # 08:59:59 CEST (would be 07:59:59 CET: offset matters)
        ("2026-10-26T08:00:00", True),  # Monday after the switch back: 09:00 CET
        ("2026-10-26T07:59:59", False),
    ],
)
def test_time_windows_in_the_tenant_zone_across_dst(utc: str, allow: bool) -> None:
    """Case 32: the window is Berlin local time; the request time is the gateway's clock in UTC."""
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    request = Request(agent="a", tenant=None, action="tools/call", resource="mcp:crm/x", now=now)
    assert evaluate(Policy.model_validate(BUSINESS), request).allow is allow


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"surprise": 1}, "Extra inputs"),
        ({"effect": "allow"}, "permit"),
        ({"resources": ["crm/*"]}, "expected mcp:<server>/<tool>"),
        ({"resources": ["mcp:*/x"]}, "expected mcp:<server>/<tool>"),
        ({"args": [{"path": "amount", "op": "<", "value": "1000"}]}, "compares numbers"),
        ({"args": [{"path": "region", "op": "in", "value": "eu"}]}, "needs a list"),
        ({"args": [{"path": "x", "op": "matches", "value": "("}]}, "invalid regular expression"),
        ({"time": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
    ],
)
def test_bad_policies_are_rejected_at_load(change: dict[str, Any], words: str) -> None:
    """Case 34."""
    rule = {"id": "r", "effect": "permit", "actions": ["tools/call"], "resources": ["mcp:crm/*"], **change}
    with pytest.raises(ValidationError, match=re.escape(words)):
        Policy.model_validate({"rules": [rule]})


def test_duplicate_rule_ids_are_rejected() -> None:
    rule = {"id": "r", "effect": "permit", "actions": ["tools/call"], "resources": ["mcp:crm/*"]}
    with pytest.raises(ValidationError, match="repeated: r"):
        Policy.model_validate({"rules": [rule, rule]})


def test_visibility_for_lists() -> None:
    """tools/list shows what some permit could allow, never what an unconditional forbid denies."""
    policy = Policy.model_validate(
        {
            "rules": [
                {"id": "p", "effect": "permit", "actions": ["tools/call"], "resources": ["mcp:crm/*"]},
                {"id": "f", "effect": "forbid", "actions": ["tools/call"], "resources": ["mcp:crm/delete_*"]},
            ]
        }
    )
    assert visible(policy, call({}, resource="mcp:crm/lookup"))
    assert not visible(policy, call({}, resource="mcp:crm/delete_all"))
    assert not visible(policy, call({}, resource="mcp:hr/lookup"))


# -- property test: the evaluator agrees with a brute-force reference ------------------------------

AGENTS = ["a", "b", "c"]
TENANTS = ["t1", "t2"]
GROUPS = ["finance", "support", "ops"]
ACTIONS = ["tools/call", "resources/read"]
NAMED = ["mcp:crm", "mcp:hr", "a2a:crm", "mcp:billing"]
"""`kind:server` that rules name; requests also go to `mcp:ghost`, which no rule names."""
PATTERNS = ["x", "y", "xy", "*", "x*", "?", "[xy]", "[x]", "[", "a/*", "a/b", "*/b"]
"""Tool patterns: literals, globs, a lone `[` (a literal to fnmatch), and patterns with `/`."""
TOOLS = ["x", "y", "xy", "z", "x*", "?", "[x]", "[", "a/b", "a/c", "q/b"]
"""Requested tool names, some containing `/` or glob metacharacters (which a literal must not expand)."""
VALUES: list[Any] = [0, 1, 5, 10, "5", True, None, 2.5]


def reference(policy_json: dict[str, Any], request: Request) -> tuple[bool, str | None, str]:
    """Spec, written independently: of the rules that apply, in policy order, the first that errors
    or is a matching forbid denies; else the first matching permit allows; else deny by default."""
    server, tool = request.resource.split("/", 1)
    outcomes: list[tuple[str, str, Any]] = []
    for rule in policy_json["rules"]:
        who = rule.get("principals", {})
        if who.get("agents") and request.agent not in who["agents"]:
            continue
        if who.get("tenants") and request.tenant not in who["tenants"]:
            continue
        if who.get("groups") and not set(who["groups"]) & set(request.groups):
            continue
        if request.action not in rule["actions"] and "*" not in rule["actions"]:
            continue
        if not any(
            fnmatchcase(tool, r.split("/", 1)[1]) for r in rule["resources"] if r.split("/")[0] == server
        ):
            continue
        outcomes.append((rule["id"], rule["effect"], holds(rule.get("args", []), request.args)))
    for rule_id, effect, result in outcomes:
        if result == "error":
            return False, rule_id, "evaluation_error"
        if effect == "forbid" and result:
            return False, rule_id, "forbid"
    permits = [rule_id for rule_id, effect, result in outcomes if effect == "permit" and result]
    return (True, permits[0], "permit") if permits else (False, None, "default_deny")


def holds(conditions: list[dict[str, Any]], args: Mapping[str, Any]) -> Any:
    """True, False, or "error" (a missing argument, or `<` on a non-number)."""
    result: Any = True
    for cond in conditions:
        if cond["path"] not in args:
            return "error"
        v, bound = args[cond["path"]], cond["value"]
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if cond["op"] == "<":
            if not number:
                return "error"
            result = result and v < bound
        else:  # "=="
            same = (
                number and isinstance(bound, int | float) and not isinstance(bound, bool) and v == bound
            ) or (type(v) is type(bound) and v == bound)
            result = result and same
    return result


conditions = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.sampled_from(["n", "m"]),
            "op": st.sampled_from(["<", "=="]),
            "value": st.sampled_from([1, 5, 10]),
        }
    ),
    max_size=2,
)
rules = st.fixed_dictionaries(
    {
        "effect": st.sampled_from(["permit", "forbid"]),
        "principals": st.fixed_dictionaries(
            {
                "agents": st.lists(st.sampled_from(AGENTS), max_size=2),
                "tenants": st.lists(st.sampled_from(TENANTS), max_size=1),
                "groups": st.lists(st.sampled_from(GROUPS), max_size=2),
            }
        ),
        "actions": st.lists(st.sampled_from([*ACTIONS, "*"]), min_size=1, max_size=2),
        "resources": st.lists(
            st.builds("{}/{}".format, st.sampled_from(NAMED), st.sampled_from(PATTERNS)),
            min_size=1,
            max_size=3,
        ),
        "args": conditions,
    }
)
requests = st.builds(
    Request,
    agent=st.sampled_from(AGENTS),
    tenant=st.sampled_from([*TENANTS, None]),
    action=st.sampled_from(ACTIONS),
    resource=st.builds("{}/{}".format, st.sampled_from([*NAMED, "mcp:ghost"]), st.sampled_from(TOOLS)),
    args=st.dictionaries(st.sampled_from(["n", "m"]), st.sampled_from(VALUES), max_size=2),
    groups=st.frozensets(st.sampled_from(GROUPS), max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(rules, max_size=12), st.lists(requests, min_size=1, max_size=4))
def test_evaluator_agrees_with_reference(rule_list: list[dict[str, Any]], calls: list[Request]) -> None:
    """Case 35: for random policies (several servers, globs and literals, `*` actions) and requests,
    the compiled evaluator agrees with the reference on the decision and the deciding rule, and
    targets exactly the rules the per-rule `_targets` (used by `policy explain`) does."""
    policy_json = {"version": "p", "rules": [{**r, "id": f"r{i}"} for i, r in enumerate(rule_list)]}
    policy = Policy.model_validate(policy_json)
    for request in calls:  # several requests per policy: the compiled form is reused
        decision = evaluate(policy, request)
        assert (decision.allow, decision.rule, decision.code) == reference(policy_json, request)
        assert decision.policy_version == "p"
        targeted = [rule for rule in policy.rules if _targets(rule, request)]
        assert [t.rule for t in _targeting(policy, request)] == targeted
        unconditional_forbid = any(r.effect == "forbid" and not r.args for r in targeted)
        expected = not unconditional_forbid and any(r.effect == "permit" for r in targeted)
        assert visible(policy, request) is expected


# -- the compiled form against the per-rule path, on larger policies with every kind of condition ----


def per_rule(policy: Policy, request: Request) -> Decision:
    """`evaluate` as it was before compiling: every rule, in order, through `_targets`."""
    permit: str | None = None
    for rule in policy.rules:
        if not _targets(rule, request):
            continue
        try:
            matched = _conditions_hold(rule, request)
        except EvaluationError as exc:
            reason = f"rule {rule.id} could not be evaluated: {exc}"
            return Decision(False, rule.id, reason, policy.version, "evaluation_error")
        if matched and rule.effect == "forbid":
            return Decision(False, rule.id, f"forbidden by rule {rule.id}", policy.version, "forbid")
        if matched and permit is None:
            permit = rule.id
    if permit is not None:
        return Decision(True, permit, f"permitted by rule {permit}", policy.version, "permit")
    return Decision(False, None, "no rule permits this request (deny by default)", policy.version)


def random_rule(rng: random.Random, n: int) -> dict[str, Any]:
    servers = rng.sample(NAMED, rng.choice([1, 1, 1, 2]))
    conditions = [
        {"path": "n", "op": "<", "value": 5},
        {"path": "n", "op": "in", "value": [1, 5]},
        {"path": "s", "op": "matches", "value": "a.*"},
        {"path": "d.k", "op": "==", "value": "v"},
    ]
    rule: dict[str, Any] = {
        "id": f"r{n}",
        "effect": rng.choice(["permit", "permit", "forbid"]),
        "principals": {
            "agents": rng.sample(AGENTS, rng.randint(0, 2)),
            "tenants": rng.sample(TENANTS, rng.randint(0, 1)),
            "groups": rng.sample(GROUPS, rng.choice([0, 0, 1])),
        },
        "actions": rng.choice([["tools/call"], ["resources/read"], ["*"], ACTIONS]),
        "resources": [f"{rng.choice(servers)}/{rng.choice(PATTERNS)}" for _ in range(rng.randint(1, 3))],
        "args": rng.sample(conditions, rng.choice([0, 0, 1, 2])),
    }
    if rng.random() < 0.2:
        rule["time"] = {"timezone": "Europe/Berlin", "days": ["mon", "tue"], "start": "09:00", "end": "17:00"}
    return rule


def random_request(rng: random.Random) -> Request:
    args: dict[str, Any] = {
        "n": rng.choice(VALUES),
        "s": rng.choice(["abc", "xa", 5]),
        "d": {"k": rng.choice(["v", 1])},
    }
    for key in rng.sample(sorted(args), rng.randint(0, 2)):
        del args[key]
    server = rng.choice([*NAMED, "mcp:ghost"])
    return Request(
        agent=rng.choice(AGENTS),
        tenant=rng.choice([*TENANTS, None]),
        action=rng.choice(ACTIONS),
        resource=f"{server}/{rng.choice(TOOLS)}"
        if rng.random() < 0.95
        else rng.choice(["crm/x", "mcp:Crm/x", "mcp:crm/"]),
        args=args,
        now=datetime(2026, 1, 12, rng.choice([7, 10, 20]), tzinfo=UTC),
        groups=frozenset(rng.sample(GROUPS, rng.randint(0, 2))),
    )


@pytest.mark.parametrize("size", [1, 40, 300])
def test_compiled_matches_per_rule_path(size: int) -> None:
    """Same `Decision` (rule, reason, code, version) and same visibility as rule-by-rule, for many
    rules over several servers, with time windows, every kind of error and malformed resources."""
    rng = random.Random(size)
    policy = Policy.model_validate(
        {"version": f"v{size}", "rules": [random_rule(rng, n) for n in range(size)]}
    )
    for _ in range(1500):
        request = random_request(rng)
        assert evaluate(policy, request) == per_rule(policy, request)
        targeted = [r for r in policy.rules if _targets(r, request)]
        shown = not any(r.effect == "forbid" and not r.args and r.time is None for r in targeted)
        assert visible(policy, request) is (shown and any(r.effect == "permit" for r in targeted))


def test_compiled_once_per_policy_instance() -> None:
    """The compiled form is cached by identity: reused, invisible to `==`, never carried over by
    `model_copy`, and dropped with the Policy."""
    data = {"rules": [{"id": "p", "effect": "permit", "actions": ["*"], "resources": ["mcp:crm/*"]}]}
    policy, twin = Policy.model_validate(data), Policy.model_validate(data)
    request = call({}, resource="mcp:crm/x")
    assert evaluate(policy, request).allow
    assert _compiled(policy) is _compiled(policy)
    assert policy == twin
    emptied = policy.model_copy(update={"rules": []})
    assert (evaluate(emptied, request).allow, evaluate(policy, request).allow) == (False, True)
    assert evaluate(policy.model_copy(update={"version": "2"}), request).policy_version == "2"
    key = id(policy)
    del policy, emptied
    gc.collect()
    assert key not in _COMPILED


def test_days_constant_matches_weekday_numbers() -> None:
    assert DAYS[datetime(2026, 1, 12).weekday()] == "mon"
