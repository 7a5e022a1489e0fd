"""The `interlink` command as a user runs it: a real process, its exit code and what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
INTERLINK = [sys.executable, "-m", "gateway"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INTERLINK, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_help_teaches() -> None:
    done = run("--help")
    assert done.returncode == 0
    for words in ("serve", "check", "examples:", "INTERLINK_LISTEN__PORT", "/readyz", "/mcp/<virtual>"):
        assert words in done.stdout


def test_no_command_prints_help() -> None:
    done = run()
    assert done.returncode == 0 and "usage: interlink" in done.stdout


def test_check_accepts_the_example() -> None:
    done = run("check", "--config", "examples/everything.yaml")
    assert done.returncode == 0, done.stderr
    assert "ok (2 upstream(s), 3 virtual server(s): /mcp/everything, /mcp/demo, /mcp/all)" in done.stdout


def test_check_reports_problems_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("upstreams:\n  - {name: a, transport: stdio}\nvirtual_servers: []\nlisten: {prot: 1}\n")
    done = run("check", "--config", str(config))
    assert done.returncode == 2
    assert "configuration error" in done.stderr
    assert "upstreams.0.command: Field required" in done.stderr
    assert "listen.prot: Extra inputs are not permitted" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_reports_a_missing_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "upstreams:\n  - {name: a, transport: http, url: 'http://127.0.0.1:1/mcp',"
        " headers: {Authorization: {env: INTERLINK_TEST_SURELY_UNSET}}}\n"
    )
    done = run("check", "--config", str(config))
    assert done.returncode == 2
    assert (
        "upstreams.a.headers.Authorization: environment variable INTERLINK_TEST_SURELY_UNSET is not set"
        in (done.stderr)
    )


def test_serve_with_bad_config_fails_fast(tmp_path: Path) -> None:
    config = tmp_path / "interlink.yaml"
    config.write_text("virtual_servers: [{name: v, upstreams: [ghost]}]\n")
    done = run("serve", cwd=tmp_path)  # picks up ./interlink.yaml
    assert done.returncode == 2
    assert "names unknown upstream(s): ghost" in done.stderr


def admin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`interlink agents|keys ...` against examples/secured.yaml with the database in tmp_path."""
    env = {
        "PATH": "/usr/bin:/bin",
        "INTERLINK_DEMO_AGENT_SECRET": "x",
        "INTERLINK_IDENTITY__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
    }
    return subprocess.run(
        [*INTERLINK, *args, "--config", "examples/secured.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_agents_lifecycle(tmp_path: Path) -> None:
    """add prints a secret once (stdout, alone); list and show never print it; disable and enable
    flip the state; rotate-secret prints a new one; unknown audiences and duplicates are refused."""
    added = admin(
        tmp_path,
        "agents",
        "add",
        "bot",
        "--name",
        "Bot",
        "--owner",
        "ops",
        "--audience",
        "mcp/secure",
        "--scope",
        "mcp",
    )
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert len(secret) >= 40 and "\n" not in secret
    assert "registered bot for mcp/secure" in added.stderr
    listed = admin(tmp_path, "agents", "list")
    assert "bot" in listed.stdout and "enabled" in listed.stdout and secret not in listed.stdout
    shown = admin(tmp_path, "agents", "show", "bot")
    assert '"owner": "ops"' in shown.stdout and secret not in shown.stdout and "scrypt" not in shown.stdout
    assert "disabled" in admin(tmp_path, "agents", "disable", "bot").stdout
    assert "disabled" in admin(tmp_path, "agents", "list").stdout
    assert "enabled" in admin(tmp_path, "agents", "enable", "bot").stdout
    rotated = admin(tmp_path, "agents", "rotate-secret", "bot")
    assert rotated.returncode == 0 and secret not in rotated.stdout
    again = admin(
        tmp_path,
        "agents",
        "add",
        "bot",
        "--name",
        "B",
        "--owner",
        "o",
        "--audience",
        "mcp/secure",
        "--scope",
        "mcp",
    )
    assert again.returncode == 2 and "exists" in again.stdout
    wrong = admin(
        tmp_path, "agents", "add", "b2", "--name", "B", "--owner", "o", "--audience", "mcp/hr", "--scope", "x"
    )
    assert wrong.returncode == 2 and "unknown audience(s) mcp/hr" in wrong.stdout
    assert admin(tmp_path, "agents", "show", "ghost").returncode == 1


def test_keys_rotate_publishes_ahead(tmp_path: Path) -> None:
    """A rotation adds a key that signs only after one token lifetime."""
    first = admin(tmp_path, "keys", "rotate")
    assert first.returncode == 0, first.stderr
    assert "published key" in first.stdout and "it signs from" in first.stdout
