"""`interlink agents-remote add|list|show|remove|enable|disable`: downstream A2A agents registered
at run time (gateway/a2a_remote.py), written to the gateway database named by the configuration.
A running gateway serves a change within `REFRESH_S` seconds (5). Each change is audited under the
log id `cli`."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import yaml

from gateway.a2a_remote import REFRESH_S, RemoteAgents, describe
from gateway.audit import operator_log
from gateway.registry import RegistryError
from gateway.settings import GatewaySettings, load_settings
from gateway.store import Store

EPILOG = f"""\
examples:
  interlink agents-remote add helpdesk --card-url https://helpdesk.example.com/.well-known/agent-card.json
  interlink agents-remote add lab --card-url http://127.0.0.1:9999/.well-known/agent-card.json \\
      --allow-private-network --auth-interlink-scopes tickets.read
  interlink agents-remote add billing --card card.json --settings billing.yaml
      (billing.yaml: any other field of an a2a_agents entry, e.g.
       headers: {{X-Api-Key: {{env: BILLING_KEY}}}}  -- secrets only as env/file references)
  interlink agents-remote list | show NAME | disable NAME | enable NAME | remove NAME

A running gateway picks a change up within {REFRESH_S:g} s; /admin/a2a-agents applies it at once.
Callers need a registration with audience a2a/NAME (interlink agents add ... --audience a2a/NAME)."""


def add_parsers(sub: Any) -> None:
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration (names the database)")
    group = sub.add_parser(
        "agents-remote",
        help="downstream A2A agents registered at run time (no restart)",
        description="Register downstream A2A agents in the gateway database; a running gateway "
        "serves each at /a2a/NAME exactly like one of the configuration's a2a_agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser(
        "add",
        parents=[config],
        help="register an agent by card URL or inline card",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", help="served at /a2a/NAME (lowercase letters, digits, - and _)")
    card = add.add_mutually_exclusive_group(required=True)
    card.add_argument("--card-url", metavar="URL", help="where its A2A agent card is fetched")
    card.add_argument("--card", type=Path, metavar="FILE", help="the card itself (JSON or YAML)")
    add.add_argument(
        "--allow-private-network", action="store_true", help="allow http and private addresses (development)"
    )
    add.add_argument("--public", action="store_true", help="no token needed to call it (default: protected)")
    add.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="scope callers' tokens need; repeatable (default: a2a)",
    )
    add.add_argument(
        "--auth-interlink-scopes",
        nargs="+",
        metavar="SCOPE",
        help="authenticate to the agent with a token Interlink signs per call (these scopes)",
    )
    add.add_argument("--timeout-s", type=float, metavar="N", help="longest call (default 120)")
    add.add_argument(
        "--settings", type=Path, metavar="FILE", help="YAML/JSON mapping of any other a2a_agents field"
    )
    verbs.add_parser("list", parents=[config], help="one line per run-time agent")
    for verb, text in (
        ("show", "one agent's stored settings"),
        ("remove", "stop serving it (its tasks stay in the database)"),
        ("disable", "stop serving it, keep the registration"),
        ("enable", "serve it again"),
    ):
        verbs.add_parser(verb, parents=[config], help=text).add_argument("name")


def body_of(args: argparse.Namespace) -> dict[str, Any]:
    """The registration the flags describe (validated like the admin API's body)."""
    body: dict[str, Any] = {}
    if args.settings is not None:
        loaded = yaml.safe_load(args.settings.read_text())
        if not isinstance(loaded, dict):
            raise RegistryError(f"{args.settings}: expected a mapping of a2a_agents fields", 400)
        body.update(loaded)
    body["name"] = args.name
    if args.card_url is not None:
        body["card_url"] = args.card_url
    else:
        body["card"] = yaml.safe_load(args.card.read_text())
    if args.allow_private_network:
        body["allow_private_network"] = True
    if args.public:
        body["public"] = True
    if args.scope:
        body["required_scopes"] = args.scope
    if args.auth_interlink_scopes:
        body["auth"] = {"kind": "interlink", "scopes": args.auth_interlink_scopes}
    if args.timeout_s is not None:
        body["timeout_s"] = args.timeout_s
    return body


def run(args: argparse.Namespace, config: Path | None) -> int:
    settings = load_settings(config) if config is not None else GatewaySettings()
    return anyio.run(_run, args, settings)


async def _run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    async with Store.open(settings.identity.database_url) as store:
        try:
            if args.verb in ("list", "show"):
                return await _read(args, RemoteAgents(store, settings, audit=None, via="cli"))
            who = f"{getpass.getuser()}@{socket.gethostname()}"
            async with operator_log(settings.audit.database_url, settings.audit.key_file()) as audit:
                agents = RemoteAgents(store, settings, audit=audit, via="cli", who=who)
                if args.verb == "add":
                    row = await agents.add(body_of(args))
                    print(f"registered {row.name}: served at /a2a/{row.name} within {REFRESH_S:g} s")
                elif args.verb == "remove":
                    await agents.remove(args.name)
                    print(f"{args.name}: removed (its tasks stay in the database)")
                else:
                    await agents.set_enabled(args.name, args.verb == "enable")
                    print(f"{args.name}: {args.verb}d")
            return 0
        except (RegistryError, OSError, yaml.YAMLError) as exc:
            message = exc.message if isinstance(exc, RegistryError) else str(exc)
            print(f"interlink: {message}", file=sys.stderr)
            return 1 if isinstance(exc, RegistryError) and exc.status == 404 else 2


async def _read(args: argparse.Namespace, agents: RemoteAgents) -> int:
    if args.verb == "show":
        print(json.dumps(describe(await agents.get(args.name)), indent=2, sort_keys=True))
        return 0
    for row in await agents.all():
        state = "enabled" if row.enabled else "disabled"
        where = row.settings.get("card_url") or "(inline card)"
        access = "public" if row.settings.get("public") else "protected"
        print(f"{row.name:24} {state:8} {access:9} {row.source:9} {where}")
    return 0
