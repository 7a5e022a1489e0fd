"""What Interlink costs per A2A message: the same agent called directly and through `/a2a/<name>`.

Run from the repo root: `python -m bench.a2a_overhead [--seconds 3] [--passes 2] [--concurrency 1 8 32]
[--steps 3] [--protected]`

Three processes, so no two share an event loop: the Python a2a-sdk test agent (`tests/a2a_py_agent.py`,
served under uvicorn by this script's `--serve-agent PORT`), the gateway (`python -m gateway serve`,
that agent as `bench` at `/a2a/bench`, public; identity database (which holds the A2A task store)
and durable SQLite audit trail in the run's temporary directory, as deployed) and this script, the load
generator. Two workloads, each message a new task:

* `blocking`: `SendMessage` "echo <text>" from a non-streaming client; the agent completes the task at
  once and the answer is the completed Task.
* `streaming`: `SendStreamingMessage` "stream N" (`--steps`, default 3): the Task, then N times a
  WORKING status and an artifact chunk ~50 ms apart, then COMPLETED (2N + 2 events). Recorded: the
  time to the first event (the Task) and to the last.

For each workload and concurrency c, c workers, each with its own client (the official a2a-sdk
`ClientFactory` over its own `httpx.AsyncClient`, the card read by `A2ACardResolver` from the agent
or from Interlink), send in a loop: a warm-up, then `--seconds` in which every message's latency is
recorded. "direct" is client -> agent; "interlink" client -> Interlink -> agent; with `--protected`
also "secure": a protected agent entry (`/a2a/secure`, a client-credentials token per cell, a
one-rule policy). Cells run in ABBA order per workload and concurrency (direct interlink, interlink
direct, ...) so drift cancels; `--passes` such rounds, pooled. A message that raises an A2A or HTTP
error, or whose task does not end COMPLETED, is counted as failed.

Printed per workload and concurrency: messages/s, p50/p99 ms (streaming: to the first event, then
to the last), failures, the gateway's CPU ms per message and our three processes' (/proc), the rest
of the machine's CPU (% of one core, a noise gauge), and against direct: the throughput ratio and the
added p50/p99 ms. On a 2-core machine the three processes compete for the cores, so once they are
saturated the ratio is mostly CPU per message.

Last results (2026-11-30, a 2-core machine about 3x slower than the one of the first run, with
other work on it: direct blocking c=1 120 msg/s, p50 7.9 ms). Blocking messages take the
store-light relay (adapters/a2a/relay.py: no SDK task machinery, one task write): the gateway's
CPU per blocking message went from ~39 ms to 11-15 ms on this machine, 17-21 ms after the review
fixes (a cancellable relay task, final states never overwritten); throughput ratio 0.31 at c=1
(+18 ms p50), 0.29 at c=8 and c=32 (the previous session: 0.14 and 0.11). Streaming still runs
the SDK's per-event machinery: ~44 ms CPU per 8-event stream, time to first event +27 ms at c=1,
streams/s ratio 0.85 (c=1), 0.42 (c=8), 0.24 (c=32); a store-light streaming relay is next.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import secrets
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState
from a2a.utils.errors import A2AError

from bench import mcp_overhead as base
from bench.mcp_overhead import ROLES, WARMUP_S

AGENT: Final = "bench-agent"
"""The registered caller of the protected variant."""
TEXT: Final = "hello, interlink"
KINDS: Final = ("blocking", "streaming")
LABELS: Final = {"bench": "bench", "interlink": "interlink", "upstream": "agent", "other": "other"}
"""CPU roles of `bench.mcp_overhead.cpu_snapshot` as shown here (its upstream is our agent)."""


@dataclass
class Cell:
    """One measured run: per successful message the seconds to its first and last event; failures;
    wall time; CPU seconds by role."""

    first: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.total) / self.elapsed if self.elapsed else math.nan

    def ms(self, q: float, which: str = "total") -> float:
        ordered: list[float] = sorted(self.first if which == "first" else self.total) or [math.nan]
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def cpu_ms(self, *roles: str) -> float:
        """CPU ms per message (successful or not) of `roles`."""
        return 1000 * sum(self.cpu[r] for r in roles) / max(1, len(self.total) + len(self.errors))

    @classmethod
    def pooled(cls, cells: list[Cell]) -> Cell:
        return cls(
            [x for c in cells for x in c.first],
            [x for c in cells for x in c.total],
            [e for c in cells for e in c.errors],
            sum(c.elapsed for c in cells),
            {role: sum(c.cpu[role] for c in cells) for role in ROLES},
        )


@dataclass
class Target:
    """Where a cell sends: the card's base URL, and the bearer token to send (if any)."""

    name: str
    card_base: str
    token: Callable[[], str] | None = None


