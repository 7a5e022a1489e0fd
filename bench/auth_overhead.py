"""What token validation costs per MCP tool call: a protected and a public virtual server, one run.

Run from the repo root: `python -m bench.auth_overhead [--seconds 3] [--passes 4] [--concurrency 1 8 32]
[--mode legacy]`

The three processes of `bench.mcp_overhead` (test upstream, gateway, this load generator), with one
upstream `web` behind two virtual servers: `open` (public) and `secure` (protected, scope `mcp`).
Agent `bench-agent` gets a client-credentials token for `/mcp/secure`, a fresh one per cell so none
expires mid-cell. For each concurrency c, c workers, each with its own `mcp.Client` over an httpx2
client sending `Authorization: Bearer <token>` to both servers (the requests differ only in path),
call `web__echo` for a warm-up plus `--seconds`. Cells run open, secure, secure, open, ... (ABBA), so
drift from other load on the machine cancels; each pass yields one open/secure pair.

Printed per concurrency (latency and CPU pooled over passes): calls/s, p50/p99 ms and gateway CPU ms
per call (/proc) per server, the throughput ratio secure/open, the added p50, and the validation cost
(secure per-call time - open per-call time) / open per-call time, per-call time = 1 / calls/s: the
median over passes, then each pass's. "other" is the rest of the machine's CPU (noise); "+cpu" the
extra CPU per secure call of our three processes, the less noisy estimate of the cost. Target:
cost < 10% at c=8. Then, in-process and free of that noise, `TokenVerifier.verify` (what
`Identity.authenticate` does per request) in µs: one token N times, and N distinct tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from functools import partial
from pathlib import Path
from typing import Final

from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client  # what `Client(url)` uses in mcp_overhead
from mcp.shared.exceptions import MCPError

from bench import mcp_overhead as base
from bench.mcp_overhead import ROLES, WARMUP_S, Cell
from identity.keys import KeyRing, generate_key
from identity.tokens import TokenIssuer, TokenVerifier

AGENT: Final = "bench-agent"
TARGET: Final = 0.10
"""Most that validation may add to a forwarded call's time at concurrency 8."""
Pairs = dict[int, list[tuple[Cell, Cell]]]
"""Concurrency -> one (open, secure) pair of cells per pass."""


def gateway_config(up_url: str, gw_url: str, db: Path, secret: str, mode: ConnectMode) -> str:
    agent = {"client_id": AGENT, "name": "Bench", "owner": "bench", "secret": {"value": secret}}
    agent |= {"audiences": ["mcp/secure"], "scopes": ["mcp"]}
    web = {"name": "web", "transport": "http", "url": up_url, "protocol": mode}
    identity = {"database_url": f"sqlite+aiosqlite:///{db}", "public_url": gw_url, "agents": [agent]}
    servers = [{"name": name, "upstreams": ["web"], "public": name == "open"} for name in ("open", "secure")]
    config = {"logging": {"level": "warning"}, "upstreams": [web], "virtual_servers": servers}
    audit = {  # durable, as deployed, beside the identity database in the run's temporary directory
        "database_url": f"sqlite+aiosqlite:///{db.parent / 'audit.db'}",
        "checkpoint_key_file": str(db.parent / "audit-key.pem"),
    }
    return json.dumps(config | {"identity": identity, "audit": audit})  # JSON is YAML


