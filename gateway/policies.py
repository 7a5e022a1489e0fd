"""The live policy: loaded at start, reloaded without a restart, every change audited.

Where it comes from: `policy_file` (a YAML file holding only `version` and `rules`) when the
configuration names one, otherwise the `policy` key of the configuration file the gateway was
started with. A reload is triggered by any of:

* a change of that file (polled every `policy_reload_interval_s`, 2 s by default; 0 turns it off),
* `SIGHUP` to the gateway process,
* `POST /admin/policy/reload` (admin API).

A reload validates the whole new policy first. An invalid one is rejected with the precise problem
(file, key path, expectation), logged, written to the audit trail as `policy.rejected`, and the
previous policy stays active. A valid one replaces the policy of every protected virtual server at
once (`policy.loaded`, with its version and SHA-256); requests already being decided keep the policy
they started with. A running gateway never drops its policy: a reload that finds none is rejected
(removing every rule would silently widen access; restart to run without a policy).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import structlog
import yaml
from pydantic import ValidationError

from gateway.audit import Actor, AuditLog, DecisionInfo, Event, Outcome, Target, digest
from gateway.settings import ConfigError, GatewaySettings, describe_errors, load_settings
from identity.policy import Policy

log = structlog.get_logger(__name__)

STOP_TIMEOUT_S: Final = 5.0


class PolicyTarget(Protocol):
    def set_policy(self, policy: Policy | None) -> None: ...


class PolicyRejected(Exception):
    """A new policy could not be loaded; `message` says exactly why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PolicyStatus:
    version: str | None
    sha256: str | None
    rules: int
    source: str | None
    changed: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "reloaded" if self.changed else "unchanged",
            "version": self.version,
            "sha256": self.sha256,
            "rules": self.rules,
            "source": self.source,
        }


def load_policy_file(path: Path) -> Policy:
    """Read and validate a policy file; ConfigError names the file, the key path and the problem."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such policy file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, path)) from None


def policy_sha256(policy: Policy) -> str:
    return digest(policy.model_dump(mode="json"))


class PolicyManager:
    """Holds the active policy and pushes each accepted change to every governor."""

    def __init__(
        self,
        settings: GatewaySettings,
        targets: Sequence[PolicyTarget],
        *,
        config_path: Path | None,
        audit: AuditLog | None,
    ) -> None:
        self._targets = list(targets)
        self._audit = audit
        self._config_path = config_path
        self._policy_file = settings.policy_file
        self.source: Path | None = settings.policy_file or config_path
        self.interval_s = settings.policy_reload_interval_s
        self.policy: Policy | None = initial_policy(settings)
        self._lock = asyncio.Lock()
        self._seen = _fingerprint(self.source)

    def status(self, changed: bool = True) -> PolicyStatus:
        p = self.policy
        return PolicyStatus(
            version=p.version if p else None,
            sha256=policy_sha256(p) if p else None,
            rules=len(p.rules) if p else 0,
            source=str(self.source) if self.source else None,
            changed=changed,
        )

    def add_target(self, target: PolicyTarget) -> None:
        """A governor created at run time (an A2A agent registered while running): it gets the
        active policy now and every later reload."""
        target.set_policy(self.policy)
        self._targets.append(target)

    def remove_target(self, target: PolicyTarget) -> None:
        if target in self._targets:
            self._targets.remove(target)

    def apply_initial(self) -> None:
        for target in self._targets:
            target.set_policy(self.policy)

    async def reload(self, trigger: str) -> PolicyStatus:
        """Load the policy again from its source; PolicyRejected leaves the active one in place."""
        async with self._lock:
            self._seen = _fingerprint(self.source)
            try:
                new = self._read()
                if new is None:
                    raise PolicyRejected(
                        f"{self.source}: no policy found; a running gateway keeps its policy "
                        "(restart to run without one)"
                    )
            except PolicyRejected as exc:
                log.error("policy_rejected", trigger=trigger, problem=exc.message)
                await self._record("policy.rejected", trigger, None, exc.message)
                raise
            if self.policy is not None and policy_sha256(new) == policy_sha256(self.policy):
                return self.status(changed=False)
            self.policy = new
            for target in self._targets:
                target.set_policy(new)
            status = self.status()
            log.info("policy_loaded", trigger=trigger, version=status.version, rules=status.rules)
            await self._record("policy.loaded", trigger, status, None)
            return status

    def _read(self) -> Policy | None:
        if self._policy_file is not None:
            try:
                return load_policy_file(self._policy_file)
            except ConfigError as exc:
                raise PolicyRejected(str(exc)) from None
        if self._config_path is None:
            raise PolicyRejected("the gateway was not started from a file: there is nothing to reload")
        try:
            return initial_policy(load_settings(self._config_path))
        except ConfigError as exc:
            raise PolicyRejected(str(exc)) from None

    async def _record(
        self, event: str, trigger: str, status: PolicyStatus | None, problem: str | None
    ) -> None:
        if self._audit is None:
            return
        args: dict[str, Any] = {"trigger": trigger, "source": str(self.source) if self.source else None}
        if status is not None:
            args |= {"version": status.version, "sha256": status.sha256, "rules": status.rules}
        if problem is not None:
            args["problem"] = problem[:2000]
        try:
            await self._audit.append(
                Event(
                    event=event,
                    actor=Actor(),
                    target=Target(protocol="gateway", method="policy/reload", name=args["source"]),
                    decision=DecisionInfo(
                        effect="allow" if problem is None else "deny",
                        reason="valid" if problem is None else "invalid_policy",
                        policy_version=status.version if status else None,
                        policy_sha256=status.sha256[:16] if status and status.sha256 else None,
                    ),
                    outcome=Outcome(status="ok" if problem is None else "denied"),
                    args=args,
                )
            )
        except Exception as exc:  # noqa: BLE001 - the change itself stands; say the record is missing
            log.error("policy_change_not_audited", event=event, error=type(exc).__name__)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[PolicyManager]:
        """Watch the source file and listen for SIGHUP while the gateway runs."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Any]] = set()

        def on_sighup() -> None:
            task = loop.create_task(self._reload_quietly("sighup"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        hooked = False
        with suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
            hooked = True
        watcher = loop.create_task(self._watch()) if self.source and self.interval_s > 0 else None
        try:
            yield self
        finally:
            if hooked:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in [*tasks, *([watcher] if watcher else [])]:
                task.cancel()
            for task in [*tasks, *([watcher] if watcher else [])]:
                with suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, STOP_TIMEOUT_S)

    async def _reload_quietly(self, trigger: str) -> None:
        with suppress(PolicyRejected):
            await self.reload(trigger)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if _fingerprint(self.source) != self._seen:
                await self._reload_quietly("file_changed")


def initial_policy(settings: GatewaySettings) -> Policy | None:
    if settings.policy_file is not None:
        return load_policy_file(settings.policy_file)
    return settings.policy


def _fingerprint(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
