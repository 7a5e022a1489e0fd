"""What a protocol bridge costs: each bridged call measured against its native counterpart, in one run.

Run from the repo root: `python -m bench.bridge_overhead [--seconds 3] [--passes 2] [--concurrency 1 8]`

Four processes, so no two share an event loop: the Python a2a-sdk test agent (`tests/a2a_py_agent.py`),
our MCP test upstream (`tests/upstream_server.py --http`), the REST test service with its OpenAPI
document (`tests/rest_service.py`, served by this script's `--serve-rest PORT`), and the gateway
(`python -m gateway serve`; public endpoints, identity database and durable SQLite audit trail in the
run's temporary directory, as deployed); this script is the load generator. Three pairs, each the
same work reached natively and across a bridge, both through the same gateway:

* `a2a-as-mcp`: the agent's `echo` skill. native: A2A `SendMessage` "echo ..." at `/a2a/bench`
  (blocking); bridged: MCP `tools/call` `agent__echo` at `/mcp/bridged` (the agent's skills as MCP
  tools: one A2A message per call, governed and audited on both sides).
* `mcp-as-a2a`: the MCP upstream's `echo` tool. native: MCP `tools/call` `web__echo` at
  `/mcp/tools`; bridged: A2A `SendMessage` (skill `web__echo`) at `/a2a/published` (the virtual
  server published as an A2A agent: an A2A task around one governed MCP call).
* `rest-as-mcp`: the REST service's `GET /pets/{petId}`. native: that HTTP request straight to the
  service (no gateway: there is no REST face to compare with); bridged: MCP `tools/call`
  `rest__getPet` at `/mcp/bridged` (the OpenAPI operation as an MCP tool).

For each pair and concurrency c, c workers, each with its own client (`mcp.Client`, the a2a-sdk
client, or an `httpx.AsyncClient`), call in a loop: a warm-up, then `--seconds` measured; the two
sides of a pair alternate in ABBA order over `--passes` rounds so drift cancels. A call answered with
an error (or an A2A task not COMPLETED) is counted as failed. Printed: calls/s, p50/p99 ms, the
gateway's CPU ms per call, and for the bridged side the ratio to native and the added p50.

Last results (2026-11-30, 2 cores, other work on the machine; durable SQLite audit): an A2A skill
called as an MCP tool is cheaper than the same skill called as an A2A message through the A2A face
(c=1: 47 vs 32 calls/s, gateway CPU 12 vs 19 ms per call; c=8 ratio 1.70): the bridge sends one
message and keeps no task of its own. An MCP tool called as an A2A skill costs the most (c=1: 18 vs
54 calls/s, +36 ms p50, 40 vs 9.5 ms of gateway CPU; c=8 ratio 0.22): each message is a persisted
A2A task in the SDK's request machinery around one governed MCP call (the store-light relay does
not serve published agents yet). A REST operation as an MCP tool: 104 vs 703 calls/s straight to
the service at c=1 (+8.3 ms p50, 5.7 ms gateway CPU per call), ratio 0.21 at c=8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState
from a2a.utils.errors import A2AError
from mcp import Client
from mcp.shared.exceptions import MCPError

from bench import a2a_overhead
from bench import mcp_overhead as base
from bench.a2a_overhead import Cell
from bench.mcp_overhead import ROLES, WARMUP_S

TEXT: Final = "hello, interlink"
CALL_TIMEOUT_S: Final = 30.0

Call = Callable[[], Awaitable[str | None]]
"""One call; returns why it failed, or None."""
Opener = Callable[[AsyncExitStack], Awaitable[Call]]
"""Sets up one worker's client (entered on the stack) and returns its call."""


@dataclass(frozen=True)
class Side:
    name: str
    open: Opener


@dataclass(frozen=True)
class Pair:
    name: str
    what: str
    native: Side
    bridged: Side


def mcp_side(name: str, url: str, tool: str, arguments: dict[str, Any]) -> Side:
    async def open_(stack: AsyncExitStack) -> Call:
        client = await stack.enter_async_context(Client(url, cache=None, read_timeout_seconds=CALL_TIMEOUT_S))

        async def call() -> str | None:
            try:
                result = await client.call_tool(tool, arguments)
            except MCPError as exc:
                return str(exc)
            return str(result.content)[:200] if result.is_error else None

        return call

    return Side(name, open_)


def a2a_side(name: str, card_base: str, text: str, skill: str | None = None) -> Side:
    async def open_(stack: AsyncExitStack) -> Call:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=CALL_TIMEOUT_S))
        card = await A2ACardResolver(http, card_base).get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)

        async def call() -> str | None:
            message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)])
            if skill is not None:
                message.metadata.update({"skill": skill})
            last = None
            try:
                async for event in client.send_message(SendMessageRequest(message=message)):
                    last = event
            except (A2AError, httpx.HTTPError) as exc:
                return f"{type(exc).__name__}: {exc}"
            state = a2a_overhead.final_state(last) if last is not None else None
            if state != TaskState.TASK_STATE_COMPLETED:
                return f"task ended {TaskState.Name(state) if state is not None else 'without a state'}"
            return None

        return call

    return Side(name, open_)


