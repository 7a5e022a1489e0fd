"""What the audit trail costs: appends per second on each store, and per forwarded MCP call.

Run from the repo root: `python -m bench.audit [--seconds 2] [--passes 2] [--concurrency 1 8 32]
[--postgres URL] [--dir DIR] [--mode legacy] [--only appends|calls] [--keep]`

PostgreSQL comes from `--postgres` or `INTERLINK_TEST_POSTGRES_URL` (`postgresql://...` is run as
`postgresql+asyncpg://...`); without one, or when it does not answer, its cells are skipped with the
reason printed. Every log this run writes has a fresh id (`bench-<hex>-...`), so runs never collide;
on PostgreSQL those rows are deleted at the end unless `--keep`. SQLite files go in a temporary
directory (under `--dir`); its file system is printed, since fsync on tmpfs costs nothing.

Part 1, appends, in this process (the gateway runs its `AuditLog` in-process too): one `AuditLog` per
store, appending records shaped like a tool call's write-ahead record: `memory` (in-memory SQLite: the
CPU work of a record and a transaction, no disk), `sqlite` (a file, WAL + synchronous=FULL, as
`AuditStore.open` sets it) and `postgres`. For each concurrency c, c appenders each `await append()`
in a loop, a warm-up then `--seconds`: c=1 is sequential (each append waits for its own commit),
larger c shows group commit (the writer task batches what queued while the last commit ran). Stores
run in ABBA order per concurrency (memory sqlite postgres, postgres sqlite memory, ...) so drift
cancels. Printed: records/s, p50/p99 ms per append, records per commit, this process's CPU µs per
record (not PostgreSQL's), then `verify_log` over all that was written (records/s).

Part 2, forwarded calls: the processes of `bench.mcp_overhead` (test upstream, gateways, this load
generator); one gateway per audit store, `mem` (`audit.database_url` in-memory SQLite), `sqlite` (a
file) and `pg`, each serving upstream `web` as `public` (no token, no policy) and `policy` (protected:
a client-credentials token for `bench-agent`, and a 100-rule policy, 10 rules of which apply to the
call). Interlink has no setting that turns the audit trail off (a public server is audited too: two
records per tool call, the write-ahead record, durable before the upstream sees the call, and the
result record), so "neither" is `mem/public`, whose records only cost CPU (part 1's memory row). A
fifth process, `bare`, is the reference without any governor (no policy, no audit trail): the same
public parts assembled by `serve_bare`, not a deployable configuration. Variants, each adding one
thing: `bare/public`, `mem/public` (+ governor, audit in memory), `mem/policy` (+ token and policy),
`sqlite/policy` (+ durable SQLite audit), `pg/policy` (PostgreSQL audit instead). Cells are those of
`bench.auth_overhead` (c Clients with a bearer header, `web__echo`, a warm-up plus `--seconds`), in
ABBA order per concurrency. Printed per concurrency (pooled over passes): calls/s, p50/p99 ms, the
gateway's CPU ms per call, and against `bare/public` and `mem/public`: throughput ratio, added p50
and cost (per-call time increase, 1 / calls/s; median over passes); then at c=1 the added p50 of the
durable stores against `mem/policy` next to part 1's prediction, 2 x (append p50 - memory's).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from mcp.client.client import ConnectMode
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adapters.mcp.guard import send_error
from adapters.mcp.naming import ToolSelection
from adapters.mcp.pool import UpstreamPool
from adapters.mcp.virtual import VirtualServer
from bench import mcp_overhead as base
from bench.auth_overhead import pooled, run_cell
from bench.mcp_overhead import WARMUP_S, Cell
from gateway import __version__
from gateway.app import _transport_security  # the same DNS-rebinding defence as the gateway's
from gateway.audit import (
    Actor,
    AuditLog,
    AuditStore,
    AuditUnavailable,
    CheckpointSigner,
    DecisionInfo,
    Event,
    Outcome,
    Target,
    checkpoints_table,
    digest,
    records_table,
    verify_log,
)
from gateway.logs import configure_logging
from gateway.settings import load_settings
from gateway.upstreams import build_spec
from identity.policy import Policy, Request, evaluate

AGENT: Final = "bench-agent"
TENANT: Final = "bench"
APPEND_WARMUP_S: Final = 0.5
STORES: Final = ("memory", "sqlite", "postgres")
GATEWAYS: Final = {"memory": "mem", "sqlite": "sqlite", "postgres": "pg"}
"""Part 1's store name -> part 2's gateway name."""
VARIANTS: Final = ("bare/public", "mem/public", "mem/policy", "sqlite/policy", "pg/policy")
BASELINE: Final = "mem/public"
"""Neither token nor policy; its audit records go to in-memory SQLite."""
BARE: Final = "bare/public"
"""No governor at all: no policy, no audit trail (`serve_bare`)."""
TOOLS: Final = ("echo", "search", "add", "delete_record", "slow", "crash", "notify", "progress")
DEFINITION: Final = digest({"name": "echo", "inputSchema": {"type": "object"}})


# -- part 1: appends -------------------------------------------------------------------------------


@dataclass
class Appends:
    """One measured run of appenders: latencies (s), failures, wall time, our CPU, store commits."""

    latencies: list[float]
    errors: int
    elapsed: float
    cpu_s: float
    commits: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def ms(self, q: float) -> float:
        return Cell(self.latencies, [], self.elapsed, {}).ms(q)

    @classmethod
    def pooled(cls, cells: Sequence[Appends]) -> Appends:
        return cls(
            [x for c in cells for x in c.latencies],
            sum(c.errors for c in cells),
            sum(c.elapsed for c in cells),
            sum(c.cpu_s for c in cells),
            sum(c.commits for c in cells),
        )


class CountingStore(AuditStore):
    """The audit store, counting its transactions (group commit: records per commit)."""

    commits = 0

    async def write(self, rows: Sequence[dict[str, Any]], checkpoint: Any = None) -> None:
        await super().write(rows, checkpoint)
        self.commits += 1


@dataclass
class Opened:
    store: CountingStore
    log: AuditLog
    signer: CheckpointSigner


def tool_call_event() -> Event:
    """What the gateway writes ahead of an allowed `web__echo` call on a protected server."""
    return Event(
        event="mcp.tools/call",
        actor=Actor(agent=AGENT, tenant=TENANT, token_id=uuid.uuid4().hex, address="127.0.0.1"),
        target=Target(
            protocol="mcp",
            server="policy",
            method="tools/call",
            name="web__echo",
            definition_sha256=DEFINITION,
        ),
        decision=DecisionInfo(
            effect="allow", reason="permit", rule="bench-permit-echo", policy_version="bench-100"
        ),
        outcome=Outcome(status="pending"),
        args_sha256=digest({"text": base.TEXT}),
    )


def cpu_s() -> float:
    own = os.times()
    return own.user + own.system


async def appends(opened: Opened, writers: int, seconds: float) -> Appends:
    """`writers` tasks appending in a loop: a warm-up, then `seconds` measured."""
    cell = Appends([], 0, 0.0, 0.0, 0)

    async def loop(until: float, record: bool) -> None:
        while (start := time.perf_counter()) < until:
            try:
                await opened.log.append(tool_call_event())
            except AuditUnavailable:
                cell.errors += record
                continue
            if record:
                cell.latencies.append(time.perf_counter() - start)

    async with asyncio.timeout(seconds + APPEND_WARMUP_S + 60):
        for record, duration in ((False, APPEND_WARMUP_S), (True, seconds)):
            commits, cpu, start = opened.store.commits, cpu_s(), time.perf_counter()
            await asyncio.gather(*(loop(start + duration, record) for _ in range(writers)))
            cell.elapsed, cell.cpu_s = time.perf_counter() - start, cpu_s() - cpu
            cell.commits = opened.store.commits - commits
    return cell


@dataclass
class Verified:
    records: int
    seconds: float
    problems: list[str]


AppendResults = dict[int, dict[str, list[Appends]]]
"""Concurrency -> store -> one cell per pass."""


async def part1(
    urls: dict[str, str], run_id: str, conc: Sequence[int], seconds: float, passes: int
) -> tuple[AppendResults, dict[str, Verified]]:
    results: AppendResults = {c: {name: [] for name in urls} for c in conc}
    verified: dict[str, Verified] = {}
    async with AsyncExitStack() as stores:
        opened: dict[str, Opened] = {}
        for name, url in urls.items():
            store = CountingStore((await stores.enter_async_context(AuditStore.open(url))).engine)
            signer = CheckpointSigner.ephemeral()
            log_id = f"{run_id}-{name}"
            opened[name] = Opened(store, AuditLog(store, log_id, signer, instance=log_id), signer)
        async with AsyncExitStack() as logs:
            for o in opened.values():
                await logs.enter_async_context(o.log.running())
            for c in conc:
                for p in range(passes):
                    order = list(urls) if p % 2 == 0 else list(reversed(urls))
                    cells = {name: await appends(opened[name], c, seconds) for name in order}
                    for name in order:
                        results[c][name].append(cells[name])
                    done = ", ".join(f"{n} {cells[n].rate:,.0f}/s" for n in order)
                    print(f"  appends c={c} #{p + 1}: {done}", flush=True)
        for name, o in opened.items():  # the logs are drained and checkpointed: verify all of it
            start = time.perf_counter()
            report = await verify_log(o.store, o.log.log_id, [o.signer.public_key])
            verified[name] = Verified(report.records, time.perf_counter() - start, report.problems)
    return results, verified


def report1(results: AppendResults, verified: dict[str, Verified], seconds: float, where: str) -> None:
    passes = len(next(iter(next(iter(results.values())).values())))
    print(
        f"\nPART 1: durable appends, in-process AuditLog; {passes} passes of {seconds:g}s per cell after a "
        f"{APPEND_WARMUP_S:g}s warm-up; SQLite file {where}"
    )
    print(
        f"{'store':<8} {'conc':>4} | {'records/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'rec/commit':>10} "
        f"{'cpu µs/rec':>10} {'errs':>4} | {'x memory':>8}"
    )
    for c, by_store in results.items():
        memory = Appends.pooled(by_store["memory"]) if "memory" in by_store else None
        for name, cells in by_store.items():
            a = Appends.pooled(cells)
            n = max(1, len(a.latencies))
            ratio = f"{a.rate / memory.rate:>8.3f}" if memory else ""
            print(
                f"{name:<8} {c:>4} | {a.rate:>9,.0f} {a.ms(0.5):>7.3f} {a.ms(0.99):>7.3f} "
                f"{n / max(1, a.commits):>10.1f} {1e6 * a.cpu_s / n:>10.0f} {a.errors:>4} | {ratio}"
            )
    print("(conc 1: each append waits for its own commit; cpu: this process only, not PostgreSQL's)")
    for name, v in verified.items():
        verdict = "ok" if not v.problems else f"{len(v.problems)} PROBLEM(S), first: {v.problems[0]}"
        rate = v.records / v.seconds if v.seconds else float("nan")
        print(f"verify_log {name}: {v.records:,} records in {v.seconds:.2f}s = {rate:,.0f}/s, {verdict}")


async def probe(url: str) -> str | None:
    """Why the store at `url` cannot be used, or None when it can."""
    try:
        async with asyncio.timeout(15), AuditStore.open(url):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure to connect is a reason to skip
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


async def forget(url: str, log_ids: Sequence[str]) -> None:
    """Delete this run's logs (bench rows only, by their fresh ids) from a shared database."""
    async with AuditStore.open(url) as store, store.engine.begin() as conn:
        for table in (records_table, checkpoints_table):
            await conn.execute(table.delete().where(table.c.log_id.in_(list(log_ids))))


