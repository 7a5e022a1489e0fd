"""`interlink audit tail|query|verify|export|key`: read the audit trail named by `audit.database_url`.

They read the store directly (also while the gateway runs) and never write to it. `verify` exits 1
when it finds a problem and names each one (edited, deleted, reordered or inserted records, rewritten
history, truncation, bad checkpoint signatures); pin the checkpoint public key with `--public-key`
when the key file on this machine cannot be trusted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from gateway.audit import (
    AuditStore,
    CheckpointSigner,
    Query,
    StoredRecord,
    load_public_key,
    verify_log,
)
from gateway.settings import GatewaySettings, load_settings

FOLLOW_POLL_S = 0.5


def add_parsers(sub: Any) -> None:
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration (names the store)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="one JSON record per line instead of a table")
    audit = sub.add_parser("audit", help="read and verify the audit trail (tail, query, verify, export, key)")
    verbs = audit.add_subparsers(dest="verb", metavar="VERB", required=True)
    tail = verbs.add_parser(
        "tail", parents=[config, output], help="the latest records (--follow: keep going)"
    )
    tail.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20)")
    tail.add_argument("--follow", "-f", action="store_true", help="print new records as they are written")
    query = verbs.add_parser("query", parents=[config, output], help="records by agent, tool, decision, time")
    query.add_argument("--agent", help="client id")
    query.add_argument("--tool", help="tool, prompt or resource name as the caller saw it")
    query.add_argument("--decision", choices=["allow", "deny"])
    query.add_argument("--since", type=_iso, metavar="ISO-8601", help="from this time (inclusive)")
    query.add_argument("--until", type=_iso, metavar="ISO-8601", help="up to this time (exclusive)")
    query.add_argument("--limit", type=int, default=100)
    verify = verbs.add_parser(
        "verify",
        parents=[config],
        help="recompute the hash chain and check signed checkpoints (exit 1 on problems)",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="checkpoint public key to trust (default: from the key file)",
    )
    export = verbs.add_parser("export", parents=[config], help="every record and checkpoint, for archiving")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument("--output", "-o", type=Path, metavar="FILE", help="default: standard output")
    verbs.add_parser("key", parents=[config], help="print the checkpoint public key (publish it)")


def _iso(value: str) -> str:
    """Normalise to the records' form (UTC, `Z`), so string order is time order."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r}: give a UTC offset, e.g. 2026-11-30T09:00:00Z")
    from datetime import UTC

    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(args: argparse.Namespace, config: Path | None) -> int:
    settings = load_settings(config) if config is not None else GatewaySettings()
    try:
        return anyio.run(_run, args, settings)
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    if args.verb == "key":
        return _key(settings)
    async with AuditStore.open(settings.audit.database_url) as store:
        if args.verb == "tail":
            return await _tail(store, args)
        if args.verb == "query":
            q = Query(
                agent=args.agent,
                name=args.tool,
                effect=args.decision,
                since=args.since,
                until=args.until,
                limit=args.limit,
            )
            for row in await store.query(q):
                _print(row, args.json)
            return 0
        if args.verb == "verify":
            return await _verify(store, settings, args.public_key)
        return await _export(store, args.output)
    return 2


def _key(settings: GatewaySettings) -> int:
    path = settings.audit.key_file()
    if path is None or not path.is_file():
        print(
            "interlink: no checkpoint key file (an in-memory audit log uses a throw-away key)",
            file=sys.stderr,
        )
        return 2
    signer = CheckpointSigner.from_file(path, create=False)
    print(f"# key id {signer.key_id} ({path})", file=sys.stderr)
    print(signer.public_pem(), end="")
    return 0


async def _tail(store: AuditStore, args: argparse.Namespace) -> int:
    rows = list(reversed(await store.query(Query(limit=args.n, newest_first=True))))
    for row in rows:
        _print(row, args.json)
    if not args.follow:
        return 0
    seen = {(r.log_id, r.seq) for r in rows}
    last = {r.log_id: r.seq for r in rows}
    while True:
        await asyncio.sleep(FOLLOW_POLL_S)
        for log_id in await store.log_ids():
            async for row in store.records(log_id, after=last.get(log_id, 0)):
                if (row.log_id, row.seq) not in seen:
                    _print(row, args.json)
                last[log_id] = row.seq
        sys.stdout.flush()


async def _verify(store: AuditStore, settings: GatewaySettings, pinned: Path | None) -> int:
    if pinned is not None:
        keys = [load_public_key(pinned.read_bytes())]
    else:
        path = settings.audit.key_file()
        if path is None or not path.is_file():
            print("interlink: no checkpoint key to verify against; pass --public-key", file=sys.stderr)
            return 2
        keys = [CheckpointSigner.from_file(path, create=False).public_key]
    logs = await store.log_ids()
    if not logs:
        print("audit trail is empty: nothing to verify")
        return 0
    bad = 0
    for log_id in logs:
        report = await verify_log(store, log_id, keys)
        status = "OK" if report.ok else "FAILED"
        print(
            f"log {log_id}: {status}: {report.records} records (last seq {report.last_seq}), "
            f"{report.checkpoints} checkpoints (last at seq {report.last_checkpoint})"
        )
        for problem in report.problems:
            print(f"  - {problem}")
        if report.ok and report.last_seq > report.last_checkpoint:
            print(
                f"  note: records {report.last_checkpoint + 1}-{report.last_seq} are after the last "
                "signed checkpoint: protected by the chain only until the next checkpoint"
            )
        bad += not report.ok
    return 1 if bad else 0


async def _export(store: AuditStore, output: Path | None) -> int:
    out = output.open("w") if output else sys.stdout
    count = 0
    try:
        for log_id in await store.log_ids():
            async for row in store.records(log_id):
                line = {
                    "type": "record",
                    "record": row.record(),
                    "record_hash": row.record_hash,
                    "chain": row.chain,
                }
                out.write(json.dumps(line, sort_keys=True) + "\n")
                count += 1
            for cp in await store.checkpoints(log_id):
                out.write(json.dumps({"type": "checkpoint", **cp.__dict__}, sort_keys=True) + "\n")
    finally:
        if output:
            out.close()
    if output:
        print(f"exported {count} records to {output}", file=sys.stderr)
    return 0


def _print(row: StoredRecord, as_json: bool) -> None:
    record = row.record()
    if as_json:
        print(json.dumps(record, sort_keys=True))
        return
    actor = record["actor"].get("agent") or record["actor"].get("address") or "-"
    target = record["target"]
    where = "/".join(p for p in (target.get("server"), target.get("name")) if p) or "-"
    decision = record["decision"]
    rule = f" rule={decision['rule']}" if decision.get("rule") else ""
    outcome = record["outcome"]
    result = outcome["status"] + (f"({outcome['reason']})" if outcome.get("reason") else "")
    print(
        f"{record['ts']} {record['log']}#{record['seq']} {decision['effect']:5} {actor} "
        f"{record['event']} {where} [{decision['reason']}{rule}] {result} {record['latency_us'] / 1000:.1f}ms"
    )