def http_side(name: str, url: str) -> Side:
    async def open_(stack: AsyncExitStack) -> Call:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=CALL_TIMEOUT_S))

        async def call() -> str | None:
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                return f"{type(exc).__name__}: {exc}"
            return None if response.status_code == 200 else f"HTTP {response.status_code}"

        return call

    return Side(name, open_)


async def measure(side: Side, workers: int, seconds: float, cpu: Callable[[], dict[str, float]]) -> Cell:
    cell = Cell()

    async def loop(call: Call, until: float, record: bool) -> None:
        while (start := time.perf_counter()) < until:
            failure = await call()
            if not record:
                continue
            if failure is None:
                elapsed = time.perf_counter() - start
                cell.first.append(elapsed)
                cell.total.append(elapsed)
            else:
                cell.errors.append(failure)

    async with asyncio.timeout(seconds + WARMUP_S + 60), AsyncExitStack() as stack:
        calls = [await side.open(stack) for _ in range(workers)]
        for record, duration in ((False, WARMUP_S), (True, seconds)):
            before, start = cpu(), time.perf_counter()
            await asyncio.gather(*(loop(c, start + duration, record) for c in calls))
            cell.elapsed, after = time.perf_counter() - start, cpu()
        cell.cpu = {role: after[role] - before[role] for role in ROLES}
    return cell


Results = dict[tuple[str, int], dict[str, list[Cell]]]


async def run(pairs: list[Pair], args: argparse.Namespace, cpu: Callable[[], dict[str, float]]) -> Results:
    results: Results = {}
    for pair in pairs:
        for c in args.concurrency:
            cells: dict[str, list[Cell]] = {"native": [], "bridged": []}
            for p in range(args.passes):
                order = [("native", pair.native), ("bridged", pair.bridged)]
                done = []
                for label, side in order if p % 2 == 0 else order[::-1]:
                    cell = await measure(side, c, args.seconds, cpu)
                    cells[label].append(cell)
                    done.append(f"{label} {cell.rate:.0f}/s")
                print(f"  {pair.name} c={c} #{p + 1}: {', '.join(done)}", flush=True)
            results[(pair.name, c)] = cells
    return results


def report(pairs: list[Pair], results: Results, args: argparse.Namespace) -> None:
    print(
        f"\n{args.passes} passes (ABBA) of {args.seconds:g}s per cell after a {WARMUP_S:g}s warm-up, "
        f"pooled; {os.cpu_count()} cores; ms per call"
    )
    for pair in pairs:
        print(f"\n{pair.name}: {pair.what}")
        print(f"  native:  {pair.native.name}\n  bridged: {pair.bridged.name}")
        print(
            f"{'':<8} conc | {'calls/s':>7} {'p50':>7} {'p99':>7} {'errs':>4} | {'gw ms':>5} | "
            f"{'ratio':>5} {'+p50':>6} {'+p99':>6}"
        )
        for c in args.concurrency:
            by_side = results[(pair.name, c)]
            native = Cell.pooled(by_side["native"])
            for label in ("native", "bridged"):
                x = Cell.pooled(by_side[label])
                row = (
                    f"{label:<8} {c:>4} | {x.rate:>7.0f} {x.ms(0.5):>7.2f} {x.ms(0.99):>7.2f} "
                    f"{len(x.errors):>4} | {x.cpu_ms('interlink'):>5.2f} |"
                )
                if label == "bridged":
                    row += (
                        f" {x.rate / native.rate:>5.2f} {x.ms(0.5) - native.ms(0.5):>+6.2f}"
                        f" {x.ms(0.99) - native.ms(0.99):>+6.2f}"
                    )
                print(row.rstrip(" |"))
                if x.errors:
                    print(f"         {len(x.errors)} failed; first: {x.errors[0]}")
    print("(gw ms: the gateway's CPU per call, from /proc; ratio, +p50, +p99: bridged against native)")


def gateway_config(agent_url: str, mcp_url: str, rest_url: str, tmp: Path) -> str:
    card_url = f"{agent_url}/.well-known/agent-card.json"
    config: dict[str, Any] = {
        "logging": {"level": "warning"},
        "upstreams": [
            {"name": "web", "transport": "http", "url": mcp_url},
            {"name": "agent", "transport": "a2a", "agent": "bench", "skills": ["echo"]},
            {
                "name": "rest",
                "transport": "openapi",
                "spec": f"{rest_url}/openapi.json",
                "base_url": rest_url,
                "allow_private_network": True,
                "include_operations": ["getPet"],
            },
        ],
        "virtual_servers": [
            {"name": "tools", "upstreams": ["web"], "public": True},
            {"name": "bridged", "upstreams": ["agent", "rest"], "public": True},
        ],
        "a2a_agents": [
            {"name": "bench", "card_url": card_url, "allow_private_network": True, "public": True}
        ],
        "a2a_published": [{"name": "published", "virtual_server": "tools", "public": True}],
        "identity": {"database_url": f"sqlite+aiosqlite:///{tmp / 'identity.db'}"},
        "audit": {  # as deployed: durable SQLite in the run's temporary directory
            "database_url": f"sqlite+aiosqlite:///{tmp / 'audit.db'}",
            "checkpoint_key_file": str(tmp / "audit-key.pem"),
        },
    }
    return json.dumps(config)  # JSON is YAML


