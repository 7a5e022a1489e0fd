"""What a policy decision costs: the pure evaluator of `identity.policy`, in-process, by policy size.

Run from the repo root: `python -m bench.policy [--seconds 2] [--sizes 10 100 1000] [--per-kind 250]
[--seed 7] [--profile [RULES]]`

For each size, a deterministic (seeded) policy shaped like a real one: 8 MCP servers of 8 tools each,
25 agents in 5 tenants; about 70% permit and 30% forbid rules, scoped to a few agents, a tenant or
anyone; resources `mcp:<server>/<tool>`, some globs (`mcp:crm/*`, `mcp:billing/list_*`); argument
conditions on each server's own arguments (`amount < 5000`, `currency in [...]`, `to matches ...`,
dotted `address.country`); some rules only on weekdays in office hours in a named zone
(Europe/Berlin, America/New_York, Asia/Tokyo). It is validated from plain data, as the config is.

Requests are generated (mostly aimed at a random rule, with arguments of the right types, at one of a
few fixed instants) and kept by the decision they get, `--per-kind` of each kind: allowed, denied by a
forbid, denied by default (no permit applies), and error-denied (a number sent as a string, so a
condition cannot be evaluated). The shuffled mix of all four is then run three ways, each for a
warm-up plus `--seconds`: every `evaluate` call timed on its own with `time.perf_counter_ns` (p50/p99
per kind and over the mix; the timer's own cost, printed, is included), the mix in a plain loop
(decisions/s), and `visible` (what filters tools/list: the same requests, no arguments) timed per call.

Target: a 100-rule policy decides in under 20 µs at p50 (over the mix). `--profile` adds a cProfile
of the mix on the 100-rule (or the given) policy, top functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Final

from identity.policy import Decision, Policy, Request, evaluate, visible

TARGET_RULES: Final = 100
TARGET_P50_US: Final = 20.0
WARMUP_S: Final = 0.3
KINDS: Final = ("allowed", "forbid-denied", "default-denied", "error-denied")
ACTION: Final = "tools/call"
TENANTS: Final = ("acme", "globex", "initech", "umbrella", "hooli")
AGENTS: Final = tuple(f"agent-{i:02d}" for i in range(1, 26))
TENANT_OF: Final = {agent: TENANTS[i % len(TENANTS)] for i, agent in enumerate(AGENTS)}
ZONES: Final = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
INSTANTS: Final = tuple(
    datetime(2026, 3, day, hour, minute, tzinfo=UTC)
    for day, hour, minute in [(10, 9, 30), (11, 14, 5), (12, 22, 40), (14, 11, 0)]
)
"""Tue morning, Wed afternoon, Thu night (UTC), Sat late morning: inside and outside office hours."""


@dataclass(frozen=True)
class Arg:
    """One argument of a server's tools: its dotted path, kind ("num", "enum", "text") and sample values."""

    path: str
    kind: str
    values: tuple[Any, ...]
    patterns: tuple[str, ...] = ()
    """For "text": the regular expressions rules match it with."""


@dataclass(frozen=True)
class Server:
    name: str
    tools: tuple[str, ...]
    args: tuple[Arg, ...]


