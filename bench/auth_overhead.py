"""What token validation costs per MCP tool call: a protected and a public virtual server, one run.

Run from the repo root: `python -m bench.auth_overhead [--seconds 4] [--concurrency 1 8 32] [--mode legacy]`

The three processes of `bench.mcp_overhead` (test upstream, gateway, this load generator), with one
upstream `web` behind two virtual servers: `open` (public) and `secure` (protected, scope `mcp`). The
agent `bench-agent` gets a client-credentials token for `/mcp/secure` (a fresh one per cell, so none
expires mid-cell). For each concurrency c, c workers, each with its own `mcp.Client` over an httpx2
client that sends `Authorization: Bearer <token>` to both servers (identical requests but for the
path), call `web__echo` for a warm-up plus `--seconds`. Cells alternate open, secure, secure, open
(two passes, ABBA) so drift from other load on the machine cancels; the columns pool both passes.

Printed per concurrency: calls/s, p50/p99 ms, gateway CPU ms per call (from /proc) for each server,
the throughput ratio secure/open, the added p50, and the validation cost: (secure per-call time -
open per-call time) / open per-call time, per-call time = 1 / calls/s. Target: < 10% at c=8.
Then, in-process and free of network noise, `TokenVerifier.verify` of one token N times: µs each.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Final

import httpx2
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from bench.mcp_overhead import (
    CALL_TIMEOUT_S,
    ROLES,
    ROOT,
    TEXT,
    WARMUP_S,
    Cell,
    cpu_snapshot,
    free_port,
    http_status,
    leaves,
    process,
    wait_until,
)
from identity.keys import KeyRing, generate_key
from identity.tokens import TokenIssuer, TokenVerifier

AGENT: Final = "bench-agent"
SERVERS: Final = ("open", "secure")
TARGET: Final = 0.10
"""Most validation may add to a forwarded call's time at concurrency 8."""


def gateway_config(up_url: str, gw_url: str, db: Path, secret: str, mode: ConnectMode) -> str:
    agent = {"client_id": AGENT, "name": "Bench", "owner": "bench", "secret": {"value": secret}}
    return json.dumps(  # JSON is YAML
        {
            "logging": {"level": "warning"},
            "upstreams": [{"name": "web", "transport": "http", "url": up_url, "protocol": mode}],
            "virtual_servers": [
                {"name": "open", "upstreams": ["web"], "public": True},
                {"name": "secure", "upstreams": ["web"], "required_scopes": ["mcp"]},
            ],
            "identity": {
                "database_url": f"sqlite+aiosqlite:///{db}",
                "public_url": gw_url,
                "agents": [agent | {"audiences": ["mcp/secure"], "scopes": ["mcp"]}],
            },
        }
    )


def fetch_token(gw_url: str, secret: str) -> str:
    """A client-credentials token for `/mcp/secure` (HTTP Basic client authentication)."""
    form = {"grant_type": "client_credentials", "resource": f"{gw_url}/mcp/secure", "scope": "mcp"}
    basic = base64.b64encode(f"{AGENT}:{secret}".encode()).decode()
    request = urllib.request.Request(
        f"{gw_url}/oauth2/token",
        data=urllib.parse.urlencode(form).encode(),
        headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
    )
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
                result = await client.call_tool("web__echo", {"text": TEXT})
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
        for _ in range(workers):
            http: httpx2.AsyncClient = await stack.enter_async_context(
                create_mcp_http_client(headers={"authorization": f"Bearer {token}"})
            )
            transport = streamable_http_client(url, http_client=http)
            client = Client(transport, cache=None, mode=mode, read_timeout_seconds=CALL_TIMEOUT_S)
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
    latencies = [x for c in cells for x in c.latencies]
    return Cell(latencies, [e for c in cells for e in c.errors], sum(c.elapsed for c in cells), cpu)


def verify_cost(n: int) -> float:
    """µs per `TokenVerifier.verify` of one valid ES256 token (what `Identity.authenticate` does)."""
    now = int(time.time())
    ring = KeyRing([generate_key(now)])
    issuer_url, audience = "http://127.0.0.1:1", "http://127.0.0.1:1/mcp/secure"
    issuer = TokenIssuer(issuer_url, lambda: ring, 300)
    verifier = TokenVerifier(issuer_url, lambda: ring, max_ttl_s=300, is_revoked=lambda jti: False)
    token = issuer.issue(subject="s", client_id=AGENT, audience=audience, scopes=["mcp"], tenant=None).token
    for _ in range(min(n, 200)):
        verifier.verify(token, audience)
    start = time.perf_counter()
    for _ in range(n):
        verifier.verify(token, audience)
    return 1e6 * (time.perf_counter() - start) / n


