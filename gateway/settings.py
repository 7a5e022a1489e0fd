"""The one configuration model of the gateway, loaded from `interlink.yaml` and the environment.

Owns validation and precise error messages for the config; imports nothing from the rest of the gateway.
Sources, highest priority first: constructor keywords, `INTERLINK_*` environment variables (nested keys
with `__`, e.g. `INTERLINK_LISTEN__PORT=9000`), then the YAML file. Unknown keys are errors, so a typo
fails at start-up instead of being silently ignored.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from identity.policy import RESOURCE, Policy

ENV_PREFIX: Final = "INTERLINK_"
"""Environment variables with this prefix override the file (nested keys joined by `__`)."""

NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]*$"
"""Upstream and virtual-server names: lowercase, digits, `-`, `_`; never `__` (the namespace separator)."""


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and what was expected."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """A secret read at start-up from exactly one place; the value never appears in a repr or a log."""

    env: str | None = None
    file: Path | None = None
    value: SecretStr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'env', 'file' or 'value'")
        return self

    def resolve(self, environ: dict[str, str] | None = None) -> str:
        """Read the secret now; raises ConfigError naming the variable or file, never the value."""
        if self.value is not None:
            return self.value.get_secret_value()
        if self.env is not None:
            found = (environ if environ is not None else dict(os.environ)).get(self.env)
            if found is None:
                raise ConfigError(f"environment variable {self.env} is not set")
            return found
        assert self.file is not None
        try:
            return self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from None


class ListenSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class LimitSettings(_Model):
    max_body_bytes: int = Field(1_048_576, gt=0, le=64 * 1_048_576)
    """Largest accepted request body on any MCP endpoint; larger bodies get HTTP 413."""


def _no_separator(name: str) -> str:
    if "__" in name:
        raise ValueError("must not contain '__' (it separates upstream and tool names)")
    return name


Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=48), AfterValidator(_no_separator)]


class _UpstreamBase(_Model):
    name: Name
    call_timeout_s: float = Field(30.0, gt=0, le=3600)
    """How long one forwarded request may take before the caller gets `upstream_timeout`."""
    connect_timeout_s: float = Field(10.0, gt=0, le=600)
    """How long starting (stdio) or first contact (http) may take."""
    health_interval_s: float = Field(15.0, gt=0, le=3600)
    """How often a ready upstream is probed (`server/discover`, or `ping` on the handshake era)."""
    protocol: Literal["auto", "legacy"] = "auto"
    """`auto` negotiates 2026-07-28 and falls back to the 2025-11-25 handshake; `legacy` always handshakes."""
    tool_pinning: bool = False
    """Serve only tools whose definition (name, title, description, schemas, annotations) was approved
    with `interlink tools approve`; a changed definition is hidden and its calls refused until
    re-approved (`gateway/pins.py`). Off by default; turn it on for every upstream you do not control."""
    trust_new_tools: bool = False
    """With `tool_pinning`: pin a tool the first time it is seen instead of hiding it until approved
    (trust on first use). Changes to a pinned tool still need approval."""


class StdioUpstream(_UpstreamBase):
    """An MCP server the gateway runs as a child process and speaks to over stdin/stdout."""

    transport: Literal["stdio"]
    command: str
    args: list[str] = []
    env: dict[str, str | SecretRef] = {}
    """Extra environment for the child (it also inherits PATH and HOME only, never our secrets)."""
    cwd: Path | None = None
    start: Literal["lazy", "eager"] = "lazy"
    """`eager` starts the process with the gateway; `lazy` on the first request that needs it."""
    restart_backoff_s: float = Field(0.5, gt=0, le=60)
    """First delay before restarting a dead process; doubles per failure up to `restart_backoff_max_s`."""
    restart_backoff_max_s: float = Field(30.0, gt=0, le=3600)


class OAuthClientCredentialsAuth(_Model):
    """Interlink obtains its own token from the upstream's authorization server (RFC 6749 §4.4)."""

    kind: Literal["oauth_client_credentials"]
    token_url: str
    client_id: str
    client_secret: SecretRef
    scope: str | None = None
    resource: str | None = None
    """RFC 8707 resource to ask for; by default the upstream's URL."""


