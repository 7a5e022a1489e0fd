"""`interlink agents ...` and `interlink keys rotate`: manage registrations and signing keys in the
gateway's database (the one named by `identity.database_url`), also while the gateway runs: a
running gateway re-reads keys and revocations every few seconds and agents on every token request."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from gateway.registry import NewAgent, Registry, RegistryError, describe
from gateway.settings import GatewaySettings, load_settings
from gateway.store import Store


def add_parsers(sub: Any) -> None:
    """The `agents` and `keys` command groups."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration (names the database)")
    agents = sub.add_parser("agents", help="register, list, show, disable agents; rotate their secrets")
    verbs = agents.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser(
        "add", parents=[config], help="register an agent (prints its development secret once)"
    )
    add.add_argument("client_id")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--owner", required=True, help="the accountable person or team")
    add.add_argument("--tenant")
    add.add_argument("--group", action="append", default=[], metavar="GROUP", help="policy group; repeatable")
    add.add_argument(
        "--audience",
        action="append",
        required=True,
        metavar="RESOURCE",
        help="mcp/<virtual server>, a2a/<agent> or a2a (the aggregate endpoint); repeatable",
    )
    add.add_argument("--scope", action="append", required=True, help="repeatable")
    add.add_argument(
        "--jwks", type=Path, metavar="FILE", help="public JWK Set: private_key_jwt instead of a secret"
    )
    add.add_argument("--expires-at", type=datetime.fromisoformat, metavar="ISO-8601")
    verbs.add_parser("list", parents=[config], help="one line per agent")
    for verb, text in (
        ("show", "one agent in full (never its secret)"),
        ("disable", "refuse its token requests and revoke its live tokens"),
        ("enable", "allow it again"),
        ("rotate-secret", "issue a new development secret (printed once); the old one stops working"),
    ):
        verbs.add_parser(verb, parents=[config], help=text).add_argument("client_id")
    keys = sub.add_parser("keys", help="signing keys: `keys rotate` publishes the next key before use")
    keys.add_subparsers(dest="verb", metavar="VERB", required=True).add_parser(
        "rotate", parents=[config], help="publish a new signing key now; it signs after one token lifetime"
    )


def run(args: argparse.Namespace, config: Path | None) -> int:
    settings = load_settings(config) if config is not None else GatewaySettings()
    return anyio.run(_run, args, settings)


async def _run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    async with Store.open(settings.identity.database_url) as store:
        registry = Registry(store, settings)
        try:
            if args.command == "keys":
                key, retired = await registry.rotate_keys()
                for old in retired:
                    print(f"retired key {old.kid}")
                when = datetime.fromtimestamp(key.active_from).isoformat()
                print(f"published key {key.kid}; it signs from {when}")
                return 0
            return await _agents(args, registry)
        except RegistryError as exc:
            print(f"interlink: {exc.message}")
            return 1 if exc.status == 404 else 2


async def _agents(args: argparse.Namespace, registry: Registry) -> int:
    if args.verb == "list":
        for each in await registry.all():
            state = "enabled" if each.usable(time.time()) else "disabled"
            scopes = " ".join(each.scopes)
            print(f"{each.client_id:24} {state:8} {each.auth_method:15} {each.owner:20} {scopes}")
    elif args.verb == "add":
        new = NewAgent(
            client_id=args.client_id,
            name=args.name,
            owner=args.owner,
            tenant=args.tenant,
            groups=args.group,
            audiences=args.audience,
            scopes=args.scope,
            jwks=json.loads(args.jwks.read_text()) if args.jwks else None,
            expires_at=args.expires_at,
        )
        agent, secret = await registry.add(new, source="cli")
        print(f"registered {agent.client_id} for {', '.join(agent.audiences)}", file=sys.stderr)
        if secret:
            print("client secret (development only; shown once, store it now):", file=sys.stderr)
            print(secret)
    elif args.verb == "show":
        print(json.dumps(describe(await registry.get(args.client_id)), indent=2))
    elif args.verb in ("disable", "enable"):
        revoked = await registry.set_enabled(args.client_id, args.verb == "enable", source="cli")
        print(f"{args.client_id}: {args.verb}d" + (f"; {revoked} live token(s) revoked" if revoked else ""))
    else:  # rotate-secret
        secret = await registry.rotate_secret(args.client_id, source="cli")
        print(f"new secret for {args.client_id} (shown once, store it now):\n{secret}")
    return 0