Results = dict[tuple[str, int], dict[str, list[Cell]]]
"""(workload, concurrency) -> target -> one cell per pass."""


def message(text: str) -> SendMessageRequest:
    msg = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)])
    return SendMessageRequest(message=msg)


def final_state(event: Any) -> Any:
    """The task state an event reports (a Task's or a status update's), else None."""
    kind = event.WhichOneof("payload")
    if kind == "task":
        return event.task.status.state
    if kind == "status_update":
        return event.status_update.status.state
    return None


async def measure(
    target: Target, kind: str, text: str, workers: int, seconds: float, cpu: Callable[[], dict[str, float]]
) -> Cell:
    """`workers` clients sending `text` in a loop: a warm-up, then `seconds` measured."""
    cell = Cell()

    async def loop(client: Any, until: float, record: bool) -> None:
        while (start := time.perf_counter()) < until:
            first, last, failure = None, None, None
            try:
                async for event in client.send_message(message(text)):
                    if first is None:
                        first = time.perf_counter() - start
                    last = event
                state = final_state(last) if last is not None else None
                if state != TaskState.TASK_STATE_COMPLETED:
                    failure = (
                        f"task ended {TaskState.Name(state) if state is not None else 'without a state'}"
                    )
            except (A2AError, httpx.HTTPError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if not record:
                continue
            if failure is None and first is not None:
                cell.first.append(first)
                cell.total.append(time.perf_counter() - start)
            else:
                cell.errors.append(failure or "no event")

    async with asyncio.timeout(seconds + WARMUP_S + 60), AsyncExitStack() as stack:
        token = await asyncio.to_thread(target.token) if target.token else None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        config: dict[str, Any] = {"streaming": kind == "streaming"}
        clients = []
        for _ in range(workers):
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30, headers=headers))
            card = await A2ACardResolver(http, target.card_base).get_agent_card()
            clients.append(ClientFactory(ClientConfig(httpx_client=http, **config)).create(card))
        for record, duration in ((False, WARMUP_S), (True, seconds)):
            before, start = cpu(), time.perf_counter()
            await asyncio.gather(*(loop(c, start + duration, record) for c in clients))
            cell.elapsed, after = time.perf_counter() - start, cpu()
        cell.cpu = {role: after[role] - before[role] for role in ROLES}
    return cell


def gateway_config(agent_url: str, gw_url: str, tmp: Path, secret: str, protected: bool) -> str:
    card_url = f"{agent_url}/.well-known/agent-card.json"
    entry = {"card_url": card_url, "allow_private_network": True}
    agents: list[dict[str, Any]] = [entry | {"name": "bench", "public": True}]
    identity: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp / 'identity.db'}"}
    identity["public_url"] = gw_url
    config: dict[str, Any] = {"logging": {"level": "warning"}}
    if protected:
        agents.append(entry | {"name": "secure"})
        caller = {"client_id": AGENT, "name": "Bench", "owner": "bench", "secret": {"value": secret}}
        identity["agents"] = [caller | {"audiences": ["a2a/secure"], "scopes": ["a2a"]}]
        rule = {"id": "bench", "effect": "permit", "principals": {"agents": [AGENT]}}
        rule |= {"actions": ["SendMessage"], "resources": ["a2a:secure/*"]}
        config["policy"] = {"version": "bench-1", "rules": [rule]}
    audit = {  # the audit trail as deployed: durable SQLite, in the run's temporary directory
        "database_url": f"sqlite+aiosqlite:///{tmp / 'audit.db'}",
        "checkpoint_key_file": str(tmp / "audit-key.pem"),
    }
    return json.dumps(config | {"a2a_agents": agents, "identity": identity, "audit": audit})  # JSON is YAML