class InterlinkTokenAuth(_Model):
    """Interlink mints a token for the upstream (which trusts Interlink's JWKS): audience = the
    upstream's URL, subject = the gateway itself."""

    kind: Literal["interlink"]
    scopes: list[str] = []
    audience: str | None = None
    """By default the upstream's URL."""


UpstreamAuth = Annotated[OAuthClientCredentialsAuth | InterlinkTokenAuth, Field(discriminator="kind")]


class HttpUpstream(_UpstreamBase):
    """An MCP server reached over streamable HTTP."""

    transport: Literal["http"]
    url: str
    headers: dict[str, str | SecretRef] = {}
    """Headers sent on every request; use `{env: NAME}` or `{file: PATH}` for credentials."""
    auth: UpstreamAuth | None = None
    """How Interlink authenticates to this upstream beyond static headers. Never the caller's token."""
    start: Literal["lazy", "eager"] = "eager"
    restart_backoff_s: float = Field(0.5, gt=0, le=60)
    restart_backoff_max_s: float = Field(30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("must be an http:// or https:// URL")
        return url


class BuiltinUpstream(_UpstreamBase):
    """A server shipped inside Interlink (today: `demo`, the example enterprise directory and ticket desk)."""

    transport: Literal["builtin"]
    server: Literal["demo"] = "demo"
    start: Literal["lazy", "eager"] = "eager"
    restart_backoff_s: float = Field(0.5, gt=0, le=60)
    restart_backoff_max_s: float = Field(30.0, gt=0, le=3600)


class ApiKeyAuth(_Model):
    """An API key Interlink sends to a REST upstream in a header or a query parameter."""

    kind: Literal["api_key"]
    name: str = Field(min_length=1)
    """The header or query parameter (`X-API-Key`, `api_key`)."""
    location: Literal["header", "query"] = "header"
    value: SecretRef


class BearerTokenAuth(_Model):
    """A static bearer token Interlink sends to a REST upstream."""

    kind: Literal["bearer"]
    token: SecretRef


OpenApiAuth = Annotated[
    ApiKeyAuth | BearerTokenAuth | OAuthClientCredentialsAuth, Field(discriminator="kind")
]


class OpenApiUpstream(_UpstreamBase):
    """A REST system whose OpenAPI 3.0/3.1 operations are served as MCP tools (adapters/openapi)."""

    transport: Literal["openapi"]
    spec: str
    """The OpenAPI document (JSON or YAML): a file path (relative to the configuration file) or an
    http(s) URL, fetched at start as a hostile URL (public https only unless `allow_private_network`)."""
    base_url: str
    """Where the operations are called (the document's `servers` are not trusted)."""
    headers: dict[str, str | SecretRef] = {}
    auth: OpenApiAuth | None = None
    """Interlink's credential for the REST system, injected on every call. Never the caller's token."""
    include_tags: list[str] = []
    """Only operations with one of these tags (globs); empty: all."""
    exclude_tags: list[str] = []
    include_operations: list[str] = []
    """Only these operation ids (globs); empty: all. Exclusions win over inclusions."""
    exclude_operations: list[str] = []
    allow_private_network: bool = False
    """Allow an http or private-address URL for `spec` (development only)."""
    max_response_bytes: int = Field(4 * 1_048_576, gt=0, le=64 * 1_048_576)
    start: Literal["lazy", "eager"] = "eager"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")


class A2AToolsUpstream(_UpstreamBase):
    """A downstream A2A agent (one of `a2a_agents`) whose skills are served as MCP tools
    (adapters/bridge): each tool call sends one A2A message, governed as `SendMessage` too."""

    transport: Literal["a2a"]
    agent: str
    """The `a2a_agents` entry to call."""
    skills: list[str] = ["*"]
    """Glob patterns over the card's skill ids: which skills become tools."""


UpstreamSettings = Annotated[
    StdioUpstream | HttpUpstream | BuiltinUpstream | OpenApiUpstream | A2AToolsUpstream,
    Field(discriminator="transport"),
]

McpUpstream = StdioUpstream | HttpUpstream | BuiltinUpstream
"""Upstreams that are MCP servers (the pool's); the others are protocol bridges (tool providers)."""


class RemoteAgentSettings(_Model):
    """A downstream A2A agent, proxied at `/a2a/<name>` (see gateway/a2a_face.py)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    card_url: str | None = None
    """Where its agent card is fetched (hostile-URL rules: https and public addresses only, unless
    `allow_private_network`; no redirects; 256 KiB; 5 s). Its interfaces must be on the same origin."""
    card: dict[str, Any] | None = None
    """Or the card inline (A2A 1.0 JSON)."""
    allow_private_network: bool = False
    """Allow http and private/loopback addresses for the card and the agent (development only)."""
    card_jwks: dict[str, Any] | None = None
    """Public keys (a JWK Set) the card must be signed with (A2A card `signatures`); a card without a
    valid signature by one of them is refused. A signature's `jku` is never followed."""
    card_signature_algorithms: list[str] = ["ES256", "ES384", "EdDSA", "RS256", "PS256"]
    headers: dict[str, str | SecretRef] = {}
    """Headers sent to the agent on every request (API keys from `{env: NAME}` or `{file: PATH}`)."""
    auth: UpstreamAuth | None = None
    """How Interlink authenticates to the agent; `kind: interlink` mints a token per call whose
    subject is the caller's and whose `act` names Interlink. Never the caller's token."""
    timeout_s: float = Field(120.0, gt=0, le=3600)
    """Longest a blocking call (or a silence in a stream) may take."""
    max_concurrency: int = Field(32, ge=1, le=10_000)
    public: bool = False
    required_scopes: list[str] = ["a2a"]
    card_refresh_s: float = Field(300.0, ge=5)
    circuit_failures: int = Field(5, ge=1)
    """Consecutive failures that open the circuit: calls fail at once (`/readyz`: circuit_open)."""
    circuit_cooldown_s: float = Field(30.0, gt=0)
    """How long the circuit stays open before one trial call is let through."""
    allow_private_webhooks: bool = False
    """Accept http and private/loopback push-notification (webhook) URLs from this agent's callers
    (development only); otherwise https and public addresses only, re-checked on every delivery."""

    @model_validator(mode="after")
    def _one_card(self) -> RemoteAgentSettings:
        if self.name in ("router", "rest"):
            raise ValueError(f"the name {self.name!r} is reserved (the aggregate endpoint's own)")
        if (self.card_url is None) == (self.card is None):
            raise ValueError("give exactly one of card_url and card")
        return self


class PublishedAgentSettings(_Model):
    """A virtual MCP server published as an A2A agent at `/a2a/<name>`: one skill per tool, its card
    generated from the tool definitions; each message is governed as `SendMessage` on
    `a2a:<name>/<tool>` and then as `tools/call` on the virtual server (gateway/a2a_publish.py)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    virtual_server: Name
    tools: list[str] = ["*"]
    """Glob patterns over the tools' exposed names: which become skills."""
    description: str | None = None
    """The card's description; by default one naming the virtual server."""
    public: bool = False
    required_scopes: list[str] = ["a2a"]

    @model_validator(mode="after")
    def _not_router(self) -> PublishedAgentSettings:
        if self.name in ("router", "rest"):
            raise ValueError(f"the name {self.name!r} is reserved (the aggregate endpoint's own)")
        return self


class A2ARouteSettings(_Model):
    """A routing rule of the aggregate endpoint `/a2a`: messages whose skill (and, when given, tags
    of that skill and the caller's tenant) match go to `agents`, tried in order."""

    skills: list[str] = ["*"]
    """Glob patterns over the skill id the message names (`metadata.skill`)."""
    tenants: list[str] = []
    agents: list[str] = Field(min_length=1)


class ToolFilter(_Model):
    """Glob patterns over `upstream/tool` (the name before namespacing); exclude wins over include."""

    include: list[str] = ["*"]
    exclude: list[str] = []


class VirtualServerSettings(_Model):
    """A named selection of upstream capabilities, served at `/mcp/<name>`."""

    name: Name
    upstreams: list[Name] = Field(min_length=1)
    tools: ToolFilter = ToolFilter()
    namespacing: Literal["prefix", "none"] = "prefix"
    """`prefix`: tools and prompts are exposed as `<upstream>__<name>`; `none`: names pass unchanged and
    on a clash the upstream listed first wins (the others' copies are hidden and logged)."""
    required_scopes: list[str] = ["mcp"]
    """Scopes a token needs to use this virtual server at all (403 insufficient_scope otherwise);
    finer decisions per tool belong to the policy."""
    public: bool = False
    """Reachable without a token. Off by default: every other virtual server is an OAuth protected
    resource that needs a token issued for exactly it (the built-in demo is public)."""


class AgentSettings(_Model):
    """An agent registration declared in the config (the database keeps run-time ones too)."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    """The accountable person or team."""
    tenant: str | None = None
    groups: list[str] = []
    """Policy groups it belongs to (`principals.groups` in rules)."""
    secret: SecretRef | None = None
    """`client_secret` authentication: for development only; stored hashed (scrypt)."""
    jwks: dict[str, Any] | None = None
    """`private_key_jwt` authentication: the agent's public keys (RFC 7517 JWK Set)."""
    audiences: list[str] = Field(min_length=1)
    """What it may obtain tokens for: `mcp/<virtual server>`."""
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None
    enabled: bool = True
    may_act_for: list[str] = []
    """Client ids whose tokens this agent may exchange (RFC 8693) to act on their behalf."""

    @model_validator(mode="after")
    def _one_method(self) -> AgentSettings:
        if (self.secret is None) == (self.jwks is None):
            raise ValueError("give exactly one of 'secret' (client_secret) or 'jwks' (private_key_jwt)")
        return self


class TrustedIssuerSettings(_Model):
    """An external issuer (an enterprise IdP) whose access tokens are accepted like Interlink's own:
    same signature, issuer, exact-audience, time, lifetime and revocation checks."""

    issuer: str = Field(min_length=1)
    """Compared exactly with the token's `iss`."""
    jwks_url: str
    """Fetched at start and every `jwks_refresh_s`, as a hostile URL: https, public addresses only."""
    algorithms: list[Literal["RS256", "PS256", "ES256", "EdDSA"]] = ["RS256", "ES256"]
    require_at_jwt: bool = True
    """Insist on `typ: at+jwt` (RFC 9068); turn off only for IdPs that label access tokens `JWT`."""
    client_id_claim: Literal["client_id", "azp", "appid"] = "client_id"
    max_token_ttl_s: int = Field(3600, ge=60, le=86400)
    jwks_refresh_s: int = Field(300, ge=10, le=86400)
    allow_private_network: bool = False
    """Allow http and private addresses for the JWKS URL (development only)."""


class IdentitySettings(_Model):
    """Interlink's authorization server and the resource servers on every face."""

    public_url: str | None = None
    """Where callers reach the gateway (`https://gateway.example.com`): the token issuer and the base
    of every canonical resource URI. Default: `http://<listen.host>:<listen.port>`."""
    token_ttl_s: int = Field(300, ge=30, le=3600)
    """Access-token lifetime (5 minutes by default, 1 hour at most); no refresh tokens."""
    database_url: str = "sqlite+aiosqlite:///interlink-data/interlink.db"
    """Registrations, signing keys and revocations; `postgresql+asyncpg://...` to share between replicas."""
    agents: list[AgentSettings] = []
    trusted_issuers: list[TrustedIssuerSettings] = []
    admin_token: SecretRef | None = None
    """Enables the admin HTTP API under /admin for callers presenting it as a Bearer token."""

    @field_validator("public_url")
    @classmethod
    def _canonical(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        host, slash, path = rest.partition("/")
        if scheme.lower() not in ("http", "https") or not sep or not host or "#" in value or "?" in value:
            raise ValueError("must be an absolute http(s) URL without query or fragment")
        return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


class AuditSettings(_Model):
    """The tamper-evident audit trail (`gateway/audit.py`): one record per decision, hash-chained,
    with checkpoints signed by a key kept apart from the token-signing keys."""

    database_url: str = "sqlite+aiosqlite:///interlink-data/audit.db"
    """Its own store: a SQLite file by default, `postgresql+asyncpg://...` to keep it off the box."""
    log_id: str = Field("main", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """This process's log; replicas sharing one database each need their own id."""
    checkpoint_key_file: Path | None = None
    """Ed25519 key (PEM) that signs checkpoints, created on first start with mode 0600. Default:
    `audit-checkpoint-key.pem` beside the SQLite file (or in `interlink-data/`); a throw-away key
    for an in-memory store."""
    checkpoint_every: int = Field(1000, ge=1)
    checkpoint_interval_s: float = Field(60.0, gt=0)
    argument_fields: dict[str, list[str]] = {}
    """Argument fields copied into records, by resource (`mcp:<server>/<tool>`, globs allowed), as
    dotted paths. Everything else is kept only as a SHA-256 digest: list only non-secret fields."""

    @field_validator("argument_fields")
    @classmethod
    def _resources(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for pattern in value:
            if not RESOURCE.match(pattern):
                raise ValueError(f"{pattern!r}: expected mcp:<server>/<tool> or a2a:<agent>/<skill>")
        return value

    @property
    def in_memory(self) -> bool:
        return self.database_url.startswith("sqlite") and sa_database(self.database_url) in (
            None,
            "",
            ":memory:",
        )

    def key_file(self) -> Path | None:
        """Where the checkpoint key lives; None for an in-memory store (a throw-away key)."""
        if self.checkpoint_key_file is not None:
            return self.checkpoint_key_file
        if self.in_memory:
            return None
        if self.database_url.startswith("sqlite"):
            return Path(sa_database(self.database_url) or ".").parent / "audit-checkpoint-key.pem"
        return Path("interlink-data") / "audit-checkpoint-key.pem"


def sa_database(url: str) -> str | None:
    from sqlalchemy import make_url

    return make_url(url).database


class A2APushSettings(_Model):
    """Push notifications of the A2A face: callers' webhook configs live in the identity database,
    their token and credentials encrypted (Fernet) with a key kept apart from that database."""

    key_file: Path | None = None
    """The Fernet key, created on first start with mode 0600. Default: `a2a-push-key` beside the
    identity SQLite file (or in `interlink-data/`); a throw-away key for an in-memory database.
    Replicas sharing one database must share this file."""
    allow_private_webhooks: bool = False
    """Accept http and private/loopback webhook URLs on the aggregate endpoint `/a2a` (development
    only; each proxied agent has its own `allow_private_webhooks`)."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Longest one webhook POST may take (gateway/webhooks.py)."""
    attempts: int = Field(default=3, ge=1, le=5)
    """Tries per update and webhook when it fails (no connection, timeout, HTTP 5xx or 429)."""
    workers: int = Field(default=8, ge=1, le=256)
    """Updates being delivered at once (tasks take turns; one update per task at a time, in order)."""
    max_queued: int = Field(default=10_000, ge=1)
    """Updates waiting for delivery; beyond that progress updates are superseded or dropped
    (logged), terminal states never (gateway/webhooks.py)."""
    max_queued_per_task: int = Field(default=16, ge=1)
    """Updates of one task waiting for delivery; beyond that its waiting progress updates give
    way to the latest (terminal and interrupted states are kept)."""
    drain_s: float = Field(default=5.0, ge=0, le=60)
    """On shutdown, longest wait for queued updates to be delivered before the rest is dropped."""

    def key_path(self, database_url: str) -> Path | None:
        """Where the key lives; None for an in-memory identity database (a throw-away key)."""
        if self.key_file is not None:
            return self.key_file
        if database_url.startswith("sqlite"):
            database = sa_database(database_url)
            if database in (None, "", ":memory:"):
                return None
            return Path(database or ".").parent / "a2a-push-key"
        return Path("interlink-data") / "a2a-push-key"


class LoggingSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class GatewaySettings(BaseSettings):
    """Everything the gateway needs to start; see `examples/*.yaml` for annotated files."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid", yaml_file=None
    )

    listen: ListenSettings = Field(default_factory=ListenSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    upstreams: list[UpstreamSettings] = []
    virtual_servers: list[VirtualServerSettings] = []
    a2a_agents: list[RemoteAgentSettings] = []
    """Downstream A2A agents, each proxied at `/a2a/<name>`."""
    a2a_published: list[PublishedAgentSettings] = []
    """Virtual MCP servers published as A2A agents at `/a2a/<name>` (names shared with `a2a_agents`)."""
    a2a_routes: list[A2ARouteSettings] = []
    """Routing for the aggregate endpoint `/a2a` (first matching rule wins; without one, the agents
    whose card offers the skill, in the order above)."""
    a2a_push: A2APushSettings = Field(default_factory=A2APushSettings)
    a2a_runtime_secret_env_prefix: str = Field("INTERLINK_A2A_SECRET_", min_length=1)
    """Agents registered at run time (gateway/a2a_remote.py) may reference only environment
    variables whose name starts with this (the admin token must not read the gateway's own)."""
    a2a_runtime_secret_dir: Path | None = None
    """And only secret files under this directory; unset: no file reference is accepted."""
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    policy: Policy | None = None
    """Least-privilege rules for every protected virtual server (deny by default when present)."""
    policy_file: Path | None = None
    """A YAML file holding the policy (`version`, `rules`) instead of the `policy` key; relative to
    the configuration file. Watched and reloaded without a restart (see gateway/policies.py)."""
    policy_reload_interval_s: float = Field(2.0, ge=0)
    """How often the policy's file is checked for changes; 0: only on SIGHUP or the admin API."""
    rate_limit_store: str | None = None
    """`redis://host:6379/0` to share the policy's rate-limit buckets between replicas; default:
    counted in each process."""
    approval_ttl_s: int = Field(3600, ge=60, le=7 * 86_400)
    """How long a held call waits for a human, and an approval stays usable once given."""
    audit: AuditSettings = Field(default_factory=AuditSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @model_validator(mode="after")
    def _references_resolve(self) -> GatewaySettings:
        if self.policy is not None and self.policy_file is not None:
            raise ValueError("give either policy or policy_file, not both")
        names = _unique([u.name for u in self.upstreams], "upstream")
        _unique([v.name for v in self.virtual_servers], "virtual server")
        for v in self.virtual_servers:
            unknown = [u for u in v.upstreams if u not in names]
            if unknown:
                raise ValueError(f"virtual server {v.name!r} names unknown upstream(s): {', '.join(unknown)}")
        downstream = [a.name for a in self.a2a_agents]
        anames = _unique([*downstream, *(p.name for p in self.a2a_published)], "a2a agent")
        self._bridges_resolve(downstream)
        for route in self.a2a_routes:
            unknown = [n for n in route.agents if n not in downstream]
            if unknown:
                raise ValueError(f"a2a_routes names unknown agent(s): {', '.join(unknown)}")
        resources = {f"mcp/{v.name}" for v in self.virtual_servers} | {f"a2a/{n}" for n in anames}
        if downstream:
            resources.add("a2a")
        for agent in self.identity.agents:
            unknown = [a for a in agent.audiences if a not in resources]
            if unknown:
                raise ValueError(
                    f"agent {agent.client_id!r} names unknown audience(s): {', '.join(unknown)}"
                    f" (expected mcp/<virtual server>, a2a/<agent> or a2a)"
                )
        return self

    def _bridges_resolve(self, downstream: list[str]) -> None:
        vnames = {v.name for v in self.virtual_servers}
        for published in self.a2a_published:
            if published.virtual_server not in vnames:
                raise ValueError(
                    f"a2a_published {published.name!r} names unknown virtual server "
                    f"{published.virtual_server!r}"
                )
        for upstream in self.upstreams:
            if isinstance(upstream, A2AToolsUpstream) and upstream.agent not in downstream:
                raise ValueError(f"upstream {upstream.name!r} names unknown a2a agent {upstream.agent!r}")
        # A public virtual server has no caller identity: bridging a protected agent into it would
        # let anonymous callers reach what needs a token on the agent's own endpoint.
        protected = {a.name for a in self.a2a_agents if not a.public}
        bridges = {u.name: u.agent for u in self.upstreams if isinstance(u, A2AToolsUpstream)}
        for v in self.virtual_servers:
            exposed = [bridges[u] for u in v.upstreams if u in bridges and bridges[u] in protected]
            if v.public and exposed:
                raise ValueError(
                    f"public virtual server {v.name!r} would expose protected a2a agent(s) "
                    f"{', '.join(exposed)} to anonymous callers; make the virtual server protected"
                )

    @property
    def mcp_upstreams(self) -> list[McpUpstream]:
        """The upstreams that are MCP servers (the others are bridges: gateway/bridges.py)."""
        return [u for u in self.upstreams if isinstance(u, StdioUpstream | HttpUpstream | BuiltinUpstream)]

    @property
    def public_url(self) -> str:
        """The issuer and base of every canonical resource URI."""
        return self.identity.public_url or f"http://{self.listen.host}:{self.listen.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def _unique(names: list[str], what: str) -> list[str]:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
    return names


def load_settings(path: Path | None) -> GatewaySettings:
    """Read `path` (YAML) plus `INTERLINK_*` env vars; ConfigError names file, key path and expectation."""
    if path is None:
        return _validated(GatewaySettings, None)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None

    class _FromFile(GatewaySettings):
        model_config = SettingsConfigDict(yaml_file=path)

    settings = _validated(_FromFile, path)
    if settings.policy_file is not None and not settings.policy_file.is_absolute():
        settings = settings.model_copy(update={"policy_file": path.parent / settings.policy_file})
    if settings.policy_file is not None:
        from gateway.policies import load_policy_file

        load_policy_file(settings.policy_file)  # a broken policy file fails at start-up, precisely
    return settings


def _validated(cls: type[GatewaySettings], path: Path | None) -> GatewaySettings:
    try:
        return cls()
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, path)) from None


def describe_errors(exc: ValidationError, path: Path | None) -> str:
    """One line per problem: `file: key.path: what was expected (got X)`; secrets are never echoed."""
    source = str(path) if path is not None else "configuration"
    lines = [
        f"{source}: {exc.error_count()} problem(s) (environment variables {ENV_PREFIX}* override the file)"
    ]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or "(top level)"
        got = _safe_input(err.get("input"), loc)
        lines.append(f"  {loc}: {err['msg']}{got}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {
        "stdio",
        "http",
        "builtin",
        "openapi",
        "a2a",
        "api_key",
        "bearer",
        "oauth_client_credentials",
        "interlink",
        "str",
        "SecretRef",
    }


def _safe_input(value: Any, loc: str) -> str:
    if any(word in loc.lower() for word in ("secret", "value", "header", "env", "token", "password")):
        return ""
    if isinstance(value, str | int | float | bool) and len(repr(value)) < 80:
        return f" (got {value!r})"
    return ""
