"""The `interlink` command: serve the gateway, or check a configuration without serving."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from gateway import __version__
from gateway.settings import ConfigError, GatewaySettings, OpenApiUpstream, load_settings

DEFAULT_CONFIG = Path("interlink.yaml")

EPILOG = textwrap.dedent(
    """\
    examples:
      interlink serve                          built-in demo on http://127.0.0.1:8080/mcp/demo
      interlink serve --config interlink.yaml  your upstreams and virtual servers
      interlink check --config interlink.yaml  validate a config (exit 0 = good, 2 = problems)
      interlink agents add my-agent --name "My agent" --owner me --audience mcp/secure --scope mcp
                                               register an agent; prints its development secret once
      interlink agents list | show ID | disable ID | rotate-secret ID
      interlink keys rotate                    publish the next signing key (used after one token lifetime)
      interlink policy explain --agent A --action tools/call --resource mcp:crm/x   ALLOW/DENY and why
      interlink policy test cases.yaml         check expected decisions (exit 0 = all pass), e.g. in CI
      interlink approvals list | show ID | approve ID --note "ok" | deny ID
                                               decide calls the policy holds for a human
      interlink tools list | approve UPSTREAM [TOOL...] [--all]
                                               pin tool definitions; a changed tool is hidden until approved
      interlink audit tail -f | query --agent A --decision deny | verify | export -o trail.jsonl
                                               read the audit trail; verify exits 1 on any tampering

    configuration:
      A YAML file (see examples/*.yaml); INTERLINK_* environment variables override it,
      with nested keys joined by "__", e.g. INTERLINK_LISTEN__PORT=9000.
      Without --config, ./interlink.yaml is used if present, otherwise the built-in demo.

    endpoints once serving:
      /mcp/<virtual>   MCP (streamable HTTP, protocol 2026-07-28 and 2025-11-25)
      /healthz         liveness       /readyz   every upstream's state
    """
)


def demo_settings() -> GatewaySettings:
    """The built-in demo: the in-process directory and ticket desk, served as virtual server `demo`."""
    return GatewaySettings.model_validate(
        {
            "upstreams": [{"name": "demo", "transport": "builtin"}],
            "virtual_servers": [{"name": "demo", "upstreams": ["demo"], "public": True}],
            "identity": {"database_url": "sqlite+aiosqlite:///:memory:"},
            "audit": {"database_url": "sqlite+aiosqlite:///:memory:"},
        }
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interlink",
        description="Interlink: a gateway that federates MCP servers (and, soon, A2A agents) behind "
        "scoped identities, least-privilege policy and an audit trail.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"interlink {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the gateway (the built-in demo when no config is found)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="YAML configuration file")
    serve.add_argument("--host", help="listen address (overrides listen.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides listen.port; 0 picks a free one)")
    check = sub.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("--config", type=Path, metavar="FILE", required=True, help="YAML configuration file")
    from gateway.admin import add_parsers

    add_parsers(sub)
    from gateway.policy_cmd import add_parsers as add_policy_parsers

    add_policy_parsers(sub)
    from gateway.audit_cmd import add_parsers as add_audit_parsers

    add_audit_parsers(sub)
    from gateway.approvals_cmd import add_parsers as add_approval_parsers

    add_approval_parsers(sub)
    from gateway.tools_cmd import add_parsers as add_tools_parsers

    add_tools_parsers(sub)
    from gateway.a2a_remote_cmd import add_parsers as add_remote_parsers

    add_remote_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "policy":
            from gateway.policy_cmd import run as run_policy

            return run_policy(args, args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
        if args.command == "approvals":
            from gateway.approvals_cmd import run as run_approvals

            return run_approvals(args, args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
        if args.command == "tools":
            from gateway.tools_cmd import run as run_tools

            return run_tools(args, args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
        if args.command == "audit":
            from gateway.audit_cmd import run as run_audit

            return run_audit(args, args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
        if args.command == "agents-remote":
            from gateway.a2a_remote_cmd import run as run_remote

            return run_remote(args, args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
        if args.command in ("agents", "keys"):
            from gateway.admin import run

            return run(args, args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))
        return _serve(args.config, args.host, args.port)
    except ConfigError as exc:
        print(f"interlink: configuration error\n{exc}", file=sys.stderr)
        return 2


def _load(config: Path | None) -> tuple[GatewaySettings, str]:
    if config is not None:
        return load_settings(config), str(config)
    if DEFAULT_CONFIG.is_file():
        return load_settings(DEFAULT_CONFIG), str(DEFAULT_CONFIG)
    return demo_settings(), "built-in demo"


def _check(config: Path) -> int:
    from gateway.auth import Identity
    from gateway.upstreams import build_spec, resolve_values

    settings = load_settings(config)
    identity = Identity(settings)
    for upstream in settings.mcp_upstreams:
        build_spec(upstream, identity.upstream_tokens)  # resolves every secret, so a missing one fails here
    for rest in settings.upstreams:
        if isinstance(rest, OpenApiUpstream):
            from gateway.openapi_upstream import check_openapi

            print(f"  {check_openapi(rest, config.parent)}")
    for agent in settings.identity.agents:
        if agent.secret is not None:
            resolve_values({"secret": agent.secret}, f"identity.agents.{agent.client_id}")
    print(
        f"{config}: ok ({len(settings.upstreams)} upstream(s), "
        f"{len(settings.virtual_servers)} virtual server(s): "
        + ", ".join(f"/mcp/{v.name}" for v in settings.virtual_servers)
        + ")"
    )
    return 0


def _serve(config: Path | None, host: str | None, port: int | None) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    settings, source = _load(config)
    path = config if config is not None else (DEFAULT_CONFIG if source == str(DEFAULT_CONFIG) else None)
    listen = settings.listen.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    settings = settings.model_copy(update={"listen": listen})
    configure_logging(settings.logging)
    app = create_app(settings, config_path=path)
    base = f"http://{listen.host}:{listen.port}"
    print(f"interlink {__version__}: configuration from {source}", file=sys.stderr)
    for v in settings.virtual_servers:
        print(f"  MCP  {base}/mcp/{v.name}   upstreams: {', '.join(v.upstreams)}", file=sys.stderr)
    print(f"  health {base}/healthz   readiness {base}/readyz", file=sys.stderr)
    uvicorn.run(app, host=listen.host, port=listen.port, log_level=settings.logging.level, access_log=False)
    return 0
