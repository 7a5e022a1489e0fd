"""The README's promises, checked: its test command is what CI runs, and its five-minute tour works
against a real `interlink serve` started the way the README says (the built-in demo)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
INTERLINK = Path(sys.executable).with_name("interlink")
TOUR_BLOCK = re.compile(
    r"<!-- tour expect='(?P<expect>[^']+)' -->\n```(?P<lang>bash|python)\n(?P<code>.*?)```", re.S
)
README_PORT = "127.0.0.1:8080"


@dataclass(frozen=True)
class Step:
    lang: str
    code: str
    expect: str


def tour() -> list[Step]:
    return [Step(m["lang"], m["code"], m["expect"]) for m in TOUR_BLOCK.finditer(README)]


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_test_command_is_what_ci_runs() -> None:
    """The second Quick-start command appears verbatim in .ci/run."""
    commands = [b.strip() for b in code_blocks("bash") if "pytest" in b]
    assert commands, "README has no test command"
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert commands[0] in ci


def test_readme_run_command_serves_the_demo() -> None:
    """The first Quick-start command installs and runs `interlink serve` with no config."""
    first = code_blocks("bash")[0].strip()
    assert first.endswith("&& interlink serve")


def test_tour_has_steps() -> None:
    assert len(tour()) >= 4
    assert {s.lang for s in tour()} == {"bash", "python"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`interlink serve` as a real process, from an empty directory (so: the built-in demo)."""
    if not INTERLINK.exists():
        pytest.skip(f"the interlink command is not installed next to {sys.executable}")
    port = _free_port()
    cwd = tmp_path_factory.mktemp("tour")
    log = (cwd / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(INTERLINK), "serve", "--port", str(port)], cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://{base}/readyz", timeout=1).json()["status"] == "ok":
                    break
            except httpx2.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "interlink serve did not become ready:\n" + (cwd / "serve.log").read_text()
                )
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("index", range(len(tour())))
def test_tour_step(served: str, index: int) -> None:
    """Each tour block, pointed at the served gateway, prints what the README says it shows."""
    step = tour()[index]
    code = step.code.replace(README_PORT, served)
    if step.lang == "bash":
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        argv = ["bash", "-euo", "pipefail", "-c", code]
    else:
        argv = [sys.executable, "-c", code]
    env = {**os.environ, "PATH": f"{INTERLINK.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert step.expect in done.stdout, done.stdout


SECURED_BLOCK = re.compile(r"<!-- secured expect='(?P<expect>[^']+)' -->\n```bash\n(?P<code>.*?)```", re.S)


def test_secured_flow(tmp_path: Path) -> None:
    """The README's agent flow, as one terminal session against `interlink serve --config
    examples/secured.yaml`: register an agent, get a token with curl, call a tool, be refused elsewhere."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    steps = [(m["code"], m["expect"]) for m in SECURED_BLOCK.finditer(README)]
    assert len(steps) == 8
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{INTERLINK.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "INTERLINK_DEMO_AGENT_SECRET": "demo-secret-change-me",
        "INTERLINK_IDENTITY__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'secured.db'}",
        "INTERLINK_AUDIT__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
        "INTERLINK_AUDIT__CHECKPOINT_KEY_FILE": str(tmp_path / "audit-key.pem"),
    }
    log = (tmp_path / "serve.log").open("w")
    serve = [str(INTERLINK), "serve", "--config", "examples/secured.yaml", "--port", str(port)]
    proc = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        script = "\n".join(f"{code}\necho '--- step {i} done'" for i, (code, _e) in enumerate(steps))
        script = script.replace(README_PORT, f"127.0.0.1:{port}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        output = done.stdout
        assert done.returncode == 0, output
        for i, (_code, expect) in enumerate(steps):
            section = output.split(f"--- step {i} done")[0].split(f"--- step {i - 1} done")[-1]
            assert expect in section, (i, output)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_policy_example_is_valid() -> None:
    """The README's annotated policy is one a user can paste: it validates as it stands."""
    import yaml

    from identity.policy import Policy

    blocks = re.findall(r"```yaml\n(policy:\n.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        policy = Policy.model_validate(yaml.safe_load(block)["policy"])
        assert policy.rules and policy.rate_limits
