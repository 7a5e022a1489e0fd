"""Downstream A2A agents registered at run time (`interlink agents-remote`, `/admin/a2a-agents`),
kept in the gateway database (`interlink_a2a_agents`) next to the configured ones (`a2a_agents`).

* **Validation.** A registration is a `RemoteAgentSettings` (every rule of the config applies:
  names, `card_url` xor `card`, reserved names); a name the configuration uses (`a2a_agents`,
  `a2a_published`) is refused. Nothing secret is stored: secrets are `{env: NAME}` or
  `{file: PATH}` references read by the gateway process; a literal `{value: ...}`, a credential
  header (Authorization, Cookie, `*key*`, `*token*`, `*secret*`, ...) given as a plain string,
  and a `card_jwks` holding private key members are refused.
* **Convergence.** The admin API applies a change at once on the replica that served it; every
  replica re-reads the table every `REFRESH_S` seconds (so the CLI, which writes the database
  directly, and other replicas take effect within that). A running agent whose stored settings
  change is reopened with the new ones.
* **Same as configured.** An agent opened at run time gets its `/a2a/<name>` endpoints and card,
  task and push stores, a Governor (protocol a2a) that every policy reload reaches, RFC 9728
  metadata and tokens for `a2a/<name>` (unless public), a place in `/a2a` routing and `/readyz`.
  Removing one: its endpoint answers unknown agent (404); its tasks stay in the database.
* **Operator's limits.** Secret references are limited to `a2a_runtime_secret_env_prefix`* and
  files under `a2a_runtime_secret_dir` (`check_secrets`); inline card interfaces and a `token_url`
  follow the hostile-URL rules (`check_urls`); an Interlink-minted audience cannot be Interlink.
* **Failure.** An agent that cannot be opened here is rolled back entirely and noted in `failures`
  (/readyz); it never stops the other agents or the start.
* **Audit.** Every change is recorded (`admin.a2a_agent.added|removed|enabled|disabled`, with the
  secret-free settings) inside the change's transaction, before it commits: no record, no change.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.a2a_face import CardError, own_audience, parse_card
from gateway.audit import Actor, AuditLog, DecisionInfo, Event, Outcome, Target, digest
from gateway.enforce import Governor
from gateway.fetch import FetchError, check_url
from gateway.policies import PolicyManager
from gateway.registry import Registry, RegistryError
from gateway.settings import (
    ConfigError,
    GatewaySettings,
    InterlinkTokenAuth,
    OAuthClientCredentialsAuth,
    RemoteAgentSettings,
    SecretRef,
)
from gateway.store import A2AAgentRow, Store

if TYPE_CHECKING:
    from gateway.a2a_face import A2AFace
    from gateway.auth import Identity

log = structlog.get_logger(__name__)

REFRESH_S: Final = 5.0
"""How often every replica re-reads the table: a CLI change or another replica's takes effect
within this many seconds."""

CREDENTIAL_HEADER: Final = re.compile(
    r"authorization|cookie|key|token|secret|password|passwd|auth|signature", re.I
)
"""Header names whose value is a credential: only `{env: ...}`/`{file: ...}` references allowed."""

PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


def validate(body: Any, settings: GatewaySettings) -> RemoteAgentSettings:
    """A registration from JSON: the config's rules, no configured name, no literal secret.
    Raises RegistryError (400, `invalid_request`) saying exactly what is wrong."""
    if not isinstance(body, dict):
        raise RegistryError("give the agent's settings as a JSON object", 400, "invalid_request")
    try:
        agent = RemoteAgentSettings.model_validate(body)
    except ValidationError as exc:
        raise RegistryError(_problems(exc), 400, "invalid_request") from None
    configured = {a.name: "a2a_agents" for a in settings.a2a_agents}
    configured |= {p.name: "a2a_published" for p in settings.a2a_published}
    if agent.name in configured:
        where = configured[agent.name]
        raise RegistryError(
            f"the name {agent.name!r} is used by the configuration ({where})", 400, "name_taken"
        )
    for header, value in agent.headers.items():
        if isinstance(value, str) and CREDENTIAL_HEADER.search(header):
            raise RegistryError(_literal(f"headers.{header}"), 400, "literal_secret")
    check_secrets(agent, settings)
    check_audience(agent, settings)
    if agent.card_jwks is not None:
        if not isinstance(agent.card_jwks.get("keys"), list):
            raise RegistryError("card_jwks: give a JWK Set ({keys: [...]})", 400, "invalid_request")
        if _private_member(agent.card_jwks):
            raise RegistryError("card_jwks holds a private key: give public keys only", 400, "literal_secret")
    return agent


def _private_member(value: Any) -> bool:
    """Whether a private JWK member (`d`, `p`, `k`, ...) appears anywhere in `value`."""
    if isinstance(value, dict):
        return bool(PRIVATE_JWK_MEMBERS & value.keys()) or any(_private_member(v) for v in value.values())
    if isinstance(value, list):
        return any(_private_member(v) for v in value)
    return False


def _secret_refs(agent: RemoteAgentSettings) -> list[tuple[str, SecretRef]]:
    refs = [(f"headers.{h}", v) for h, v in agent.headers.items() if isinstance(v, SecretRef)]
    if isinstance(agent.auth, OAuthClientCredentialsAuth):
        refs.append(("auth.client_secret", agent.auth.client_secret))
    return refs


def check_secrets(agent: RemoteAgentSettings, settings: GatewaySettings) -> None:
    """A database-stored agent holds no literal secret, and references only what the operator
    allowed: environment variables named `a2a_runtime_secret_env_prefix`*, files under
    `a2a_runtime_secret_dir` (none when unset), so the admin token cannot make the gateway read
    its own secrets (the audit key, the database password) and send them to an agent.
    RegistryError 400 `literal_secret` / `secret_not_allowed` (names the place, never a value)."""
    prefix, folder = settings.a2a_runtime_secret_env_prefix, settings.a2a_runtime_secret_dir
    for where, ref in _secret_refs(agent):
        if ref.value is not None:
            raise RegistryError(_literal(where), 400, "literal_secret")
        if ref.env is not None and not ref.env.startswith(prefix):
            raise RegistryError(
                f"{where}: only environment variables named {prefix}* may be referenced by agents "
                "registered at run time (a2a_runtime_secret_env_prefix)",
                400,
                "secret_not_allowed",
            )
        if ref.file is not None and not _under(ref.file, folder):
            raise RegistryError(
                f"{where}: secret files of agents registered at run time must be under "
                "a2a_runtime_secret_dir" + ("" if folder else " (not set: no file is allowed)"),
                400,
                "secret_not_allowed",
            )


def _under(path: Path, folder: Path | None) -> bool:
    if folder is None or not path.is_absolute():
        return False
    return path.resolve().is_relative_to(folder.resolve())


def check_audience(agent: RemoteAgentSettings, settings: GatewaySettings) -> None:
    """`auth: {kind: interlink, audience}` must not name Interlink itself (a token signed for
    `<public_url>/mcp/prod` would be good at Interlink)."""
    audience = agent.auth.audience if isinstance(agent.auth, InterlinkTokenAuth) else None
    if audience and own_audience(audience, settings.public_url):
        raise RegistryError(
            "auth.audience: names one of Interlink's own resources (refused)", 400, "invalid_request"
        )


async def check_urls(agent: RemoteAgentSettings) -> None:
    """Every URL Interlink would send to, held to the hostile-URL rules (https, public addresses,
    unless `allow_private_network`): an inline card's interfaces and an OAuth `token_url` (the
    card_url is checked when fetched). RegistryError 400 `url_refused`."""
    urls: list[tuple[str, str]] = []
    if agent.card is not None:
        try:
            card = parse_card(agent.card, origin=None)
        except CardError as exc:
            raise RegistryError(f"card: {exc}", 400, "invalid_request") from None
        urls += [
            (f"card.supportedInterfaces[{i}].url", x.url) for i, x in enumerate(card.supported_interfaces)
        ]
    if isinstance(agent.auth, OAuthClientCredentialsAuth):
        urls.append(("auth.token_url", agent.auth.token_url))
    for where, url in urls:
        try:
            await check_url(url, allow_private=agent.allow_private_network)
        except FetchError as exc:
            raise RegistryError(f"{where}: {exc}", 400, "url_refused") from None


def _literal(where: str) -> str:
    return (
        f"{where}: a secret cannot be stored in the database; give {{env: NAME}} or {{file: PATH}} "
        "(read by the gateway process)"
    )


def stored(agent: RemoteAgentSettings) -> dict[str, Any]:
    """The settings as stored: what was given, JSON (secret references only, see `validate`)."""
    return agent.model_dump(mode="json", exclude_unset=True)


def audited(settings: dict[str, Any]) -> dict[str, Any]:
    """What the audit record keeps of a registration: where Interlink will send requests and
    credentials, how it authenticates, and which secrets it reads (their references' names,
    never a value: none is stored anyway)."""
    auth = settings.get("auth") or {}
    kept: dict[str, Any] = {
        "card_url": settings.get("card_url"),
        "public": bool(settings.get("public", False)),
        "allow_private_network": bool(settings.get("allow_private_network", False)),
        "allow_private_webhooks": bool(settings.get("allow_private_webhooks", False)),
        "auth": auth.get("kind"),
        "token_url": auth.get("token_url"),
        "audience": auth.get("audience"),
    }
    if isinstance(settings.get("card"), dict):  # inline: the URLs it sends to
        interfaces = settings["card"].get("supportedInterfaces") or settings["card"].get(
            "supported_interfaces"
        )
        kept["card_interfaces"] = [i.get("url") for i in interfaces or [] if isinstance(i, dict)]
    refs = {f"headers.{h}": v for h, v in (settings.get("headers") or {}).items() if isinstance(v, dict)}
    if isinstance(auth.get("client_secret"), dict):
        refs["auth.client_secret"] = auth["client_secret"]
    kept["secrets"] = {
        where: {k: str(v) for k, v in ref.items() if k in ("env", "file")} for where, ref in refs.items()
    }
    return {k: v for k, v in kept.items() if v not in (None, [], {})}


def describe(row: A2AAgentRow) -> dict[str, Any]:
    return asdict(row)


class RemoteAgents:
    """The operations, shared by the CLI and the admin API; `live` applies a change at once."""

    def __init__(
        self,
        store: Store,
        settings: GatewaySettings,
        *,
        audit: AuditLog | None,
        via: str,
        live: Callable[[], Awaitable[None]] | None = None,
        who: str | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._audit = audit
        self._via = via
        self._live = live
        self._who = who

    async def all(self) -> list[A2AAgentRow]:
        return await self._store.a2a_agents()

    async def get(self, name: str) -> A2AAgentRow:
        found = next((r for r in await self._store.a2a_agents() if r.name == name), None)
        if found is None:
            raise RegistryError(f"no run-time A2A agent {name!r}", 404, "not_found")
        return found

    async def add(self, body: Any) -> A2AAgentRow:
        agent = validate(body, self._settings)
        await check_urls(agent)
        row = A2AAgentRow(agent.name, stored(agent), int(time.time()), True, self._via)
        if not await self._store.add_a2a_agent(row, before=lambda: self._record("added", row)):
            raise RegistryError(f"a run-time A2A agent {agent.name!r} exists", 409, "name_taken")
        await self._apply()
        return row

    async def remove(self, name: str) -> A2AAgentRow:
        row = await self.get(name)
        if not await self._store.remove_a2a_agent(name, before=lambda: self._record("removed", row)):
            raise RegistryError(f"no run-time A2A agent {name!r}", 404, "not_found")
        await self._apply()
        return row

    async def set_enabled(self, name: str, enabled: bool) -> A2AAgentRow:
        row = await self.get(name)
        changed = A2AAgentRow(row.name, row.settings, row.created_at, enabled, row.source)
        what = "enabled" if enabled else "disabled"
        if not await self._store.set_a2a_agent_enabled(
            name, enabled, before=lambda: self._record(what, changed)
        ):
            raise RegistryError(f"no run-time A2A agent {name!r}", 404, "not_found")
        await self._apply()
        return changed

    async def _apply(self) -> None:
        if self._live is not None:
            await self._live()

    async def _record(self, what: str, row: A2AAgentRow) -> None:
        if self._audit is None:
            return
        card = "card_url" if "card_url" in row.settings else "card"
        await self._audit.append(
            Event(
                event=f"admin.a2a_agent.{what}",
                actor=Actor(person=self._who[:256] if self._who else None),
                target=Target(protocol="admin", server=row.name, method=f"a2a_agents.{what}", name=row.name),
                decision=DecisionInfo(effect="allow", reason="admin"),
                outcome=Outcome(status="ok"),
                args_sha256=digest(row.settings),
                args={"via": self._via, "card": card} | audited(row.settings),
            )
        )


class RemoteAgentSync:
    """Makes the face serve exactly the enabled rows of the table (this replica)."""

    def __init__(
        self,
        face: A2AFace,
        identity: Identity,
        governors: MutableMapping[str, Governor],
        make_governor: Callable[[RemoteAgentSettings], Governor],
        policies: PolicyManager,
        protected: MutableMapping[str, Sequence[str]],
        interval_s: float = REFRESH_S,
        *,
        settings: GatewaySettings,
    ) -> None:
        self._settings = settings
        self._face = face
        self._identity = identity
        self._governors = governors
        self._make_governor = make_governor
        self._policies = policies
        self._protected = protected
        """The RFC 9728 documents served (`identity.routes`), by agent name; `""` is `/a2a`."""
        self._interval_s = interval_s
        self.failures: dict[str, str] = {}
        """Enabled rows that could not be opened here, with why (retried every round; /readyz)."""
        self._opened: dict[str, dict[str, Any]] = {}
        """Agents opened here at run time, with the settings they were opened with."""
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - the table unreadable now: the gateway starts, retried
            log.warning("a2a_remote_refresh_failed", error=type(exc).__name__)
        task = asyncio.create_task(self._forever())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a database hiccup: try again next round
                log.warning("a2a_remote_refresh_failed", error=type(exc).__name__)

    async def refresh(self) -> None:
        async with self._lock:
            rows = await self._identity.store.a2a_agents()
            wanted = {r.name: r.settings for r in rows if r.enabled}
            for name, opened in list(self._opened.items()):
                if wanted.get(name) != opened:
                    try:
                        await self._close(name)
                    except Exception as exc:  # noqa: BLE001 - one agent never stops the others
                        log.warning("a2a_remote_agent_close_failed", agent=name, error=type(exc).__name__)
            for name, settings in wanted.items():
                if name not in self._opened:
                    await self._open(name, settings)
            self._release_aggregate()

    async def _open(self, name: str, raw: dict[str, Any]) -> None:
        """Open one agent, or leave no trace of it (governor, resources, metadata, endpoint) and
        note why in `failures` (shown in /readyz); never raises, so one agent cannot stop the
        others or the gateway's start."""
        try:
            settings = RemoteAgentSettings.model_validate(raw)
        except ValidationError as exc:  # written by another version, or by hand
            self._failed(name, _problems(exc))
            return
        if name in self._face.agents or name in self._face.published:
            self._failed(name, "the name is served already")
            return
        try:
            check_secrets(settings, self._settings)
            check_audience(settings, self._settings)
        except RegistryError as exc:
            self._failed(name, exc.message)
            return
        governor = self._make_governor(settings)
        try:
            self._governors[name] = governor
            self._policies.add_target(governor)
            # identity first: once the endpoint answers, tokens for it can be had
            self._identity.add_resource(f"a2a/{name}")
            self._identity.add_resource("a2a")
            if not settings.public:
                self._protected[name] = list(settings.required_scopes)
            self._protected.setdefault("", ["a2a"])
            await self._face.add_agent(settings)
        except Exception as exc:  # noqa: BLE001 - e.g. an unset env variable, a database hiccup
            problem = str(exc) if isinstance(exc, ConfigError) else type(exc).__name__
            self._identity.remove_resource(f"a2a/{name}")
            self._protected.pop(name, None)
            if self._governors.get(name) is governor:
                del self._governors[name]
            self._policies.remove_target(governor)
            with suppress(Exception):
                await self._face.remove_agent(name)
            self._failed(name, problem)
            return
        self.failures.pop(name, None)
        self._opened[name] = raw
        log.info("a2a_remote_agent_opened", agent=name)

    def _failed(self, name: str, problem: str) -> None:
        self.failures[name] = problem
        log.warning("a2a_remote_agent_unusable", agent=name, problem=problem)

    def _release_aggregate(self) -> None:
        """No downstream agent left (none configured, none run-time): `/a2a`'s resource and RFC
        9728 metadata go too."""
        if self._face.agents:
            return
        self._identity.remove_resource("a2a")
        self._protected.pop("", None)

    async def _close(self, name: str) -> None:
        self._opened.pop(name, None)
        self._identity.remove_resource(f"a2a/{name}")
        self._protected.pop(name, None)
        await self._face.remove_agent(name)
        governor = self._governors.pop(name, None)
        if governor is not None:
            self._policies.remove_target(governor)
        log.info("a2a_remote_agent_closed", agent=name)


