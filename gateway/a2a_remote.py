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
* **Audit.** Every change is recorded (`admin.a2a_agent.added|removed|enabled|disabled`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit import Actor, AuditLog, DecisionInfo, Event, Outcome, Target, digest
from gateway.enforce import Governor
from gateway.policies import PolicyManager
from gateway.registry import Registry, RegistryError
from gateway.settings import (
    ConfigError,
    GatewaySettings,
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
        if isinstance(value, SecretRef) and value.value is not None:
            raise RegistryError(_literal(f"headers.{header}"), 400, "literal_secret")
        if isinstance(value, str) and CREDENTIAL_HEADER.search(header):
            raise RegistryError(_literal(f"headers.{header}"), 400, "literal_secret")
    if isinstance(agent.auth, OAuthClientCredentialsAuth) and agent.auth.client_secret.value is not None:
        raise RegistryError(_literal("auth.client_secret"), 400, "literal_secret")
    for key in (agent.card_jwks or {}).get("keys", []):
        if isinstance(key, dict) and PRIVATE_JWK_MEMBERS & key.keys():
            raise RegistryError("card_jwks holds a private key: give public keys only", 400, "literal_secret")
    return agent


def _literal(where: str) -> str:
    return (
        f"{where}: a secret cannot be stored in the database; give {{env: NAME}} or {{file: PATH}} "
        "(read by the gateway process)"
    )


def stored(agent: RemoteAgentSettings) -> dict[str, Any]:
    """The settings as stored: what was given, JSON (secret references only, see `validate`)."""
    return agent.model_dump(mode="json", exclude_unset=True)


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
        row = A2AAgentRow(agent.name, stored(agent), int(time.time()), True, self._via)
        if not await self._store.add_a2a_agent(row):
            raise RegistryError(f"a run-time A2A agent {agent.name!r} exists", 409, "name_taken")
        await self._record("added", row)
        await self._apply()
        return row

    async def remove(self, name: str) -> A2AAgentRow:
        row = await self.get(name)
        await self._store.remove_a2a_agent(name)
        await self._record("removed", row)
        await self._apply()
        return row

    async def set_enabled(self, name: str, enabled: bool) -> A2AAgentRow:
        row = await self.get(name)
        await self._store.set_a2a_agent_enabled(name, enabled)
        changed = A2AAgentRow(row.name, row.settings, row.created_at, enabled, row.source)
        await self._record("enabled" if enabled else "disabled", changed)
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
                args={"via": self._via, "card": card, "public": bool(row.settings.get("public", False))},
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
    ) -> None:
        self._face = face
        self._identity = identity
        self._governors = governors
        self._make_governor = make_governor
        self._policies = policies
        self._protected = protected
        """The RFC 9728 documents served (`identity.routes`), by agent name; `""` is `/a2a`."""
        self._interval_s = interval_s
        self._opened: dict[str, dict[str, Any]] = {}
        """Agents opened here at run time, with the settings they were opened with."""
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.refresh()
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
                    await self._close(name)
            for name, settings in wanted.items():
                if name not in self._opened:
                    await self._open(name, settings)

    async def _open(self, name: str, raw: dict[str, Any]) -> None:
        try:
            settings = RemoteAgentSettings.model_validate(raw)
        except ValidationError as exc:  # written by another version, or by hand
            log.warning("a2a_remote_agent_invalid", agent=name, problem=_problems(exc))
            return
        if name in self._face.agents or name in self._face.published:
            log.warning("a2a_remote_agent_name_taken", agent=name)
            return
        governor = self._make_governor(settings)
        self._governors[name] = governor
        self._policies.add_target(governor)
        # identity first: once the endpoint answers, tokens for it can be had
        self._identity.add_resource(f"a2a/{name}")
        self._identity.add_resource("a2a")
        if not settings.public:
            self._protected[name] = list(settings.required_scopes)
        self._protected.setdefault("", ["a2a"])
        try:
            await self._face.add_agent(settings)
        except ConfigError as exc:  # e.g. a header's environment variable is not set here
            log.warning("a2a_remote_agent_unusable", agent=name, problem=str(exc))
            self._identity.remove_resource(f"a2a/{name}")
            self._protected.pop(name, None)
            self._governors.pop(name, None)
            self._policies.remove_target(governor)
            return
        self._opened[name] = raw
        log.info("a2a_remote_agent_opened", agent=name)

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
