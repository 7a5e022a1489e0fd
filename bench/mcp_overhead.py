"""What Interlink costs per MCP tool call: the same workload direct to an upstream and through the gateway.

Run from the repo root: `python -m bench.mcp_overhead [--seconds 4] [--concurrency 1 8 32] [--mode legacy]`

Three processes, so no two share an event loop: our test upstream (`tests/upstream_server.py --http`),
the gateway (`python -m gateway serve`, that upstream as `web` behind `/mcp/bench`) and this script, the
load generator. For each concurrency c, c workers, each with its own `mcp.Client` (cache off; one Client
per worker measured slightly faster than one shared Client, and is what independent agents look like),
call `echo` with a short text in a loop: a warm-up, then `--seconds` in which every call's latency is
recorded. "direct" is client -> upstream (`echo`); "interlink" is client -> Interlink -> upstream
(`web__echo`). `--mode` is the protocol era of both hops: `auto` negotiates 2026-07-28 (stateless),
`legacy` the 2025-11-25 handshake (a session per Client). A call answered with an error is counted.

Printed per concurrency: calls/s and p50/p99 ms both ways, the p50 Interlink adds and the throughput
ratio interlink/direct; each process's CPU during the window (% of one core, from /proc; "other" is the
rest of the machine, a noise indicator) with our three processes' CPU per call; and the targets: under
1 ms added at p50 at concurrency 1, at least half the direct throughput at concurrency 32.

On a 2-core machine the three processes compete for the cores, and a proxied call costs CPU in all
three, so once the cores are saturated the ratio is mostly CPU per call; the CPU table shows that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mcp import Client
from mcp.client.client import ConnectMode
from mcp.shared.exceptions import MCPError

ROOT: Final = Path(__file__).resolve().parent.parent
TICKS: Final = os.sysconf("SC_CLK_TCK")
CALL_TIMEOUT_S: Final = 10.0
STARTUP_TIMEOUT_S: Final = 30.0
WARMUP_S: Final = 1.0
TEXT: Final = "hello, interlink"
ROLES: Final = ("bench", "interlink", "upstream", "other")
"""CPU accounts: this load generator, the gateway, the upstream, everything else on the machine."""


@dataclass
class Cell:
    """One measured run: latencies of successful calls (s), failed calls, wall time, CPU seconds by role."""

    latencies: list[float]
    errors: list[str]
    elapsed: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies) or [math.nan]
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def cpu_ms_per_call(self) -> float:
        ours = sum(self.cpu[role] for role in ROLES if role != "other")
        return 1000 * ours / max(1, len(self.latencies) + len(self.errors))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_snapshot(gateway: int, upstream: int) -> dict[str, float]:
    """Cumulative CPU seconds (user + system) by role; "other" is the machine's busy time minus ours."""

    def proc(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of proc(5)

    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / TICKS  # all but idle and iowait
    own = os.times()
    out = {"bench": own.user + own.system, "interlink": proc(gateway), "upstream": proc(upstream)}
    out["other"] = busy - sum(out.values())
    return out


@contextmanager
def process(args: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` with output to `log`; always terminate (then kill) it on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{what} did not start (exit code {proc.poll()}); its output:\n{tail}")
        time.sleep(0.1)


def http_status(url: str) -> int | None:
    """The HTTP status `url` answers a GET with, or None if nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


async def measure(
    url: str, tool: str, mode: ConnectMode, workers: int, seconds: float, cpu: Callable[[], dict[str, float]]
) -> Cell:
    """`workers` Clients calling `tool` in a loop: a warm-up, then `seconds` measured.

    A call answered with an error is counted and the loop goes on; anything else aborts the run."""

    async def worker(client: Client, until: float, out: list[float], errors: list[str]) -> None:
        while (start := time.perf_counter()) < until:
            try:
                result = await client.call_tool(tool, {"text": TEXT})
                failure = str(result.content) if result.is_error else None
            except MCPError as exc:
                failure = str(exc)
            if failure is None:
                out.append(time.perf_counter() - start)
            else:
                errors.append(failure)

    async def phase(clients: list[Client], duration: float, out: list[float], errors: list[str]) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(c, start + duration, out, errors) for c in clients))
        return time.perf_counter() - start

    async with asyncio.timeout(seconds + WARMUP_S + 60), AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                Client(url, mode=mode, cache=None, read_timeout_seconds=CALL_TIMEOUT_S)
            )
            for _ in range(workers)
        ]
        await phase(clients, WARMUP_S, [], [])
        latencies: list[float] = []
        errors: list[str] = []
        before = cpu()
        elapsed = await phase(clients, seconds, latencies, errors)
        after = cpu()
    return Cell(latencies, errors, elapsed, {role: after[role] - before[role] for role in ROLES})


def report(results: list[tuple[int, Cell, Cell]], mode: str, seconds: float) -> None:
    print(f"\nprotocol mode {mode!r}; {seconds:g}s measured per cell after a {WARMUP_S:g}s warm-up")
    print(
        f"{'conc':>4} | {'direct/s':>8} {'p50 ms':>7} {'p99 ms':>7} | {'interlink/s':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} | {'+p50 ms':>7} {'ratio':>5}"
    )
    for c, d, i in results:
        print(
            f"{c:>4} | {d.rate:>8.0f} {d.ms(0.5):>7.2f} {d.ms(0.99):>7.2f} | {i.rate:>11.0f} "
            f"{i.ms(0.5):>7.2f} {i.ms(0.99):>7.2f} {len(i.errors):>6} | "
            f"{i.ms(0.5) - d.ms(0.5):>7.2f} {i.rate / d.rate:>5.2f}"
        )
    print(f"\nCPU in the window, % of one core ({os.cpu_count()} cores; other = the rest of the machine)")
    print(f"{'conc':>4} | direct: {'  '.join(ROLES)} | interlink: {'  '.join(ROLES)} | our CPU ms/call d / i")
    for c, d, i in results:
        dc, ic = ("  ".join(f"{100 * x.cpu[r] / x.elapsed:>{len(r)}.0f}" for r in ROLES) for x in (d, i))
        print(
            f"{c:>4} |         {dc} |            {ic} | {d.cpu_ms_per_call():.2f} / {i.cpu_ms_per_call():.2f}"
        )
    print()
    for c, name, cell in [(c, n, x) for c, d, i in results for n, x in (("direct", d), ("interlink", i))]:
        if cell.errors:
            print(f"concurrency {c}, {name}: {len(cell.errors)} failed call(s), first: {cell.errors[0]}")
    by_c = {c: (d, i) for c, d, i in results}
    failed = any(d.errors or i.errors for d, i in by_c.values())
    if 1 in by_c:
        added = by_c[1][1].ms(0.5) - by_c[1][0].ms(0.5)
        verdict = "MET" if added < 1 and not failed else "MISSED"
        print(f"target: Interlink adds < 1 ms at p50, concurrency 1: {verdict} ({added:.2f} ms)")
    if 32 in by_c:
        ratio = by_c[32][1].rate / by_c[32][0].rate
        verdict = "MET" if ratio >= 0.5 and not failed else "MISSED"
        print(f"target: >= 0.50 of direct throughput at concurrency 32: {verdict} ({ratio:.2f})")
    if failed:
        print("(any failed call misses both targets)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell (default 4)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], metavar="N")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="protocol era, both hops")
    args = parser.parse_args(argv)
    mode: ConnectMode = args.mode
    up_port, gw_port = free_port(), free_port()
    gw_url = f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory(prefix="interlink-bench-") as tmp, ExitStack() as procs:
        config = Path(tmp, "interlink.yaml")  # JSON is YAML
        upstream_url = f"http://127.0.0.1:{up_port}/mcp"
        web = {"name": "web", "transport": "http", "url": upstream_url, "protocol": mode}
        bench = {"name": "bench", "upstreams": ["web"], "public": True}
        memory = {"database_url": "sqlite+aiosqlite:///:memory:"}
        config.write_text(
            json.dumps(
                {
                    "logging": {"level": "warning"},
                    "upstreams": [web],
                    "virtual_servers": [bench],
                    "identity": memory,
                    # the audit trail as deployed: durable SQLite, in the run's temporary directory
                    "audit": {
                        "database_url": f"sqlite+aiosqlite:///{Path(tmp, 'audit.db')}",
                        "checkpoint_key_file": str(Path(tmp, "audit-key.pem")),
                    },
                }
            )
        )
        up_log, gw_log = Path(tmp, "upstream.log"), Path(tmp, "gateway.log")
        cmd = [sys.executable, str(ROOT / "tests" / "upstream_server.py"), "--http", str(up_port)]
        upstream = procs.enter_context(process(cmd, up_log))
        wait_until(lambda: http_status(upstream_url) is not None, upstream, up_log, "upstream")
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(gw_port)]
        gateway = procs.enter_context(process(cmd, gw_log))
        wait_until(lambda: http_status(f"{gw_url}/readyz?strict=1") == 200, gateway, gw_log, "gateway")
        print(f"upstream pid {upstream.pid} {upstream_url}; interlink pid {gateway.pid} {gw_url}/mcp/bench")

        def cpu() -> dict[str, float]:
            return cpu_snapshot(gateway.pid, upstream.pid)

        async def run() -> list[tuple[int, Cell, Cell]]:
            results = []
            for c in args.concurrency:
                direct = await measure(upstream_url, "echo", mode, c, args.seconds, cpu)
                through = await measure(f"{gw_url}/mcp/bench", "web__echo", mode, c, args.seconds, cpu)
                print(f"  c={c}: direct {direct.rate:.0f}/s, interlink {through.rate:.0f}/s", flush=True)
                results.append((c, direct, through))
            return results

        try:
            results = asyncio.run(run())
        except Exception as exc:  # the SDK nests the cause ten exception groups deep
            print(f"benchmark failed: {'; '.join(sorted(set(leaves(exc))))}", file=sys.stderr)
            for log in (gw_log, up_log):
                print(f"--- end of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
        report(results, mode, args.seconds)
        if restarts := gw_log.read_text(errors="replace").count("upstream_restart_scheduled"):
            print(f"the gateway restarted its upstream connection {restarts} time(s); see its warnings")
    return 0


def leaves(exc: BaseException) -> Iterator[str]:
    """The innermost causes of a (nested) exception group, as `Type: message`."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    raise SystemExit(main())