def report(results: dict[int, dict[str, list[Cell]]], mode: str, seconds: float, verify_us: float) -> None:
    print(f"\nprotocol mode {mode!r}; {seconds:g}s per cell after {WARMUP_S:g}s warm-up; 2 passes pooled")
    print(
        f"{'conc':>4} | {'open/s':>7} {'p50':>6} {'p99':>6} {'gw ms':>5} | {'secure/s':>8} {'p50':>6} "
        f"{'p99':>6} {'gw ms':>5} {'errors':>6} | {'ratio':>5} {'+p50 ms':>7} {'cost':>6} | passes o/s, o/s"
    )
    cost: dict[int, float] = {}
    for c, by_server in results.items():
        o, s = pooled(by_server["open"]), pooled(by_server["secure"])
        cost[c] = (1 / s.rate - 1 / o.rate) / (1 / o.rate)
        o_gw, s_gw = (1000 * x.cpu["interlink"] / max(1, len(x.latencies)) for x in (o, s))
        passes = ", ".join(f"{a.rate:.0f}/{b.rate:.0f}" for a, b in zip(*by_server.values(), strict=True))
        print(
            f"{c:>4} | {o.rate:>7.0f} {o.ms(0.5):>6.2f} {o.ms(0.99):>6.2f} {o_gw:>5.2f} | {s.rate:>8.0f} "
            f"{s.ms(0.5):>6.2f} {s.ms(0.99):>6.2f} {s_gw:>5.2f} {len(o.errors) + len(s.errors):>6} | "
            f"{s.rate / o.rate:>5.2f} {s.ms(0.5) - o.ms(0.5):>7.2f} {100 * cost[c]:>5.1f}% | {passes}"
        )
        for name, x in (("open", o), ("secure", s)):
            if x.errors:
                print(f"     c={c} {name}: {len(x.errors)} failed call(s), first: {x.errors[0]}")
    print("(ms are per call; gw ms = gateway CPU ms per call; cost = (1/secure/s - 1/open/s) / (1/open/s))")
    print(f"\nin-process TokenVerifier.verify (ES256): {verify_us:.1f} µs per token")
    failed = any(x.errors for by_server in results.values() for cells in by_server.values() for x in cells)
    if 8 in cost:
        verdict = "MET" if cost[8] < TARGET and not failed else "MISSED"
        print(f"target: validation cost < {TARGET:.0%} of a forwarded call at c=8: {verdict} ({cost[8]:.1%})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell (default 4)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], metavar="N")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="protocol era, both hops")
    parser.add_argument("--verifications", type=int, default=5000, help="in-process verify() calls")
    args = parser.parse_args(argv)
    mode: ConnectMode = args.mode
    if not 0 < args.seconds < 240:  # a cell must end before its 5-minute token does
        parser.error("--seconds must be between 0 and 240")
    up_port, gw_port, secret = free_port(), free_port(), secrets.token_hex(16)
    up_url, gw_url = f"http://127.0.0.1:{up_port}/mcp", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory(prefix="interlink-bench-") as tmp, ExitStack() as procs:
        config = Path(tmp, "interlink.yaml")
        config.write_text(gateway_config(up_url, gw_url, Path(tmp, "bench.db"), secret, mode))
        up_log, gw_log = Path(tmp, "upstream.log"), Path(tmp, "gateway.log")
        cmd = [sys.executable, str(ROOT / "tests" / "upstream_server.py"), "--http", str(up_port)]
        upstream = procs.enter_context(process(cmd, up_log))
        wait_until(lambda: http_status(up_url) is not None, upstream, up_log, "upstream")
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(gw_port)]
        gateway = procs.enter_context(process(cmd, gw_log))
        wait_until(lambda: http_status(f"{gw_url}/readyz?strict=1") == 200, gateway, gw_log, "gateway")
        print(f"upstream pid {upstream.pid} {up_url}; interlink pid {gateway.pid} {gw_url}")

        def cpu() -> dict[str, float]:
            return cpu_snapshot(gateway.pid, upstream.pid)

        async def run() -> dict[int, dict[str, list[Cell]]]:
            results: dict[int, dict[str, list[Cell]]] = {}
            for c in args.concurrency:
                results[c] = {name: [] for name in SERVERS}
                for name in (*SERVERS, *reversed(SERVERS)):
                    token = await asyncio.to_thread(fetch_token, gw_url, secret)
                    url = f"{gw_url}/mcp/{name}"
                    results[c][name].append(await run_cell(url, token, mode, c, args.seconds, cpu))
                    print(f"  c={c} {name}: {results[c][name][-1].rate:.0f}/s", flush=True)
            return results

        try:
            results = asyncio.run(run())
        except Exception as exc:  # the SDK nests the cause ten exception groups deep
            print(f"benchmark failed: {'; '.join(sorted(set(leaves(exc))))}", file=sys.stderr)
            print(f"--- end of gateway log:\n{gw_log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
    report(results, mode, args.seconds, verify_cost(args.verifications))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