PATHS: Final = ("/shared/public/a.txt", "/shared/team/plan.md", "/home/bo/.ssh/id", "/etc/passwd")
QUERIES: Final = ("weather berlin", "DROP TABLE", "q3 revenue", "x" * 60)
EMAILS: Final = ("ana@example.com", "bo@partner.io", "cy@example.com", "dee@gmail.com", "ed@evil.test")
EMAIL_RES: Final = (r"[^@]+@(example\.com|partner\.io)", r".*@example\.com", r".*@(gmail\.com|evil\.test)")
SERVERS: Final = (
    Server(
        "crm",
        ("get_contact", "search_contacts", "update_contact", "delete_contact")
        + ("export_contacts", "create_lead", "list_deals", "close_deal"),
        (
            Arg("limit", "num", (1, 10, 50, 100, 500)),
            Arg("address.country", "enum", ("DE", "FR", "US", "GB", "JP", "BR")),
            Arg("email", "text", EMAILS, EMAIL_RES),
        ),
    ),
    Server(
        "billing",
        ("get_invoice", "list_invoices", "create_invoice", "refund")
        + ("charge", "list_payments", "void_invoice", "update_plan"),
        (
            Arg("amount", "num", (5, 99.5, 1200, 4800, 25000, 90000)),
            Arg("currency", "enum", ("EUR", "USD", "GBP", "JPY")),
            Arg("customer", "text", ("cus_1234", "cus_9876", "acct_42", "cus_0001"), (r"cus_[0-9]{4}",)),
        ),
    ),
    Server(
        "mail",
        ("send", "draft", "list_inbox", "read_message", "delete_message", "forward", "reply", "search"),
        (
            Arg("to", "text", EMAILS, EMAIL_RES),
            Arg("attachments", "num", (0, 1, 3, 10)),
            Arg("priority", "enum", ("low", "normal", "high")),
        ),
    ),
    Server(
        "files",
        ("read", "write", "list_dir", "delete", "move", "share", "stat", "upload"),
        (
            Arg("path", "text", PATHS, (r"/shared/(public|team)/.*", r"/home/[^/]+/\..*", r"/etc/.*")),
            Arg("size", "num", (0, 4096, 1_000_000, 50_000_000)),
        ),
    ),
    Server(
        "hr",
        ("get_employee", "list_employees", "update_salary", "get_payslip")
        + ("terminate", "list_leave", "approve_leave", "org_chart"),
        (
            Arg("employee", "text", ("E10001", "E19999", "X0001", "E20000"), (r"E1[0-9]{4}",)),
            Arg("department", "enum", ("eng", "sales", "finance", "legal", "ops")),
        ),
    ),
    Server(
        "search",
        ("web", "news", "images", "scholar", "maps", "shopping", "videos", "local"),
        (
            Arg("query", "text", QUERIES, (r"[a-z0-9 ]{1,40}",)),
            Arg("limit", "num", (1, 10, 100)),
        ),
    ),
    Server(
        "calendar",
        ("list_events", "create_event", "delete_event", "update_event")
        + ("free_busy", "invite", "list_calendars", "share_calendar"),
        (
            Arg("days", "num", (1, 7, 30, 365)),
            Arg("visibility", "enum", ("private", "team", "public")),
        ),
    ),
    Server(
        "tickets",
        ("create", "get", "list", "assign", "close", "comment", "escalate", "delete"),
        (
            Arg("priority", "enum", ("p1", "p2", "p3", "p4")),
            Arg("assignee", "text", EMAILS, EMAIL_RES),
            Arg("estimate", "num", (1, 3, 8, 40)),
        ),
    ),
)
UNGOVERNED: Final = Server(
    "admin",
    ("rotate_keys", "list_users", "reset_password", "audit_log"),
    (Arg("user", "text", EMAILS, EMAIL_RES), Arg("days", "num", (1, 30, 90))),
)
"""Called, but in no rule: requests to it are denied by default, after every rule was looked at."""


def condition(rng: random.Random, arg: Arg, forbid: bool) -> dict[str, Any]:
    """A condition on `arg`: permits bound from above or allow-list, forbids bound from below or deny-list."""
    if arg.kind == "num":
        op = rng.choice((">", ">=") if forbid else ("<", "<="))
        return {"path": arg.path, "op": op, "value": rng.choice(arg.values[1:])}
    if arg.kind == "enum":
        chosen = rng.sample(arg.values, rng.randint(1, max(1, len(arg.values) - 1)))
        op = rng.choice(("in", "not_in")) if forbid else "in"
        return {"path": arg.path, "op": op, "value": chosen}
    return {"path": arg.path, "op": "matches", "value": rng.choice(arg.patterns)}


def make_rule(rng: random.Random, n: int) -> dict[str, Any]:
    forbid = rng.random() < 0.3
    server = rng.choice(SERVERS)
    rule: dict[str, Any] = {"id": f"{'forbid' if forbid else 'permit'}-{n:04d}"}
    rule["effect"] = "forbid" if forbid else "permit"
    scope = rng.random()
    if scope < (0.3 if forbid else 0.65):
        rule["principals"] = {"agents": rng.sample(AGENTS, rng.randint(1, 3))}
    elif scope < 0.9:
        rule["principals"] = {"tenants": rng.sample(TENANTS, rng.randint(1, 2))}
    rule["actions"] = [ACTION] if rng.random() < 0.9 else ["*"]
    glob = rng.random()
    if glob < 0.1:
        rule["resources"] = [f"mcp:{server.name}/*"]
    elif glob < 0.2:
        prefix = rng.choice(server.tools).split("_")[0]
        rule["resources"] = [f"mcp:{server.name}/{prefix}*"]
    else:
        tools = rng.sample(server.tools, rng.randint(1, 3))
        rule["resources"] = [f"mcp:{server.name}/{tool}" for tool in tools]
    count = rng.choices((0, 1, 2), (0.4, 0.4, 0.2))[0]
    constrained = rng.sample(server.args, min(count, len(server.args)))
    rule["args"] = [condition(rng, arg, forbid) for arg in constrained]
    if rng.random() < 0.1:
        start, end = rng.choice(("07:00", "08:00", "09:00")), rng.choice(("17:00", "18:00", "20:00"))
        days = ["mon", "tue", "wed", "thu", "fri"]
        rule["time"] = {"timezone": rng.choice(ZONES), "days": days, "start": start, "end": end}
    rule["description"] = f"generated rule {n}"
    return rule


