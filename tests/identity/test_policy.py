"""The policy evaluator (identity-research §9 cases 31-35): deny by default, forbid wins, errors
deny, no coercion, time windows in named zones across DST, wildcards scoped to one server, and a
property test against an independent brute-force reference."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from identity.policy import DAYS, Policy, Request, evaluate, visible

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

AGENTS = ["a", "b"]
TOOLS = ["x", "y", "z"]
VALUES: list[Any] = [0, 1, 5, 10, "5", True, None, 2.5]


def reference(policy_json: dict[str, Any], agent: str, tool: str, args: dict[str, Any]) -> bool:
    """Spec, written independently: deny on any error among applicable rules, else forbid wins,
    else any permit, else deny."""
    outcomes: list[tuple[str, Any]] = []
    for rule in policy_json["rules"]:
        if rule.get("principals", {}).get("agents") and agent not in rule["principals"]["agents"]:
            continue
        if not any(
            fnmatchcase(tool, r.split("/", 1)[1]) for r in rule["resources"] if r.startswith("mcp:crm/")
        ):
            continue
        result: Any = True
        for cond in rule.get("args", []):
            if cond["path"] not in args:
                result = "error"
                break
            v, bound = args[cond["path"]], cond["value"]
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if cond["op"] == "<":
                if not number:
                    result = "error"
                    break
                result = result and v < bound
            else:  # "=="
                same = (
                    number and isinstance(bound, int | float) and not isinstance(bound, bool) and v == bound
                ) or (type(v) is type(bound) and v == bound)
                result = result and same
        outcomes.append((rule["effect"], result))
    if any(r == "error" for _e, r in outcomes):
        return False
    if any(e == "forbid" and r for e, r in outcomes):
        return False
    return any(e == "permit" and r for e, r in outcomes)


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
        "principals": st.fixed_dictionaries({"agents": st.lists(st.sampled_from(AGENTS), max_size=2)}),
        "actions": st.just(["tools/call"]),
        "resources": st.lists(
            st.sampled_from(["mcp:crm/x", "mcp:crm/*", "mcp:crm/y", "mcp:hr/x"]), min_size=1
        ),
        "args": conditions,
    }
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(rules, max_size=5),
    st.sampled_from(AGENTS),
    st.sampled_from(TOOLS),
    st.dictionaries(st.sampled_from(["n", "m"]), st.sampled_from(VALUES), max_size=2),
)
def test_evaluator_agrees_with_reference(
    rule_list: list[dict[str, Any]], agent: str, tool: str, args: dict[str, Any]
) -> None:
    """Case 35: for random policies and requests, the evaluator and the reference agree."""
    policy_json = {"rules": [{**r, "id": f"r{i}"} for i, r in enumerate(rule_list)]}
    request = Request(agent=agent, tenant=None, action="tools/call", resource=f"mcp:crm/{tool}", args=args)
    assert evaluate(Policy.model_validate(policy_json), request).allow is reference(
        policy_json, agent, tool, args
    )


def test_days_constant_matches_weekday_numbers() -> None:
    assert DAYS[datetime(2026, 1, 12).weekday()] == "mon"
