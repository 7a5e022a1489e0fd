"""`interlink approvals list|show|approve|deny`: decide calls held for a human (gateway/approvals.py).

They work on the gateway database named by the configuration, also while the gateway runs (an agent's
retry sees the decision at once). Each decision is written to the audit trail under the log id
`cli` (the running gateway writes `main`, so the two never compete for a sequence number).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from gateway.approvals import Approval, ApprovalError, Approvals, decide_and_record
from gateway.audit import operator_log
from gateway.settings import GatewaySettings, load_settings
from gateway.store import Store


def add_parsers(sub: Any) -> None:
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration (names the database)")
    approvals = sub.add_parser("approvals", help="see and decide calls held for a human's approval")
    verbs = approvals.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", parents=[config], help="held calls (default: pending ones)")
    listing.add_argument(
        "--status", choices=["pending", "approved", "denied", "used", "expired", "all"], default="pending"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    verbs.add_parser("show", parents=[config], help="one held call in full, arguments included").add_argument(
        "id"
    )
    for verb, text in (("approve", "let the call through once"), ("deny", "refuse it")):
        decide = verbs.add_parser(verb, parents=[config], help=text)
        decide.add_argument("id")
        decide.add_argument("--note", help="why (kept with the decision and in the audit trail)")
        decide.add_argument("--as", dest="approver", metavar="NAME", help="who decides (default: user@host)")


def run(args: argparse.Namespace, config: Path | None) -> int:
    settings = load_settings(config) if config is not None else GatewaySettings()
    return anyio.run(_run, args, settings)


async def _run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    async with Store.open(settings.identity.database_url) as store:
        approvals = Approvals(lambda: store.engine, ttl_s=settings.approval_ttl_s)
        await approvals.setup()
        try:
            if args.verb == "list":
                status = None if args.status == "all" else args.status
                for item in await approvals.list(status):
                    print(json.dumps(item.describe(), sort_keys=True) if args.json else _line(item))
                return 0
            if args.verb == "show":
                found = await approvals.get(args.id)
                if found is None:
                    print(f"interlink: no approval {args.id!r}", file=sys.stderr)
                    return 1
                print(json.dumps(found.describe(), indent=2, sort_keys=True))
                return 0
            approver = args.approver or f"{getpass.getuser()}@{socket.gethostname()}"
            async with operator_log(settings.audit.database_url, settings.audit.key_file()) as audit:
                decided = await decide_and_record(
                    approvals,
                    audit,
                    args.id,
                    approve=args.verb == "approve",
                    by=approver,
                    note=args.note,
                    via="cli",
                )
            print(
                f"{decided.id}: {decided.status} by {approver}; the agent may now retry"
                if decided.status == "approved"
                else f"{decided.id}: denied by {approver}"
            )
            return 0
        except ApprovalError as exc:
            print(f"interlink: {exc.message}", file=sys.stderr)
            return 1


def _line(item: Approval) -> str:
    when = datetime.fromtimestamp(item.created_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    args = json.dumps(item.args, sort_keys=True)
    if len(args) > 80:
        args = args[:77] + "..."
    target = f"{item.agent} -> {item.server}/{item.name}"
    return f"{item.id}  {item.status:8} {when}  {target} {args}  rule={item.rule}"
