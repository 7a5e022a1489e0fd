"""Tool pinning (identity-research §7.7, §9 cases 18-20): serve an upstream's tool only while its
definition is the one a person approved.

A pin is (upstream, upstream tool name) -> SHA-256 of the canonical JSON (RFC 8785) of the tool's
name, title, description, input and output schemas and annotations (`gateway.enforce.definition_hash`),
with the definition itself, the approver and the time. Pins live in the gateway database
(`identity.database_url`), so `interlink tools approve` reaches every replica: each re-reads the pins
every `REFRESH_S` seconds.

Only upstreams with `tool_pinning: true` are pinned. For them, a tool is

* `approved`: its definition hashes to its pin; served as usual;
* `changed`: pinned with another hash (a rug pull); hidden from `tools/list`, its calls refused
  with `tool_not_approved`, and one `tool.definition_changed` audit record per new definition;
* `new`: never pinned; hidden and refused like a changed one, unless the upstream has
  `trust_new_tools: true`, in which case it is pinned the first time it is seen (`tool.pinned`).

Audit records of pinning (`tool.definition_changed`, `tool.pinned`, and `tool.approved` from the
CLI) name the tool as `<upstream>/<tool>` in `target.name` (the notation of `tools.include`), carry
the definition hash now served in `target.definition_sha256`, and the previously approved hash in
`args.approved_sha256` (null for a new tool): `args` holds the facts of the event, never call
arguments, for these records.

`scan` flags definitions that look poisoned (hidden characters, instructions to the model, hidden
blocks); the CLI refuses to approve those without `--force`.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio
import structlog

from gateway.audit import Actor, AuditLog, DecisionInfo, Event, Outcome, Target
from gateway.enforce import TOOL_DEFINITION_FIELDS
from gateway.settings import UpstreamSettings
from gateway.store import Store, ToolPin

log = structlog.get_logger(__name__)

PinStatus = Literal["approved", "changed", "new"]

REFRESH_S: Final = 2.0
"""How often a running gateway re-reads the pins, so an approval takes effect within this many seconds."""

FIRST_USE: Final = "trust_new_tools"
"""`approved_by` of a pin the gateway made itself, on first sight of a tool of a trusting upstream."""


def tool_definition(tool: Any) -> dict[str, Any]:
    """The pinned part of a tool (as JSON), exactly what `definition_hash` covers."""
    dumped = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {k: dumped[k] for k in TOOL_DEFINITION_FIELDS if k in dumped}


class ToolPins:
    """The approved definitions, shared by every virtual server of one gateway process."""

    def __init__(
        self,
        upstreams: Sequence[UpstreamSettings],
        *,
        audit: AuditLog | None = None,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._trust_new = {u.name: u.trust_new_tools for u in upstreams if u.tool_pinning}
        """The pinned upstreams, and whether each trusts new tools."""
        self._audit = audit
        self._refresh_s = refresh_s
        self._clock = clock
        self._pins: dict[tuple[str, str], ToolPin] = {}
        self._reported: set[tuple[str, str, str, PinStatus]] = set()
        """(upstream, tool, hash, status) already audited or logged by this process: once per change."""
        self._lock = anyio.Lock()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("tool pins are not loaded")
        return self._store

    @asynccontextmanager
    async def running(self, store: Store) -> AsyncIterator[ToolPins]:
        """Load the pins, and re-read them every `refresh_s` until exit."""
        self._store = store
        try:
            await self.reload()
            if not self._trust_new:
                yield self
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._refresh_forever)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._store = None

    async def reload(self) -> None:
        async with self._lock:  # so a pin made on first sight meanwhile is never lost
            self._pins = {(p.upstream, p.tool): p for p in await self.store.tool_pins()}

    async def _refresh_forever(self) -> None:
        while True:
            await anyio.sleep(self._refresh_s)
            try:
                await self.reload()
            except Exception:  # noqa: BLE001 - a database hiccup must not stop future refreshes
                log.exception("tool_pins_refresh_failed")

    def covers(self, upstream: str) -> bool:
        """Whether `upstream` has `tool_pinning` on."""
        return upstream in self._trust_new

    def status(self, upstream: str, tool: str, sha256: str) -> PinStatus:
        pin = self._pins.get((upstream, tool))
        if pin is None:
            return "new"
        return "approved" if pin.sha256 == sha256 else "changed"

    async def admits(self, upstream: str, tool: Any, sha256: str) -> bool:
        """Whether `upstream`'s `tool` (hashing to `sha256`) may be listed and called now. Reports a
        change once (audit), and pins a new tool of a trusting upstream."""
        trust_new = self._trust_new.get(upstream)
        if trust_new is None:
            return True  # not a pinned upstream
        status = self.status(upstream, tool.name, sha256)
        if status == "new" and trust_new:
            status = await self._pin_first_sight(upstream, tool, sha256)
        if status == "approved":
            return True
        key = (upstream, tool.name, sha256, status)
        if key not in self._reported:
            self._reported.add(key)
            try:
                await self._report(upstream, tool.name, sha256)
            except BaseException:
                self._reported.discard(key)  # report it next time
                raise
        return False

    async def _report(self, upstream: str, tool: str, sha256: str) -> None:
        pin = self._pins.get((upstream, tool))
        if pin is None:
            log.warning("tool_awaiting_approval", upstream=upstream, tool=tool, sha256=sha256[:12])
            return
        log.warning("tool_definition_changed", upstream=upstream, tool=tool, sha256=sha256[:12])
        if self._audit is not None:
            event = pin_event(
                "tool.definition_changed",
                upstream,
                tool,
                sha256,
                approved=pin,
                decision=DecisionInfo(effect="deny", reason="tool_not_approved"),
                outcome=Outcome(status="denied", reason="tool_not_approved"),
            )
            await self._audit.append(event)

    async def _pin_first_sight(self, upstream: str, tool: Any, sha256: str) -> PinStatus:
        async with self._lock:
            if self.status(upstream, tool.name, sha256) == "new":
                pin = ToolPin(
                    upstream, tool.name, sha256, tool_definition(tool), FIRST_USE, int(self._clock())
                )
                if self._audit is not None:  # recorded before it takes effect
                    event = pin_event(
                        "tool.pinned",
                        upstream,
                        tool.name,
                        sha256,
                        approved=None,
                        decision=DecisionInfo(effect="allow", reason=FIRST_USE),
                        outcome=Outcome(status="ok"),
                    )
                    await self._audit.append(event)
                if await self.store.add_tool_pin(pin):
                    self._pins[(upstream, tool.name)] = pin
                else:  # another replica pinned it first: its pin counts
                    self._pins = {(p.upstream, p.tool): p for p in await self.store.tool_pins()}
                log.info("tool_pinned", upstream=upstream, tool=tool.name, sha256=sha256[:12])
            return self.status(upstream, tool.name, sha256)


def pin_event(
    kind: str,
    upstream: str,
    tool: str,
    sha256: str,
    *,
    approved: ToolPin | None,
    decision: DecisionInfo,
    outcome: Outcome,
    person: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Event:
    """An audit record about a tool definition (see the module docstring for its fields)."""
    return Event(
        event=kind,
        actor=Actor(person=person[:256]) if person else Actor(),
        target=Target(
            protocol="gateway", method="tool_pinning", name=f"{upstream}/{tool}", definition_sha256=sha256
        ),
        decision=decision,
        outcome=outcome,
        args={
            "upstream": upstream,
            "tool": tool,
            "approved_sha256": approved.sha256 if approved else None,
            "approved_by": approved.approved_by if approved else None,
            **(extra or {}),
        },
    )


# -- poisoned definitions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something in a definition that a reviewer must look at before approving it."""

    where: str
    """Dotted path in the definition, e.g. `description` or `inputSchema.properties.path.description`."""
    what: str