def fetch_token(gw_url: str, secret: str) -> str:
    """A client-credentials token for `/mcp/secure`, the client authenticated with HTTP Basic."""
    form = {"grant_type": "client_credentials", "resource": f"{gw_url}/mcp/secure", "scope": "mcp"}
    basic = base64.b64encode(f"{AGENT}:{secret}".encode()).decode()
    request = urllib.request.Request(f"{gw_url}/oauth2/token", urllib.parse.urlencode(form).encode())
    request.add_header("authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        token: str = json.load(resp)["access_token"]
        return token


async def run_cell(
    url: str, token: str, mode: ConnectMode, workers: int, seconds: float, cpu: Callable[[], dict[str, float]]
) -> Cell:
    """`workers` bearer-token Clients calling `web__echo` until a deadline: warm-up, then measured."""
    cell = Cell([], [], 0.0, {})

    async def loop(client: Client, until: float, record: bool) -> None:
        while (start := time.perf_counter()) < until:
            try:
                result = await client.call_tool("web__echo", {"text": base.TEXT})
                failure = str(result.content) if result.is_error else None
            except MCPError as exc:
                failure = str(exc)
            if not record:
                continue
            if failure is None:
                cell.latencies.append(time.perf_counter() - start)
            else:
                cell.errors.append(failure)

    async with asyncio.timeout(seconds + WARMUP_S + 60), AsyncExitStack() as stack:
        clients: list[Client] = []
        headers = {"authorization": f"Bearer {token}"}
        for _ in range(workers):
            http = await stack.enter_async_context(create_mcp_http_client(headers))
            transport = streamable_http_client(url, http_client=http)
            client = Client(transport, cache=None, mode=mode, read_timeout_seconds=base.CALL_TIMEOUT_S)
            clients.append(await stack.enter_async_context(client))
        for record, duration in ((False, WARMUP_S), (True, seconds)):
            before, start = cpu(), time.perf_counter()
            await asyncio.gather(*(loop(c, start + duration, record) for c in clients))
            cell.elapsed, after = time.perf_counter() - start, cpu()
        cell.cpu = {role: after[role] - before[role] for role in ROLES}
    return cell


def pooled(cells: list[Cell]) -> Cell:
    """Several cells as one: all latencies and errors, summed time and CPU."""
    cpu = {role: sum(c.cpu[role] for c in cells) for role in ROLES}
    errors = [e for c in cells for e in c.errors]
    return Cell([x for c in cells for x in c.latencies], errors, sum(c.elapsed for c in cells), cpu)


def verify_us(n: int) -> tuple[float, float]:
    """µs per `TokenVerifier.verify` of a valid ES256 token: the same token n times, n distinct tokens."""
    ring = KeyRing([generate_key(int(time.time()))])
    issuer_url, audience = "http://127.0.0.1:1", "http://127.0.0.1:1/mcp/secure"
    issuer = TokenIssuer(issuer_url, lambda: ring, 300)
    verifier = TokenVerifier(issuer_url, lambda: ring, max_ttl_s=300, is_revoked=lambda jti: False)
    issue = partial(
        issuer.issue, subject="s", client_id=AGENT, audience=audience, scopes=["mcp"], tenant=None
    )
    tokens = [issue().token for _ in range(n + 1)]
    out = []
    for batch in ([tokens[0]] * n, tokens[1:]):
        verifier.verify(tokens[0], audience)  # warm-up
        start = time.perf_counter()
        for token in batch:
            verifier.verify(token, audience)
        out.append(1e6 * (time.perf_counter() - start) / n)
    return out[0], out[1]


def cost(o: Cell, s: Cell) -> float:
    """(secure per-call time - open per-call time) / open per-call time, per-call time = 1 / rate."""
    return o.rate / s.rate - 1


def report(results: Pairs, mode: str, seconds: float, n: int) -> None:
    passes = len(next(iter(results.values())))
    print(f"\nprotocol mode {mode!r}; {passes} passes of {seconds:g}s per cell after a {WARMUP_S:g}s warm-up")
    head = f"{'p50':>6} {'p99':>6} {'gw ms':>5}"
    print(f"conc | open/s {head} | secure/s {head} errs | ratio  +p50 other  +cpu | cost: median (each pass)")
    costs = {c: statistics.median(cost(o, s) for o, s in pairs) for c, pairs in results.items()}
    for c, pairs in results.items():
        o, s = (pooled(list(cells)) for cells in zip(*pairs, strict=True))
        gw = [1000 * x.cpu["interlink"] / max(1, len(x.latencies)) for x in (o, s)]
        other = 100 * (o.cpu["other"] + s.cpu["other"]) / (o.elapsed + s.elapsed)
        cpu = s.cpu_ms_per_call() / o.cpu_ms_per_call() - 1
        each = " ".join(f"{100 * cost(*pair):+.0f}" for pair in pairs)
        print(
            f"{c:>4} | {o.rate:>6.0f} {o.ms(0.5):>6.2f} {o.ms(0.99):>6.2f} {gw[0]:>5.2f} | {s.rate:>8.0f} "
            f"{s.ms(0.5):>6.2f} {s.ms(0.99):>6.2f} {gw[1]:>5.2f} {len(o.errors) + len(s.errors):>4} | "
            f"{s.rate / o.rate:>5.2f} {s.ms(0.5) - o.ms(0.5):>5.2f} {other:>4.0f}% {cpu:>+4.0%} | "
            f"{costs[c]:+.1%} ({each})"
        )
        for name, x in (("open", o), ("secure", s)):
            if x.errors:
                print(f"     c={c} {name}: {len(x.errors)} failed call(s), first: {x.errors[0]}")
    print("(ms per call; gw ms: gateway CPU; other: the rest of the machine, % of one core, a noise gauge;")
    print(" +cpu: extra CPU per secure call, our three processes: the cost once the cores are saturated)")
    same, distinct = verify_us(n)
    print(f"\nin-process TokenVerifier.verify, µs: {same:.1f} (one token x{n}), {distinct:.1f} ({n} tokens)")
    if 8 in costs:
        failed = any(o.errors or s.errors for pairs in results.values() for o, s in pairs)
        verdict = "MET" if costs[8] < TARGET and not failed else "MISSED"
        print(f"target: validation < {TARGET:.0%} of a forwarded call at c=8: {verdict} ({costs[8]:+.1%})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell (default 3)")
    parser.add_argument("--passes", type=int, default=4, help="open/secure pairs per concurrency (default 4)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], metavar="N")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="protocol era, both hops")
    parser.add_argument("--verifications", type=int, default=5000, metavar="N", help="in-process; 5000")
    args = parser.parse_args(argv)
    mode: ConnectMode = args.mode
    if not 0 < args.seconds < 240 or args.passes < 1:  # a cell must end before its 5-minute token does
        parser.error("--seconds must be in (0, 240) and --passes at least 1")
    up_port, gw_port, secret = base.free_port(), base.free_port(), secrets.token_hex(16)
    up_url, gw_url = f"http://127.0.0.1:{up_port}/mcp", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory(prefix="interlink-bench-") as tmp, ExitStack() as procs:
        config = Path(tmp, "interlink.yaml")
        config.write_text(gateway_config(up_url, gw_url, Path(tmp, "bench.db"), secret, mode))
        up_log, gw_log = Path(tmp, "upstream.log"), Path(tmp, "gateway.log")
        cmd = [sys.executable, str(base.ROOT / "tests" / "upstream_server.py"), "--http", str(up_port)]
        upstream = procs.enter_context(base.process(cmd, up_log))
        base.wait_until(lambda: base.http_status(up_url) is not None, upstream, up_log, "upstream")
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(gw_port)]
        gateway = procs.enter_context(base.process(cmd, gw_log))
        ready = f"{gw_url}/readyz?strict=1"
        base.wait_until(lambda: base.http_status(ready) == 200, gateway, gw_log, "gateway")
        print(f"upstream pid {upstream.pid} {up_url}; interlink pid {gateway.pid} {gw_url}")

        async def cell(name: str, c: int) -> Cell:
            token = await asyncio.to_thread(fetch_token, gw_url, secret)
            return await run_cell(f"{gw_url}/mcp/{name}", token, mode, c, args.seconds, cpu)

        def cpu() -> dict[str, float]:
            return base.cpu_snapshot(gateway.pid, upstream.pid)

        async def run() -> Pairs:
            results: Pairs = {}
            for c in args.concurrency:
                results[c] = []
                for p in range(args.passes):
                    first, second = ("open", "secure") if p % 2 == 0 else ("secure", "open")
                    a, b = await cell(first, c), await cell(second, c)
                    results[c].append((a, b) if first == "open" else (b, a))
                    print(f"  c={c} #{p + 1}: {first} {a.rate:.0f}/s, {second} {b.rate:.0f}/s", flush=True)
            return results

        try:
            results = asyncio.run(run())
        except Exception as exc:  # the SDK nests the cause ten exception groups deep
            print(f"benchmark failed: {'; '.join(sorted(set(base.leaves(exc))))}", file=sys.stderr)
            print(f"--- end of gateway log:\n{gw_log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
    report(results, mode, args.seconds, args.verifications)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