Handler = Callable[[Request, Registry], Awaitable[Any]]
Guard = Callable[[Handler, int], Callable[[Request], Awaitable[Response]]]


def remote_routes(guard: Guard, agents: Callable[[Request], RemoteAgents], face: A2AFace) -> list[Route]:
    """`/admin/a2a-agents`: list, register (201), show, remove, enable/disable."""

    def status(name: str) -> dict[str, Any] | None:
        agent = face.agents.get(name)
        return dict(vars(agent.status)) if agent is not None else None

    async def listing(request: Request, reg: Registry) -> Any:
        rows = await agents(request).all()
        return {"a2a_agents": [describe(r) | {"status": status(r.name)} for r in rows]}

    async def add(request: Request, reg: Registry) -> Any:
        try:
            body = await request.json()
        except ValueError:
            raise RegistryError("body must be JSON", 400, "invalid_request") from None
        row = await agents(request).add(body)
        return describe(row) | {"status": status(row.name)}

    async def show(request: Request, reg: Registry) -> Any:
        row = await agents(request).get(request.path_params["name"])
        return describe(row) | {"status": status(row.name)}

    async def remove(request: Request, reg: Registry) -> Any:
        row = await agents(request).remove(request.path_params["name"])
        return {"name": row.name, "removed": True}

    async def toggle(request: Request, reg: Registry) -> Any:
        verb = request.path_params["verb"]
        if verb not in ("enable", "disable"):
            raise RegistryError("unknown operation", 404)
        row = await agents(request).set_enabled(request.path_params["name"], verb == "enable")
        return describe(row) | {"status": status(row.name)}

    return [
        Route("/admin/a2a-agents", guard(listing, 200), methods=["GET"]),
        Route("/admin/a2a-agents", guard(add, 201), methods=["POST"]),
        Route("/admin/a2a-agents/{name}", guard(show, 200), methods=["GET"]),
        Route("/admin/a2a-agents/{name}", guard(remove, 200), methods=["DELETE"]),
        Route("/admin/a2a-agents/{name}/{verb:str}", guard(toggle, 200), methods=["POST"]),
    ]