def serve_rest(port: int) -> int:
    """The REST test service on loopback port `port`, under uvicorn."""
    import uvicorn

    from tests.rest_service import RestService

    uvicorn.run(RestService().app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell (default 3)")
    parser.add_argument("--passes", type=int, default=2, help="ABBA rounds per cell (default 2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], metavar="N")
    parser.add_argument("--serve-rest", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_rest:
        return serve_rest(args.serve_rest)
    if not 0 < args.seconds < 240 or args.passes < 1 or not 1 <= max(args.concurrency) <= 32:
        parser.error("--seconds must be in (0, 240), --passes at least 1, --concurrency in 1..32")
    ports = [base.free_port() for _ in range(4)]
    agent_url, mcp_root, rest_url, gw_url = (f"http://127.0.0.1:{p}" for p in ports)
    with tempfile.TemporaryDirectory(prefix="interlink-bench-") as name, ExitStack() as procs:
        tmp = Path(name)
        logs = {what: tmp / f"{what}.log" for what in ("agent", "upstream", "rest", "gateway")}
        py = sys.executable
        agent = procs.enter_context(
            base.process([py, "-m", "bench.a2a_overhead", "--serve-agent", str(ports[0])], logs["agent"])
        )
        upstream = procs.enter_context(
            base.process([py, "tests/upstream_server.py", "--http", str(ports[1])], logs["upstream"])
        )
        rest = procs.enter_context(
            base.process([py, "-m", "bench.bridge_overhead", "--serve-rest", str(ports[2])], logs["rest"])
        )
        card = f"{agent_url}/.well-known/agent-card.json"
        base.wait_until(lambda: base.http_status(card) == 200, agent, logs["agent"], "agent")
        base.wait_until(
            lambda: base.http_status(f"{mcp_root}/mcp") is not None, upstream, logs["upstream"], "upstream"
        )
        base.wait_until(
            lambda: base.http_status(f"{rest_url}/openapi.json") == 200, rest, logs["rest"], "REST"
        )
        config = tmp / "interlink.yaml"
        config.write_text(gateway_config(agent_url, f"{mcp_root}/mcp", rest_url, tmp))
        cmd = [py, "-m", "gateway", "serve", "--config", str(config), "--port", str(ports[3])]
        gateway = procs.enter_context(base.process(cmd, logs["gateway"]))
        ready = f"{gw_url}/readyz?strict=1"
        base.wait_until(lambda: base.http_status(ready) == 200, gateway, logs["gateway"], "gateway")
        print(f"interlink pid {gateway.pid} {gw_url}", flush=True)
        pairs = [
            Pair(
                "a2a-as-mcp",
                "an A2A agent's skill (echo) as an MCP tool",
                a2a_side("A2A SendMessage at /a2a/bench", f"{gw_url}/a2a/bench", f"echo {TEXT}"),
                mcp_side(
                    "MCP tools/call agent__echo at /mcp/bridged",
                    f"{gw_url}/mcp/bridged",
                    "agent__echo",
                    {"text": f"echo {TEXT}"},
                ),
            ),
            Pair(
                "mcp-as-a2a",
                "an MCP tool (echo) as an A2A skill",
                mcp_side(
                    "MCP tools/call web__echo at /mcp/tools",
                    f"{gw_url}/mcp/tools",
                    "web__echo",
                    {"text": TEXT},
                ),
                a2a_side("A2A SendMessage at /a2a/published", f"{gw_url}/a2a/published", TEXT, "web__echo"),
            ),
            Pair(
                "rest-as-mcp",
                "a REST operation (GET /pets/{petId}) as an MCP tool",
                http_side("HTTP GET straight to the service (no gateway)", f"{rest_url}/pets/1"),
                mcp_side(
                    "MCP tools/call rest__getPet at /mcp/bridged",
                    f"{gw_url}/mcp/bridged",
                    "rest__getPet",
                    {"petId": "1"},
                ),
            ),
        ]

        def cpu() -> dict[str, float]:
            return base.cpu_snapshot(gateway.pid, agent.pid)

        try:
            results = asyncio.run(run(pairs, args, cpu))
        except Exception as exc:  # noqa: BLE001 - report the innermost causes and the logs
            print(f"benchmark failed: {'; '.join(sorted(set(base.leaves(exc))))}", file=sys.stderr)
            for log in logs.values():
                print(f"--- end of {log.name}:\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            return 1
        report(pairs, results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
