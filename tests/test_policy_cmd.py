"""`interlink policy explain` and `interlink policy test`, run for real against a temporary config:
the verdict is the evaluator's, the trace says why, and the exit codes are what CI scripts need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).parents[1]

CONFIG = """\
upstreams: [{name: demo, transport: builtin}]
virtual_servers: [{name: crm, upstreams: [demo]}]
identity:
  database_url: "sqlite+aiosqlite:///:memory:"
  agents:
    - {client_id: billing-bot, name: Billing, owner: finance, tenant: acme, secret: {value: x},
       audiences: [mcp/crm], scopes: [mcp]}
    - {client_id: intern-bot, name: Intern, owner: finance, tenant: acme, secret: {value: x},
       audiences: [mcp/crm], scopes: [mcp]}
policy:
  version: "2026-11"
  rules:
    - id: invoices
      effect: permit
      principals: {tenants: [acme]}
      actions: [tools/call]
      resources: ["mcp:crm/create_invoice"]
      args: [{path: amount, op: "<", value: 1000}]
    - id: no-interns
      effect: forbid
      principals: {agents: [intern-bot]}
      actions: ["*"]
      resources: ["mcp:crm/*"]
    - id: office-hours
      effect: permit
      actions: [tools/call]
      resources: ["mcp:crm/run_report"]
      time: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}
"""

INVOICE = ["--agent", "billing-bot", "--action", "tools/call", "--resource", "mcp:crm/create_invoice"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "interlink.yaml"
    path.write_text(CONFIG)
    return path


def explain(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, list[str], str]:
    code = main(["policy", "explain", "--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


def test_allow_names_the_permit_and_traces_each_condition(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, lines, _ = explain(capsys, config, *INVOICE, "--args", '{"amount": 5}')
    assert code == 0
    assert lines[:4] == [
        "ALLOW",
        "rule:     invoices",
        "reason:   permitted by rule invoices",
        "policy:   version 2026-11",
    ]
    assert "  invoices  permit  matched" in lines
    assert "      amount < 1000: holds (got 5)" in lines


def test_forbid_wins_over_a_matching_permit(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, lines, _ = explain(
        capsys, config, *INVOICE[:1], "intern-bot", *INVOICE[2:], "--args", '{"amount": 5}'
    )
    assert code == 1
    assert lines[:3] == ["DENY", "rule:     no-interns", "reason:   forbidden by rule no-interns"]
    assert "  invoices  permit  matched" in lines
    assert "  no-interns  forbid  matched (no conditions)" in lines


def test_deny_by_default_when_no_rule_targets(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, lines, _ = explain(
        capsys, config, "--agent", "billing-bot", "--action", "tools/call", "--resource", "mcp:crm/delete"
    )
    assert code == 1
    assert lines[:2] == ["DENY", "rule:     none: deny by default"]
    assert lines[-1] == "  none: no rule names this agent/tenant, action and resource"


def test_a_failed_condition_is_named(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, lines, _ = explain(capsys, config, *INVOICE, "--args", '{"amount": 5000}')
    assert code == 1
    assert "rule:     none: deny by default" in lines
    assert "  invoices  permit  not matched" in lines
    assert "      amount < 1000: fails (got 5000)" in lines


def test_a_string_where_a_number_is_expected_denies(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, lines, _ = explain(capsys, config, *INVOICE, "--args", '{"amount": "1000"}')
    assert code == 1
    assert lines[:3] == [
        "DENY",
        "rule:     invoices",
        "reason:   rule invoices could not be evaluated: amount is not a number",
    ]
    assert '      amount < 1000: error: amount is not a number (got "1000")' in lines


@pytest.mark.parametrize(
    ("at", "code", "window"),
    [
        ("2026-11-30T09:00:00+01:00", 0, "inside (local mon 09:00)"),  # a Monday, 09:00 in Berlin
        ("2026-11-30T16:00:00Z", 1, "outside (local mon 17:00)"),  # end is exclusive
        ("2026-11-29T10:00:00+01:00", 1, "outside (local sun 10:00)"),
    ],
)
def test_time_window_with_at(
    capsys: pytest.CaptureFixture[str], config: Path, at: str, code: int, window: str
) -> None:
    got, lines, _ = explain(
        capsys,
        config,
        "--agent",
        "billing-bot",
        "--action",
        "tools/call",
        "--resource",
        "mcp:crm/run_report",
        "--at",
        at,
    )
    assert got == code
    assert f"      time mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin: {window}" in lines


def test_at_needs_a_utc_offset(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["policy", "explain", "--config", str(config), *INVOICE, "--at", "2026-11-30T09:00:00"])
    assert exit.value.code == 2
    assert "has no UTC offset" in capsys.readouterr().err


def test_tenant_defaults_to_the_agents_tenant(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, lines, _ = explain(capsys, config, *INVOICE, "--args", '{"amount": 5}')
    assert code == 0 and lines[4].startswith("request:  agent billing-bot, tenant acme, ")
    code, lines, _ = explain(capsys, config, *INVOICE, "--args", '{"amount": 5}', "--tenant", "globex")
    assert code == 1 and lines[1] == "rule:     none: deny by default"
    code, lines, err = explain(capsys, config, *INVOICE[:1], "stranger", *INVOICE[2:], "--args", "{}")
    assert code == 1 and "tenant (none)" in lines[4]
    assert "no tenant known for stranger" in err


@pytest.mark.parametrize(
    ("value", "problem"),
    [("{amount: 5}", "argument --args: not valid JSON: Expecting property name"), ("[1]", "a JSON object")],
)
def test_bad_args_json_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], config: Path, value: str, problem: str
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["policy", "explain", "--config", str(config), *INVOICE, "--args", value])
    assert exit.value.code == 2
    assert problem in capsys.readouterr().err


def test_policy_file_instead_of_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: v9\nrules:\n  - {id: all, effect: permit, actions: ['*'], resources: ['mcp:crm/*']}\n"
    )
    code = main(["policy", "explain", "--policy", str(policy), *INVOICE])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[1:4:2] == ["rule:     all", "policy:   version v9"]


def test_invalid_policy_file_names_the_key_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - {id: a, effect: allow, actions: [x], resources: ['crm/x']}\n")
    assert main(["policy", "explain", "--policy", str(policy), *INVOICE]) == 2
    err = capsys.readouterr().err
    assert f"{policy}: 2 problem(s)" in err
    assert "rules.0.effect: Input should be 'permit' or 'forbid' (got 'allow')" in err
    assert "rules.0.resources: Value error, 'crm/x': expected mcp:<server>/<tool>" in err
    assert "Traceback" not in err


def test_config_without_policy_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("upstreams: []\n")
    assert main(["policy", "explain", "--config", str(config), *INVOICE]) == 2
    assert "no `policy` or `policy_file`" in capsys.readouterr().err


CASES = """\
cases:
  - {name: small invoice, agent: billing-bot, action: tools/call, resource: "mcp:crm/create_invoice",
     args: {amount: 5}, expect: allow, rule: invoices}
  - {name: amount as a string, agent: billing-bot, action: tools/call,
     resource: "mcp:crm/create_invoice", args: {amount: "1000"}, expect: deny}
  - {name: interns never, agent: intern-bot, action: tools/call, resource: "mcp:crm/create_invoice",
     args: {amount: 5}, expect: deny, rule: no-interns}
  - {name: report on a Sunday, agent: billing-bot, action: tools/call, resource: "mcp:crm/run_report",
     at: "2026-11-29T10:00:00+01:00", expect: deny, rule: null}
