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
