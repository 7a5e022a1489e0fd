"""`interlink tools list|approve`: see and approve upstream tool definitions (tool pinning,
`gateway/pins.py`).

Both connect to the configured upstreams themselves, as the gateway does (a stdio upstream is
started as a child of this command), and compare each tool's definition with its pin in the gateway
database. `approve` shows what is new or changed, refuses definitions that look poisoned unless
`--force`, records one `tool.approved` audit record per tool, and only then stores the pins; a
running gateway picks them up within a few seconds. Its audit records go to the log id `cli`: the
gateway writes `main`, so the two never compete for a sequence number (two approving commands
running at the same moment do: the second fails before pinning anything, and can simply be re-run).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import Tool

from adapters.mcp.pool import UpstreamPool
from gateway.audit import DecisionInfo, Outcome, operator_log
from gateway.enforce import TOOL_DEFINITION_FIELDS, definition_hash
from gateway.errors import GatewayError
from gateway.pins import REFRESH_S, PinStatus, pin_event, scan, tool_definition, visible
from gateway.settings import (
    GatewaySettings,
    HttpUpstream,
    InterlinkTokenAuth,
    McpUpstream,
    UpstreamSettings,
    load_settings,
    sa_database,
)
from gateway.store import Store, ToolPin
from gateway.upstreams import build_spec

"""The audit log id of records written by `interlink` commands (the gateway writes its own)."""


def add_parsers(sub: Any) -> None:
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML configuration (upstreams, database)"
    )
    tools = sub.add_parser("tools", help="approve upstream tool definitions (tool pinning)")
    verbs = tools.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser(
        "list", parents=[config], help="every upstream tool: approved, changed or new, and its hash"
    )
    listing.add_argument("upstreams", nargs="*", metavar="UPSTREAM", help="only these (default: all)")
    approve = verbs.add_parser(
        "approve", parents=[config], help="pin tools' current definitions (shows what changed first)"
    )
    approve.add_argument("upstream", metavar="UPSTREAM")
    approve.add_argument("tools", nargs="*", metavar="TOOL", help="upstream tool names (as it calls them)")
    approve.add_argument("--all", action="store_true", help="every new or changed tool of UPSTREAM")
    approve.add_argument("--force", action="store_true", help="approve even definitions that look poisoned")
    approve.add_argument("--as", dest="approver", metavar="NAME", help="who approves (default: user@host)")


def run(args: argparse.Namespace, config: Path | None) -> int:
    settings = load_settings(config) if config is not None else GatewaySettings()
    if _in_memory(settings.identity.database_url):
        print(
            "interlink: tool pins are kept in identity.database_url, which is in memory here; give the "
            "gateway a database file or PostgreSQL so approvals reach it",
            file=sys.stderr,
        )
        return 2
    return anyio.run(_run, args, settings)


async def _run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    known = {u.name: u for u in settings.mcp_upstreams}
    wanted = [args.upstream] if args.verb == "approve" else (args.upstreams or list(known))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        print(
            f"interlink: no upstream named {', '.join(map(repr, unknown))} in the configuration",
            file=sys.stderr,
        )
        return 2
    if args.verb == "approve" and not (args.tools or args.all):
        print("interlink: name the tools to approve, or give --all", file=sys.stderr)
        return 2
    current = await fetch_tools(settings, [known[n] for n in wanted])
    async with Store.open(settings.identity.database_url) as store:
        pins = {(p.upstream, p.tool): p for p in await store.tool_pins()}
        if args.verb == "list":
            for name in wanted:
                _print_list(known[name], current[name], pins)
            return 1 if any(isinstance(c, Exception) for c in current.values()) else 0
        tools = current[args.upstream]
        if isinstance(tools, Exception):
            print(f"interlink: cannot read the tools of {args.upstream}: {_cause(tools)}", file=sys.stderr)
            return 1
        return await _approve(args, settings, store, known[args.upstream], tools, pins)


async def fetch_tools(
    settings: GatewaySettings, upstreams: Sequence[McpUpstream]
) -> dict[str, dict[str, Tool] | GatewayError | MCPError]:
    """Each upstream's tools as it serves them now, over a connection of our own (or why not)."""
    async with AsyncExitStack() as stack:
        mint = None
        if any(isinstance(u, HttpUpstream) and isinstance(u.auth, InterlinkTokenAuth) for u in upstreams):
            from gateway.auth import Identity

            identity = await stack.enter_async_context(Identity(settings).running())
            mint = identity.upstream_tokens
        pool = UpstreamPool([build_spec(u, mint) for u in upstreams])
        await stack.enter_async_context(pool.running())
        found: dict[str, dict[str, Tool] | GatewayError | MCPError] = {}
        for u in upstreams:
            try:
                found[u.name] = await pool.get(u.name).tools(refresh=True)
            except (GatewayError, MCPError) as exc:
                found[u.name] = exc
        return found


def _status(pins: dict[tuple[str, str], ToolPin], upstream: str, tool: Tool) -> tuple[PinStatus, str]:
    sha256 = definition_hash(tool)
    pin = pins.get((upstream, tool.name))
    if pin is None:
        return "new", sha256
    return ("approved" if pin.sha256 == sha256 else "changed"), sha256