"""


def test_policy_test_passes(capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    assert main(["policy", "test", str(cases), "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "PASS  small invoice: allow by rule invoices",
        "PASS  amount as a string: deny by rule invoices",
        "PASS  interns never: deny by rule no-interns",
        "PASS  report on a Sunday: deny by default",
        "4 passed, 0 failed",
    ]


def test_policy_test_reports_a_failed_expectation(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES.replace("args: {amount: 5}, expect: allow", "args: {amount: 5000}, expect: allow"))
    assert main(["policy", "test", str(cases), "--config", str(config)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "FAIL  small invoice: got deny by default, expected allow by rule invoices" in out
    assert out[-1] == "3 passed, 1 failed"


def test_policy_test_rejects_an_invalid_case_file(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n  - {agent: a, action: x, resource: 'mcp:crm/x', expect: permit, at: '2026-11-30T09:00'}\n"
    )
    assert main(["policy", "test", str(cases), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cases.0.expect: Input should be 'allow' or 'deny' (got 'permit')" in err
    assert "cases.0.at: Input should have timezone info" in err


def test_the_interlink_command(config: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "policy",
            "explain",
            "--config",
            str(config),
            *INVOICE,
            "--args",
            '{"amount": 5000}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("DENY\nrule:     none: deny by default\n")
    assert "      amount < 1000: fails (got 5000)" in done.stdout