# -- part 2: forwarded calls -----------------------------------------------------------------------


def bench_policy() -> tuple[dict[str, Any], int]:
    """100 rules on the `policy` server, and how many of them apply to the bench agent's echo call.

    90 belong to 25 other agents and 5 other tenants (skipped by principal); 10 target the call and
    have their conditions evaluated: regular expressions, lists, a time window; none denies it."""
    rules: list[dict[str, Any]] = []
    for i in range(90):
        who = {"agents": [f"agent-{i % 25:02d}"]} if i % 2 else {"tenants": [f"tenant-{i % 5}"]}
        tool = TOOLS[i % len(TOOLS)]
        rule: dict[str, Any] = {"id": f"rule-{i:03d}", "effect": "forbid" if i % 4 == 0 else "permit"}
        rule |= {"principals": who, "actions": ["tools/call"], "resources": [f"mcp:policy/web__{tool}"]}
        if tool == "echo":
            rule["args"] = [{"path": "text", "op": "matches", "value": f"[a-z ,]{{1,{10 + i}}}"}]
        elif tool == "add":
            rule["args"] = [{"path": "a", "op": "<" if i % 4 else ">", "value": 100 + i}]
        rules.append(rule)
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    cond = {"path": "text", "op": "matches", "value": r"(?is).*\b(drop|truncate)\s+table\b.*"}
    listed = {"path": "text", "op": "not_in", "value": ["rm -rf /", "shutdown"]}
    applying: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        ("forbid", {}, [cond]),
        ("forbid", {"tenants": [TENANT]}, [{"path": "text", "op": "in", "value": ["rm -rf /", "x"]}]),
        ("forbid", {"agents": [AGENT]}, [{"path": "text", "op": "matches", "value": ".{4097,}"}]),
        ("permit", {"agents": [AGENT]}, [{"path": "text", "op": "matches", "value": r"[ -~]{1,4096}"}]),
        ("permit", {"tenants": [TENANT]}, [listed]),
        ("forbid", {}, [{"path": "text", "op": "matches", "value": r"(?i).*password\s*=.*"}]),
        ("permit", {"agents": [AGENT, "agent-01"]}, [listed, cond | {"value": r"[a-z, ]+"}]),
        ("forbid", {"agents": [AGENT]}, [{"path": "text", "op": "==", "value": "forbidden"}]),
        ("permit", {}, [{"path": "text", "op": "!=", "value": ""}]),
        ("permit", {"agents": [AGENT]}, []),
    ]
    for n, (effect, who, args) in enumerate(applying):
        rule = {"id": f"bench-{n}", "effect": effect, "principals": who, "actions": ["tools/call"]}
        rule |= {"resources": ["mcp:policy/web__echo" if n % 2 else "mcp:policy/web__*"], "args": args}
        if n == 9:
            rule["time"] = {"timezone": "Europe/Berlin", "days": days, "start": "00:00", "end": "23:59:59"}
        rules.insert(9 * n + 5, rule)  # spread through the policy
    policy = {"version": "bench-100", "rules": rules}
    request = Request(AGENT, TENANT, "tools/call", "mcp:policy/web__echo", {"text": base.TEXT})
    decision = evaluate(Policy.model_validate(policy), request)
    if not decision.allow:
        raise SystemExit(f"bench policy denies the bench call: {decision.reason}")
    return policy, len(applying)