def _print_list(
    upstream: UpstreamSettings,
    tools: dict[str, Tool] | GatewayError | MCPError,
    pins: dict[tuple[str, str], ToolPin],
) -> None:
    mode = "off"
    if upstream.tool_pinning:
        mode = "on, new tools " + ("trusted on first use" if upstream.trust_new_tools else "need approval")
    print(f"{upstream.name}: tool pinning {mode}")
    if isinstance(tools, Exception):
        print(f"  unavailable: {_cause(tools)}")
        return
    for name in sorted(tools):
        status, sha256 = _status(pins, upstream.name, tools[name])
        line = f"  {status:9} {name:32} {sha256[:12]}"
        pin = pins.get((upstream.name, name))
        if pin is not None:
            line += f"  approved {pin.sha256[:12]} by {pin.approved_by} {_when(pin.approved_at)}"
        print(line)
    for (owner, name), pin in sorted(pins.items()):
        if owner == upstream.name and name not in tools:
            print(f"  {'gone':9} {name:32} {'':12}  approved {pin.sha256[:12]}, no longer served")


async def _approve(
    args: argparse.Namespace,
    settings: GatewaySettings,
    store: Store,
    upstream: UpstreamSettings,
    tools: dict[str, Tool],
    pins: dict[tuple[str, str], ToolPin],
) -> int:
    missing = [t for t in args.tools if t not in tools]
    if missing:
        print(
            f"interlink: {upstream.name} serves no tool named {', '.join(map(repr, missing))}",
            file=sys.stderr,
        )
        return 1
    chosen = args.tools or sorted(tools)
    pending = [(tools[t], *_status(pins, upstream.name, tools[t])) for t in chosen]
    pending = [(tool, status, sha256) for tool, status, sha256 in pending if status != "approved"]
    if not pending:
        print(f"{upstream.name}: nothing to approve (every named tool is approved as served)")
        return 0
    warnings: dict[str, list[str]] = {}
    for tool, status, sha256 in pending:
        _show(upstream.name, tool, status, sha256, pins.get((upstream.name, tool.name)))
        findings = scan(tool_definition(tool))
        for finding in findings:
            print(f"warning: {upstream.name}/{tool.name}: {finding.where}: {finding.what}", file=sys.stderr)
        if findings:
            warnings[tool.name] = [f"{f.where}: {f.what}" for f in findings]
    if warnings and not args.force:
        print(
            f"interlink: refusing to approve {len(warnings)} definition(s) that look poisoned; read them "
            "above, and approve with --force only if you trust them",
            file=sys.stderr,
        )
        return 1
    approver = args.approver or f"{getpass.getuser()}@{socket.gethostname()}"
    now = int(datetime.now(UTC).timestamp())
    approved = [
        ToolPin(upstream.name, tool.name, sha256, tool_definition(tool), approver, now)
        for tool, _s, sha256 in pending
    ]
    await _record(settings, approved, pins, approver, warnings)  # before the pins take effect
    await store.put_tool_pins(approved)
    note = "" if upstream.tool_pinning else f" (tool_pinning is off for {upstream.name}: not enforced yet)"
    print(
        f"approved {len(approved)} tool(s) of {upstream.name} as {approver}; a running gateway serves them "
        f"within {REFRESH_S:g} s{note}"
    )
    return 0


async def _record(
    settings: GatewaySettings,
    approved: list[ToolPin],
    previous: dict[tuple[str, str], ToolPin],
    approver: str,
    warnings: dict[str, list[str]],
) -> None:
    """One `tool.approved` record per tool, durable before this returns (else AuditUnavailable)."""
    async with operator_log(settings.audit.database_url, settings.audit.key_file()) as audit:
        for pin in approved:
            flagged = warnings.get(pin.tool)
            await audit.append(
                pin_event(
                    "tool.approved",
                    pin.upstream,
                    pin.tool,
                    pin.sha256,
                    approved=previous.get((pin.upstream, pin.tool)),
                    decision=DecisionInfo(effect="allow", reason="approved_by_human"),
                    outcome=Outcome(status="ok"),
                    person=approver,
                    extra={"via": "cli", **({"forced_past": flagged[:20]} if flagged else {})},
                )
            )


def _show(upstream: str, tool: Tool, status: PinStatus, sha256: str, pin: ToolPin | None) -> None:
    """What the approver is about to accept: a new tool in full, a changed one field by field."""
    now = tool_definition(tool)
    if pin is None:
        print(f"new      {upstream}/{tool.name}  sha256 {sha256[:12]}")
        print(f"  description: {visible(str(now.get('description', '')))}")
        return
    print(f"changed  {upstream}/{tool.name}  sha256 {pin.sha256[:12]} -> {sha256[:12]}")
    for field in TOOL_DEFINITION_FIELDS:
        before, after = pin.definition.get(field), now.get(field)
        if before == after:
            continue
        if isinstance(before, str | None) and isinstance(after, str | None):
            print(f"  {field}: {visible(before or '')!r}")
            print(f"  {' ' * len(field)}  -> {visible(after or '')!r}")
        else:
            print(f"  {field} changed")


def _cause(exc: GatewayError | MCPError) -> str:
    return exc.message if isinstance(exc, GatewayError) else f"tools/list failed ({exc.code})"


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _in_memory(url: str) -> bool:
    return url.startswith("sqlite") and sa_database(url) in (None, "", ":memory:")