def fetch_token(gw_url: str, secret: str) -> str:
    """A client-credentials token for `/a2a/secure`, the client authenticated with HTTP Basic."""
    form = {"grant_type": "client_credentials", "resource": f"{gw_url}/a2a/secure", "scope": "a2a"}
    basic = base64.b64encode(f"{AGENT}:{secret}".encode()).decode()
    request = urllib.request.Request(f"{gw_url}/oauth2/token", urllib.parse.urlencode(form).encode())
    request.add_header("authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        token: str = json.load(resp)["access_token"]
        return token


async def run(
    targets: list[Target], args: argparse.Namespace, cpu: Callable[[], dict[str, float]]
) -> Results:
    results: Results = {}
    texts = {"blocking": f"echo {TEXT}", "streaming": f"stream {args.steps}"}
    for c in args.concurrency:
        for kind in KINDS:
            cells: dict[str, list[Cell]] = {t.name: [] for t in targets}
            for p in range(args.passes):
                order = targets if p % 2 == 0 else targets[::-1]
                done = []
                for target in order:
                    cell = await measure(target, kind, texts[kind], c, args.seconds, cpu)
                    cells[target.name].append(cell)
                    done.append(f"{target.name} {cell.rate:.0f}/s")
                print(f"  {kind} c={c} #{p + 1}: {', '.join(done)}", flush=True)
            results[(kind, c)] = cells
    return results


def report(results: Results, args: argparse.Namespace) -> None:
    print(
        f"\n{args.passes} passes (ABBA) of {args.seconds:g}s per cell after a {WARMUP_S:g}s warm-up, pooled; "
        f"{os.cpu_count()} cores; ms per message"
    )
    print("blocking: SendMessage 'echo ...', one answer (the completed Task)")
    print(
        f"streaming: SendStreamingMessage 'stream {args.steps}', {2 * args.steps + 2} events, the agent "
        f"sleeping ~{50 * args.steps} ms; 1st: time to the first event (the Task), last: to the last"
    )
    for kind in KINDS:
        stream = kind == "streaming"
        firsts = f"{'1st p50':>7} {'1st p99':>7} " if stream else ""
        added = f"{'+1st p50':>8} " if stream else ""
        print(
            f"\n{kind:<9} conc | {'msgs/s':>6} {firsts}{'p50':>7} {'p99':>7} {'errs':>4} | {'gw ms':>5} "
            f"{'all ms':>6} {'other':>5} | {'ratio':>5} {added}{'+p50':>6} {'+p99':>6}"
        )
        for (k, c), by_target in results.items():
            if k != kind:
                continue
            direct = Cell.pooled(by_target["direct"])
            for name, cells in by_target.items():
                x = Cell.pooled(cells)
                row = f"{name:<9} {c:>4} | {x.rate:>6.0f} "
                if stream:
                    row += f"{x.ms(0.5, 'first'):>7.2f} {x.ms(0.99, 'first'):>7.2f} "
                row += f"{x.ms(0.5):>7.2f} {x.ms(0.99):>7.2f} {len(x.errors):>4} | "
                row += f"{x.cpu_ms('interlink'):>5.2f} {x.cpu_ms('bench', 'interlink', 'upstream'):>6.2f} "
                row += f"{100 * x.cpu['other'] / x.elapsed:>4.0f}% |"
                if name != "direct":
                    row += f" {x.rate / direct.rate:>5.2f} "
                    if stream:
                        row += f"{x.ms(0.5, 'first') - direct.ms(0.5, 'first'):>+8.2f} "
                    row += f"{x.ms(0.5) - direct.ms(0.5):>+6.2f} {x.ms(0.99) - direct.ms(0.99):>+6.2f}"
                print(row.rstrip(" |"))
    print(
        "(gw ms: the gateway's CPU per message; all ms: our three processes' (load generator, gateway, "
        "agent);\n other: the rest of the machine, % of one core; ratio, +p50, +p99: against direct)"
    )
    for (kind, c), by_target in results.items():
        for name, cells in by_target.items():
            x = Cell.pooled(cells)
            if x.errors:
                print(f"{kind} c={c} {name}: {len(x.errors)} failed message(s), first: {x.errors[0]}")
    cpu = " / ".join(f"{LABELS[r]}" for r in ROLES if r != "other")
    print(f"CPU roles: {cpu} (from /proc; the gateway's is counted in direct cells too, idle)")


def serve_agent(port: int) -> int:
    """The downstream agent on loopback port `port` (the test agent, under uvicorn)."""
    import uvicorn

    from tests.a2a_py_agent import create_agent_app

    push = httpx.AsyncClient(timeout=10)  # the bench sets no push configs: never used
    app = create_agent_app(f"http://127.0.0.1:{port}", push)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell (default 3)")
    parser.add_argument("--passes", type=int, default=2, help="ABBA rounds per cell (default 2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], metavar="N")
    parser.add_argument("--steps", type=int, default=3, help="streaming: 'stream N' (default 3)")
    parser.add_argument("--protected", action="store_true", help="also a protected agent entry + policy")
    parser.add_argument("--serve-agent", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_agent:
        return serve_agent(args.serve_agent)
    if not 0 < args.seconds < 240 or args.passes < 1 or not 1 <= args.steps <= 1000:
        parser.error("--seconds must be in (0, 240), --passes at least 1, --steps in 1..1000")
    if max(args.concurrency) > 32:  # the agent entry's default max_concurrency: more would queue there
        parser.error("--concurrency at most 32 (a2a_agents max_concurrency)")
    agent_port, gw_port, secret = base.free_port(), base.free_port(), secrets.token_hex(16)
    agent_url, gw_url = f"http://127.0.0.1:{agent_port}", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory(prefix="interlink-bench-") as name, ExitStack() as procs:
        tmp = Path(name)
        config = tmp / "interlink.yaml"
        config.write_text(gateway_config(agent_url, gw_url, tmp, secret, args.protected))
        agent_log, gw_log = tmp / "agent.log", tmp / "gateway.log"
        cmd = [sys.executable, "-m", "bench.a2a_overhead", "--serve-agent", str(agent_port)]
        agent = procs.enter_context(base.process(cmd, agent_log))
        card = f"{agent_url}/.well-known/agent-card.json"
        base.wait_until(lambda: base.http_status(card) == 200, agent, agent_log, "agent")
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(gw_port)]
        gateway = procs.enter_context(base.process(cmd, gw_log))
        ready = f"{gw_url}/readyz?strict=1"
        base.wait_until(lambda: base.http_status(ready) == 200, gateway, gw_log, "gateway")
        print(
            f"agent pid {agent.pid} {agent_url}; interlink pid {gateway.pid} {gw_url}/a2a/bench", flush=True
        )
        targets = [Target("direct", agent_url), Target("interlink", f"{gw_url}/a2a/bench")]
        if args.protected:
            targets.append(Target("secure", f"{gw_url}/a2a/secure", lambda: fetch_token(gw_url, secret)))

        def cpu() -> dict[str, float]:
            return base.cpu_snapshot(gateway.pid, agent.pid)

        try:
            results = asyncio.run(run(targets, args, cpu))
        except Exception as exc:  # noqa: BLE001 - report the innermost causes and both logs
            print(f"benchmark failed: {'; '.join(sorted(set(base.leaves(exc))))}", file=sys.stderr)
            for log in (gw_log, agent_log):
                print(f"--- end of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
        report(results, args)
        if warnings := gw_log.read_text(errors="replace").count("a2a_downstream_failed"):
            print(f"the gateway logged {warnings} a2a_downstream_failed warning(s); see its log")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