def gateway_config(
    up_url: str, gw_url: str, tmp: Path, audit: dict[str, Any], secret: str, mode: ConnectMode
) -> str:
    agent: dict[str, Any] = {"client_id": AGENT, "name": "Bench", "owner": "bench", "tenant": TENANT}
    agent |= {"secret": {"value": secret}, "audiences": ["mcp/policy"], "scopes": ["mcp"]}
    web = {"name": "web", "transport": "http", "url": up_url, "protocol": mode}
    identity = {"database_url": f"sqlite+aiosqlite:///{tmp / 'identity.db'}", "public_url": gw_url}
    servers = [{"name": n, "upstreams": ["web"], "public": n == "public"} for n in ("public", "policy")]
    config: dict[str, Any] = {"logging": {"level": "warning"}, "upstreams": [web]}
    config |= {"virtual_servers": servers}
    config |= {"identity": identity | {"agents": [agent]}, "policy": bench_policy()[0], "audit": audit}
    return json.dumps(config)  # JSON is YAML


def fetch_token(gw_url: str, secret: str) -> str:
    """A client-credentials token for `/mcp/policy`, the client authenticated with HTTP Basic."""
    form = {"grant_type": "client_credentials", "resource": f"{gw_url}/mcp/policy", "scope": "mcp"}
    basic = base64.b64encode(f"{AGENT}:{secret}".encode()).decode()
    request = urllib.request.Request(f"{gw_url}/oauth2/token", urllib.parse.urlencode(form).encode())
    request.add_header("authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        token: str = json.load(resp)["access_token"]
        return token


def ready(url: str) -> bool:
    return base.http_status(f"{url}/readyz?strict=1") == 200


class BareEndpoint:
    """`/mcp/<name>` straight to the virtual server, as `gateway.app.McpEndpoint` does for a public one."""

    def __init__(self, virtuals: dict[str, VirtualServer]) -> None:
        self._virtuals = virtuals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        virtual = self._virtuals.get(scope["path_params"]["virtual"])
        if virtual is None:
            await send_error(send, "unknown_virtual_server", "no such virtual MCP server")
            return
        await virtual.asgi(scope, receive, send)


def serve_bare(config: Path, port: int) -> int:
    """The `bare` gateway: the public virtual servers of `config` without a `Governor`: no policy and
    no audit trail (nor rate limits or tool pins). Interlink has no such setting (a public server is
    audited too); this is `gateway.app.create_app`'s assembly of the same public parts (upstream pool,
    `VirtualServer`, loopback transport security, uvicorn) minus the governor, identity and audit
    store: the reference for what the audit trail costs at all, even in memory. Not deployable."""
    import uvicorn

    settings = load_settings(config)
    configure_logging(settings.logging)
    pool = UpstreamPool([build_spec(u) for u in settings.mcp_upstreams])
    virtuals = {
        v.name: VirtualServer(
            v.name,
            [pool.get(u) for u in v.upstreams],
            selection=ToolSelection(v.tools.include, v.tools.exclude),
            namespacing=v.namespacing,
            max_body_bytes=settings.limits.max_body_bytes,
            security=_transport_security("127.0.0.1"),
            version=__version__,
        )
        for v in settings.virtual_servers
        if v.public
    }

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(pool.running())
            for v in virtuals.values():
                await stack.enter_async_context(v.manager.run())
            yield

    async def readyz(request: StarletteRequest) -> JSONResponse:
        down = [s.name for s in pool.statuses() if s.state in ("backoff", "starting", "stopped")]
        return JSONResponse({"down": down}, status_code=503 if down else 200)

    routes = [
        Route("/readyz", readyz, methods=["GET"]),
        Route("/mcp/{virtual}", BareEndpoint(virtuals), methods=["GET", "POST", "DELETE"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level=settings.logging.level, access_log=False)
    return 0


@dataclass
class Gateway:
    name: str
    url: str
    pid: int
    log: Path
    audit: dict[str, Any]


CallResults = dict[int, dict[str, list[Cell]]]
"""Concurrency -> variant -> one cell per pass."""


def start_gateways(
    procs: ExitStack,
    tmp: Path,
    audits: dict[str, dict[str, Any]],
    up_url: str,
    mode: ConnectMode,
    secret: str,
) -> dict[str, Gateway]:
    """One gateway per audit store, and `bare` (no audit store: `serve_bare`)."""
    gateways = {}
    for name, audit in audits.items():
        port = base.free_port()
        url, where = f"http://127.0.0.1:{port}", tmp / f"gw-{name}"
        where.mkdir()
        config = where / "interlink.yaml"
        config.write_text(gateway_config(up_url, url, where, audit, secret, mode))
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
        if name == "bare":
            cmd = [sys.executable, "-m", "bench.audit", "--serve-bare", str(config), str(port)]
        log = where / "gateway.log"
        proc = procs.enter_context(base.process(cmd, log))
        gateways[name] = Gateway(name, url, proc.pid, log, audit)
        base.wait_until(partial(ready, url), proc, log, f"gateway {name}")
    return gateways


async def part2(
    gateways: dict[str, Gateway], upstream_pid: int, secret: str, mode: ConnectMode, args: argparse.Namespace
) -> CallResults:
    variants = [v for v in VARIANTS if v.split("/")[0] in gateways]
    results: CallResults = {c: {v: [] for v in variants} for c in args.concurrency}
    for c in args.concurrency:
        for p in range(args.passes):
            order = variants if p % 2 == 0 else variants[::-1]
            cells = {}
            for variant in order:
                gw = gateways[variant.split("/")[0]]
                token = "none"  # a public server ignores it; `bare` has no token endpoint
                if gw.name != "bare":
                    token = await asyncio.to_thread(fetch_token, gw.url, secret)

                def cpu(pid: int = gw.pid) -> dict[str, float]:
                    return base.cpu_snapshot(pid, upstream_pid)

                url = f"{gw.url}/mcp/{variant.split('/')[1]}"
                cells[variant] = await run_cell(url, token, mode, c, args.seconds, cpu)
                results[c][variant].append(cells[variant])
            done = ", ".join(f"{v} {cells[v].rate:.0f}/s" for v in order)
            print(f"  calls c={c} #{p + 1}: {done}", flush=True)
    return results


def against(bases: list[Cell], cells: list[Cell]) -> tuple[float, float, float, str]:
    """Throughput ratio, added p50 ms, and cost: the median over passes of the per-call time increase
    (per-call time = 1 / calls/s), with each pass's cost in %."""
    b, x = pooled(bases), pooled(cells)
    costs = [o.rate / v.rate - 1 for o, v in zip(bases, cells, strict=True)]
    return (
        x.rate / b.rate,
        x.ms(0.5) - b.ms(0.5),
        statistics.median(costs),
        " ".join(f"{100 * k:+.0f}" for k in costs),
    )


def report2(
    results: CallResults, appended: AppendResults | None, rules: tuple[int, int], seconds: float
) -> None:
    passes = len(next(iter(next(iter(results.values())).values())))
    print(
        f"\nPART 2: forwarded `web__echo` calls, one gateway per audit store; {passes} passes of "
        f"{seconds:g}s per cell after a {WARMUP_S:g}s warm-up; policy: {rules[0]} rules, {rules[1]} apply"
    )
    vs = f"{'ratio':>5} {'+p50':>6} {'cost':>6}"
    print(
        f"conc {'variant':<13} | {'calls/s':>7} {'p50':>6} {'p99':>6} {'gw ms':>5} {'errs':>4} {'other':>5} "
        f"| vs {BARE}: {vs} | vs {BASELINE}: {vs} (each pass)"
    )
    for c, by_variant in results.items():
        for variant, cells in by_variant.items():
            x = pooled(cells)
            gw = 1000 * x.cpu["interlink"] / max(1, len(x.latencies))
            other = 100 * x.cpu["other"] / x.elapsed
            row = f"{c:>4} {variant:<13} | {x.rate:>7.0f} {x.ms(0.5):>6.2f} {x.ms(0.99):>6.2f} {gw:>5.2f} "
            row += f"{len(x.errors):>4} {other:>4.0f}% |"
            for name in (BARE, BASELINE):
                if name in by_variant:
                    ratio, added, cost, each = against(by_variant[name], cells)
                    row += f" {' ' * len(name)}     {ratio:>5.2f} {added:>+6.2f} {cost:>+6.1%} |"
            print(f"{row[:-2]} ({each})")
            if x.errors:
                print(f"     {len(x.errors)} failed call(s), first: {x.errors[0]}")
    print("(ms per call; cost: per-call time increase, median over passes; gw ms: gateway CPU per call;")
    print(" other: the rest of the machine, % of one core, PostgreSQL included)")
    for variant in ("sqlite/policy", "pg/policy"):
        if all(variant in r and BASELINE in r for r in results.values()):
            parts = []
            for c, r in results.items():
                _, added, cost, _ = against(r[BASELINE], r[variant])
                parts.append(f"c={c} {added:+.2f} ms p50, {cost:+.0%}")
            print(f"policy + durable audit ({variant}) vs neither ({BASELINE}): {'; '.join(parts)}")
    if appended is None or 1 not in results or 1 not in appended:
        return
    memory = Appends.pooled(appended[1].get("memory", []))
    for store, variant in (("sqlite", "sqlite/policy"), ("postgres", "pg/policy")):
        stored = appended[1].get(store)
        if not stored or variant not in results[1] or not memory.latencies:
            continue
        predicted = 2 * (Appends.pooled(stored).ms(0.5) - memory.ms(0.5))
        reference = "mem/policy"
        measured = pooled(results[1][variant]).ms(0.5) - pooled(results[1][reference]).ms(0.5)
        print(
            f"c=1, {variant} - {reference}: {measured:+.2f} ms at p50; part 1 predicts 2 commits x "
            f"{predicted / 2:.2f} ms = {predicted:.2f} ms"
        )


# -- the run ---------------------------------------------------------------------------------------


def filesystem(path: Path) -> str:
    """The type of the file system holding `path` (fsync on tmpfs costs nothing: not durable)."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount = fields[1]
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fields[2]
    return kind


def postgres_url(given: str | None) -> str | None:
    url = given or os.environ.get("INTERLINK_TEST_POSTGRES_URL")
    if not url:
        return None
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def run_calls(
    args: argparse.Namespace, tmp: Path, urls: dict[str, str], run_id: str
) -> tuple[CallResults, dict[str, Gateway]] | None:
    mode: ConnectMode = args.mode
    secret = secrets.token_hex(16)
    up_port = base.free_port()
    up_url = f"http://127.0.0.1:{up_port}/mcp"
    memory = "sqlite+aiosqlite:///:memory:"
    audits: dict[str, dict[str, Any]] = {"bare": {"database_url": memory}, "mem": {"database_url": memory}}
    audits["sqlite"] = {"database_url": f"sqlite+aiosqlite:///{tmp / 'gw-audit.db'}"}
    if "postgres" in urls:
        audits["pg"] = {"database_url": urls["postgres"]}
    for name, audit in audits.items():
        audit |= {"log_id": f"{run_id}-gw-{name}", "checkpoint_key_file": str(tmp / f"gw-{name}-key.pem")}
    with ExitStack() as procs:
        up_log = tmp / "upstream.log"
        cmd = [sys.executable, str(base.ROOT / "tests" / "upstream_server.py"), "--http", str(up_port)]
        upstream = procs.enter_context(base.process(cmd, up_log))
        base.wait_until(lambda: base.http_status(up_url) is not None, upstream, up_log, "upstream")
        gateways = start_gateways(procs, tmp, audits, up_url, mode, secret)
        pids = ", ".join(f"{g.name} {g.pid}" for g in gateways.values())
        print(f"\nupstream pid {upstream.pid} {up_url}; gateway pids {pids}", flush=True)
        try:
            results = asyncio.run(part2(gateways, upstream.pid, secret, mode, args))
        except Exception as exc:  # the SDK nests the cause ten exception groups deep
            print(f"benchmark failed: {'; '.join(sorted(set(base.leaves(exc))))}", file=sys.stderr)
            for log in [g.log for g in gateways.values()] + [up_log]:
                print(f"--- end of {log}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return None
    return results, gateways  # the gateways have stopped: their logs are drained and checkpointed


async def verify_gateways(gateways: dict[str, Gateway]) -> None:
    """The durable gateways' logs after the load: every chain link and signed checkpoint."""
    for g in gateways.values():
        if g.name in ("bare", "mem"):
            continue
        signer = CheckpointSigner.from_file(Path(g.audit["checkpoint_key_file"]), create=False)
        async with AuditStore.open(g.audit["database_url"]) as store:
            start = time.perf_counter()
            report = await verify_log(store, g.audit["log_id"], [signer.public_key])
            took = time.perf_counter() - start
        verdict = "ok" if report.ok else f"{len(report.problems)} PROBLEM(S), first: {report.problems[0]}"
        print(
            f"gateway {g.name}'s log: {report.records:,} records, {report.checkpoints} checkpoints, "
            f"verified in {took:.2f}s: {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell (default 2)")
    parser.add_argument("--passes", type=int, default=2, help="ABBA passes per concurrency (default 2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], metavar="N")
    parser.add_argument("--postgres", metavar="URL", help="default: $INTERLINK_TEST_POSTGRES_URL")
    parser.add_argument("--dir", type=Path, help="where the SQLite files go (default: a temporary directory)")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="protocol era, both hops")
    parser.add_argument("--only", choices=["appends", "calls"], help="run one part only")
    parser.add_argument("--keep", action="store_true", help="keep this run's rows in PostgreSQL")
    parser.add_argument("--serve-bare", nargs=2, metavar=("CONFIG", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        return serve_bare(Path(args.serve_bare[0]), int(args.serve_bare[1]))
    if not 0 < args.seconds < 240 or args.passes < 1:  # a cell must end before its 5-minute token does
        parser.error("--seconds must be in (0, 240) and --passes at least 1")
    run_id = f"bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="interlink-bench-", dir=args.dir) as name:
        tmp = Path(name).resolve()
        urls = {"memory": "sqlite+aiosqlite:///:memory:", "sqlite": f"sqlite+aiosqlite:///{tmp / 'audit.db'}"}
        pg = postgres_url(args.postgres)
        skipped = "no --postgres and INTERLINK_TEST_POSTGRES_URL is not set" if pg is None else None
        if pg is not None and (skipped := asyncio.run(probe(pg))) is None:
            urls["postgres"] = pg
        print(f"run {run_id}; SQLite files in {tmp} ({filesystem(tmp)}); {os.cpu_count()} cores")
        print(f"PostgreSQL: {'SKIPPED: ' + skipped if skipped else pg}", flush=True)
        appended = None
        if args.only != "calls":
            appended, verified = asyncio.run(part1(urls, run_id, args.concurrency, args.seconds, args.passes))
            report1(appended, verified, args.seconds, f"{tmp} ({filesystem(tmp)})")
        calls = run_calls(args, tmp, urls, run_id) if args.only != "appends" else None
        if calls is not None:
            policy, applying = bench_policy()
            report2(calls[0], appended, (len(policy["rules"]), applying), args.seconds)
            asyncio.run(verify_gateways(calls[1]))
        if "postgres" in urls and not args.keep:
            ids = [f"{run_id}-{s}" for s in STORES] + [f"{run_id}-gw-{g}" for g in GATEWAYS.values()]
            asyncio.run(forget(urls["postgres"], ids))
    return 0 if args.only == "appends" or calls is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
