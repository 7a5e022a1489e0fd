"""`interlink agents ...` and `interlink keys rotate`: manage registrations and signing keys in the
gateway's database (the one named by `identity.database_url`), also while the gateway runs: a
running gateway re-reads keys and revocations every few seconds and agents on every token request."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from gateway.settings import GatewaySettings, load_settings
from gateway.store import Store
from identity.agents import Agent, hash_secret, new_secret
from identity.keys import KeyRing, generate_key


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
    add.add_argument("--audience", action="append", required=True, metavar="mcp/NAME", help="repeatable")
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
        if args.command == "keys":
            return await _rotate_keys(store, settings)
        return await _agents(args, store, settings)


async def _agents(args: argparse.Namespace, store: Store, settings: GatewaySettings) -> int:
    if args.verb == "list":
        for each in await store.list_agents():
            state = "enabled" if each.usable(time.time()) else "disabled"
            scopes = " ".join(each.scopes)
            print(f"{each.client_id:24} {state:8} {each.auth_method:15} {each.owner:20} {scopes}")
        return 0
    if args.verb == "add":
        return await _add(args, store, settings)
    agent = await store.agent(args.client_id)
    if agent is None:
        print(f"interlink: no agent {args.client_id!r}")
        return 1
    if args.verb == "show":
        shown = {k: v for k, v in agent.__dict__.items() if k != "secret_hash"}
        print(json.dumps(shown, indent=2, default=list))
    elif args.verb in ("disable", "enable"):
        await store.put_agent(_replace(agent, enabled=args.verb == "enable"), source="cli")
        revoked = await store.revoke_agent_tokens(agent.client_id) if args.verb == "disable" else 0
        print(f"{agent.client_id}: {args.verb}d" + (f"; {revoked} live token(s) revoked" if revoked else ""))
    else:  # rotate-secret
        if agent.auth_method != "client_secret":
            print(f"interlink: {agent.client_id} authenticates with private_key_jwt; rotate its keys instead")
            return 1
        secret = new_secret()
        await store.put_agent(_replace(agent, secret_hash=hash_secret(secret)), source="cli")
        print(f"new secret for {agent.client_id} (shown once, store it now):\n{secret}")
    return 0


async def _add(args: argparse.Namespace, store: Store, settings: GatewaySettings) -> int:
    known = {f"mcp/{v.name}" for v in settings.virtual_servers}
    unknown = [a for a in args.audience if a not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        print(f"interlink: unknown audience(s) {', '.join(unknown)}; known: {listed}")
        return 2
    if await store.agent(args.client_id) is not None:
        print(f"interlink: agent {args.client_id!r} exists; use `agents show` or `agents rotate-secret`")
        return 2
    secret = None if args.jwks else new_secret()
    agent = Agent(
        client_id=args.client_id,
        name=args.name,
        owner=args.owner,
        tenant=args.tenant,
        auth_method="private_key_jwt" if args.jwks else "client_secret",
        secret_hash=hash_secret(secret) if secret else None,
        jwks=json.loads(args.jwks.read_text()) if args.jwks else None,
        audiences=tuple(args.audience),
        scopes=tuple(args.scope),
        expires_at=int(args.expires_at.timestamp()) if args.expires_at else None,
    )
    await store.put_agent(agent, source="cli")
    print(f"registered {agent.client_id} for {', '.join(agent.audiences)}", file=sys.stderr)
    if secret:
        print("client secret (development only; shown once, store it now):", file=sys.stderr)
        print(secret)
    return 0


async def _rotate_keys(store: Store, settings: GatewaySettings) -> int:
    now = int(time.time())
    ring = KeyRing(await store.signing_keys())
    for old in ring.retirable(now, settings.identity.token_ttl_s):
        await store.remove_signing_key(old.kid)
        print(f"retired key {old.kid}")
    key = generate_key(now, active_from=now + settings.identity.token_ttl_s)
    await store.add_signing_key(key)
    print(f"published key {key.kid}; it signs from {datetime.fromtimestamp(key.active_from).isoformat()}")
    return 0


def _replace(agent: Agent, **changes: Any) -> Agent:
    return replace(agent, **changes)