def make_policy(size: int, seed: int) -> Policy:
    rng = random.Random(f"{seed}-policy-{size}")
    rules = [make_rule(rng, n) for n in range(size)]
    return Policy.model_validate({"version": f"bench-{size}", "rules": rules})


def set_path(args: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        args = args.setdefault(part, {})
    args[leaf] = value


def make_args(rng: random.Random, server: Server, wrong_type: bool) -> dict[str, Any]:
    """Every argument of the server's tools; with `wrong_type`, the numbers sent as strings."""
    args: dict[str, Any] = {}
    for arg in server.args:
        value = rng.choice(arg.values)
        set_path(args, arg.path, str(value) if wrong_type and arg.kind == "num" else value)
    return args


def make_request(rng: random.Random, policy: Policy, wrong_type: bool) -> Request:
    """Aimed at a random rule (its principals, one of its resources) 3 times in 4; else anyone calling
    any tool, or 1 time in 10 a tool of `UNGOVERNED`, a server no rule names yet."""
    agent, server, tool = rng.choice(AGENTS), rng.choice(SERVERS), ""
    if (dice := rng.random()) < 0.1:
        server = UNGOVERNED
    elif dice < 0.85:
        rule = rng.choice(policy.rules)
        who = rule.principals
        members = [a for a in AGENTS if not who.tenants or TENANT_OF[a] in who.tenants]
        agent = rng.choice(who.agents or members)
        pattern = rng.choice(rule.resources)
        server = next(s for s in SERVERS if s.name == server_name(pattern))
        tool = rng.choice([t for t in server.tools if fnmatchcase(t, pattern.split("/", 1)[1])])
    tool = tool or rng.choice(server.tools)
    tenant = TENANT_OF[agent] if rng.random() < 0.95 else None
    args = make_args(rng, server, wrong_type)
    return Request(agent, tenant, ACTION, f"mcp:{server.name}/{tool}", args, rng.choice(INSTANTS))


def server_name(pattern: str) -> str:
    return pattern.split(":", 1)[1].split("/", 1)[0]


def kind(decision: Decision) -> str:
    if decision.allow:
        return "allowed"
    if decision.rule is None:
        return "default-denied"
    return "forbid-denied" if decision.reason.startswith("forbidden") else "error-denied"


def make_requests(policy: Policy, size: int, seed: int, per_kind: int) -> list[tuple[int, Request]]:
    """`per_kind` requests of each kind (fewer if the generator does not find them), shuffled."""
    rng = random.Random(f"{seed}-requests-{size}")
    found: dict[str, list[Request]] = {k: [] for k in KINDS}
    for attempt in range(per_kind * 60):
        if all(len(v) >= per_kind for v in found.values()):
            break
        request = make_request(rng, policy, wrong_type=attempt % 4 == 3)
        got = found[kind(evaluate(policy, request))]
        if len(got) < per_kind:
            got.append(request)
    mix = [(KINDS.index(k), r) for k, requests in found.items() for r in requests]
    rng.shuffle(mix)
    return mix


def pct(ordered: Sequence[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in µs."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else float("nan")


@dataclass
class Timed:
    """Per-call latencies in ns, by request kind (index into KINDS); -1 collects everything."""

    samples: dict[int, list[int]] = field(default_factory=dict)

    def row(self, key: int) -> tuple[int, float, float, float]:
        ordered = sorted(self.samples.get(key, []))
        mean = statistics.fmean(ordered) / 1000 if ordered else float("nan")
        return len(ordered), pct(ordered, 0.5), pct(ordered, 0.99), mean


def time_calls(
    call: Callable[[Policy, Request], object], policy: Policy, mix: list[tuple[int, Request]], seconds: float
) -> Timed:
    """Every call timed on its own, passes over the mix until `seconds` are up (after a warm-up)."""
    clock = time.perf_counter_ns
    out = Timed({k: [] for k in range(-1, len(KINDS))})
    for window, keep in ((WARMUP_S, False), (seconds, True)):
        until = clock() + int(window * 1e9)
        while clock() < until:
            for key, request in mix:
                start = clock()
                call(policy, request)
                elapsed = clock() - start
                if keep:
                    out.samples[key].append(elapsed)
    out.samples[-1] = [ns for key in range(len(KINDS)) for ns in out.samples[key]]
    return out


def throughput(policy: Policy, mix: list[tuple[int, Request]], seconds: float) -> float:
    """Decisions/s over the mix in a plain loop, no per-call timing."""
    requests = [r for _, r in mix]
    for r in requests:
        evaluate(policy, r)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for r in requests:
            evaluate(policy, r)
        done += len(requests)
    return done / elapsed


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(100_000):
        start = clock()
        samples.append(clock() - start)
    return statistics.median(samples)


@dataclass
class Result:
    size: int
    per_kind: dict[str, int]
    decide: Timed
    rate: float
    shown: Timed
    visible_rate: float


def run(size: int, seed: int, per_kind: int, seconds: float) -> Result:
    policy = make_policy(size, seed)
    mix = make_requests(policy, size, seed, per_kind)
    counts = {k: sum(1 for key, _ in mix if key == i) for i, k in enumerate(KINDS)}
    decide = time_calls(evaluate, policy, mix, seconds)
    rate = throughput(policy, mix, seconds)
    bare = [(key, replace(r, args={})) for key, r in mix]
    shown = time_calls(visible, policy, bare, seconds)
    n = len(shown.samples[-1])
    visible_rate = n / (sum(shown.samples[-1]) / 1e9) if n else float("nan")
    return Result(size, counts, decide, rate, shown, visible_rate)


def report(results: list[Result], seconds: float, overhead: float) -> None:
    print(f"\nper-call latency over {seconds:g}s per size and call (after {WARMUP_S:g}s warm-up); µs")
    print(f"timer overhead ~{overhead:.0f} ns per sample, included; gc on")
    head = f"{'rules':>5} | {'call':<8} {'requests':<22} | {'samples':>9} | {'p50':>7} {'p99':>7} {'mean':>7}"
    print(f"{head} | {'calls/s':>9}")
    print("-" * (len(head) + 12))
    for res in results:
        for i, name in enumerate(KINDS):
            print(line(res.size, "evaluate", f"{name} ({res.per_kind[name]})", res.decide.row(i), ""))
        mix = f"mix ({sum(res.per_kind.values())})"
        print(line(res.size, "evaluate", mix, res.decide.row(-1), f"{res.rate:>9,.0f}"))
        print(line(res.size, "visible", mix, res.shown.row(-1), f"{res.visible_rate:>9,.0f}"))
        print("-" * (len(head) + 12))
    print("(evaluate calls/s: a plain loop over the mix; visible calls/s: from the timed calls)")
    for res in results:
        short = [k for k, n in res.per_kind.items() if n < max(res.per_kind.values())]
        if short:
            print(f"{res.size} rules: the generator found fewer requests of kind {', '.join(short)}")
    target = next((r for r in results if r.size == TARGET_RULES), None)
    goal = f"target: {TARGET_RULES} rules under {TARGET_P50_US:g} us p50"
    if target is None:
        print(f"{goal}: not measured (add {TARGET_RULES} to --sizes)")
    else:
        p50 = target.decide.row(-1)[1]
        print(f"{goal}: {'MET' if p50 < TARGET_P50_US else 'MISSED'} ({p50:.1f} us)")


def line(size: int, call: str, label: str, row: tuple[int, float, float, float], rate: str) -> str:
    n, p50, p99, mean = row
    return f"{size:>5} | {call:<8} {label:<22} | {n:>9} | {p50:>7.1f} {p99:>7.1f} {mean:>7.1f} | {rate}"


def profile(size: int, seed: int, per_kind: int, seconds: float) -> None:
    policy = make_policy(size, seed)
    requests = [r for _, r in make_requests(policy, size, seed, per_kind)]
    profiler = cProfile.Profile()
    calls, until = 0, time.perf_counter() + seconds
    profiler.enable()
    while time.perf_counter() < until:
        for r in requests:
            evaluate(policy, r)
        calls += len(requests)
    profiler.disable()
    print(f"\ncProfile of {calls} evaluate calls over the mix, {size} rules, top by own time:")
    pstats.Stats(profiler).sort_stats(pstats.SortKey.TIME).print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per size and call (2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], metavar="RULES")
    parser.add_argument("--per-kind", type=int, default=250, metavar="N", help="requests of each kind (250)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=int, nargs="?", const=TARGET_RULES, metavar="RULES")
    args = parser.parse_args(argv)
    overhead = timer_overhead_ns()
    results = []
    for size in args.sizes:
        gc.collect()
        result = run(size, args.seed, args.per_kind, args.seconds)
        print(f"  {size} rules: {result.rate:,.0f} decisions/s", flush=True)
        results.append(result)
    report(results, args.seconds, overhead)
    if args.profile:
        profile(args.profile, args.seed, args.per_kind, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