SUSPICIOUS: Final = [
    (
        re.compile(
            r"\b(ignore|disregard|forget|override)\b.{0,40}?\b(previous|prior|above|earlier|preceding|"
            r"all|other|system|original)\b.{0,20}?\b(instructions?|prompts?|rules|directions|messages)\b",
            re.IGNORECASE | re.DOTALL,
        ),
        "instruction to override the model's instructions",
    ),
    (
        re.compile(
            r"\b(do not|don't|never|without)\b.{0,30}?\b(tell|telling|inform|informing|mention|mentioning|"
            r"reveal|revealing|show|showing|notify|notifying)\b.{0,30}?\buser\b",
            re.IGNORECASE | re.DOTALL,
        ),
        "instruction to hide something from the user",
    ),
    (
        re.compile(
            r"<\s*/?\s*(important|system|instructions?|secret|hidden|admin|assistant|prompt)\b[^>]*>",
            re.IGNORECASE,
        ),
        "hidden instruction block",
    ),
    (re.compile(r"<!--.*?-->", re.DOTALL), "HTML comment (invisible when rendered)"),
    (
        re.compile(
            r"~/\.ssh|\bid_(rsa|ed25519|ecdsa)\b|\.aws/credentials|\bmcp\.json\b|/etc/(passwd|shadow)",
            re.IGNORECASE,
        ),
        "reference to credentials or private files",
    ),
]
"""Phrases of known tool-poisoning attacks (Invariant Labs 2025, OWASP MCP Top 10 MCP03)."""

INVISIBLE: Final = frozenset({"Cf", "Co", "Cs", "Cn"})
"""Unicode categories a reader cannot see: format (zero-width, bidi controls, tag characters),
private use, surrogates and unassigned code points."""


def scan(definition: Mapping[str, Any]) -> list[Finding]:
    """Everything suspicious in a tool definition's strings (keys included), in document order."""
    findings: list[Finding] = []
    for where, text in _strings(definition, ""):
        hidden = sorted({c for c in text if unicodedata.category(c) in INVISIBLE or _control(c)})
        if hidden:
            names = ", ".join(_codepoint(c) for c in hidden[:5])
            findings.append(Finding(where, f"invisible character(s): {names}"))
        for pattern, what in SUSPICIOUS:
            match = pattern.search(text)
            if match:
                findings.append(Finding(where, f"{what}: {visible(match.group(0))[:80]!r}"))
    return findings


def visible(text: str) -> str:
    """`text` with every character a reader could not see spelled out as `<U+200B>`."""
    return "".join(
        _codepoint(c, short=True) if unicodedata.category(c) in INVISIBLE or _control(c) else c for c in text
    )


def _control(c: str) -> bool:
    return unicodedata.category(c) == "Cc" and c not in "\n\t"


def _codepoint(c: str, *, short: bool = False) -> str:
    if short:
        return f"<U+{ord(c):04X}>"
    return f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}"


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where or "(value)", value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            yield f"{path} (key)", str(key)
            yield from _strings(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
