"""How upstream tool and prompt names appear on a virtual server, and how they map back. Pure; no I/O.

With `prefix` namespacing, tool `search` of upstream `crm` is exposed as `crm__search`. Upstream names
never contain `__` (the config rejects it), so splitting at the first `__` is exact and reversible, and
the result stays inside the character set LLM tool-calling APIs accept (`[A-Za-z0-9_-]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final, Literal

SEPARATOR: Final = "__"
"""Joins upstream and tool names (`crm__search`)."""

Namespacing = Literal["prefix", "none"]


@dataclass(frozen=True)
class Origin:
    """Where an exposed name comes from."""

    upstream: str
    name: str


def expose(origin: Origin, namespacing: Namespacing) -> str:
    """The name a client sees for `origin`."""
    if namespacing == "none":
        return origin.name
    return f"{origin.upstream}{SEPARATOR}{origin.name}"


def split(exposed: str) -> Origin | None:
    """Reverse of `expose` under `prefix` namespacing; None when the name carries no upstream prefix."""
    upstream, sep, name = exposed.partition(SEPARATOR)
    if not sep or not upstream or not name:
        return None
    return Origin(upstream, name)


@dataclass(frozen=True)
class ToolSelection:
    """Glob patterns over `upstream/tool`; a name is selected if it matches an include and no exclude."""

    include: Sequence[str] = ("*",)
    exclude: Sequence[str] = ()

    def selects(self, origin: Origin) -> bool:
        key = f"{origin.upstream}/{origin.name}"
        return any(fnmatchcase(key, p) for p in self.include) and not any(
            fnmatchcase(key, p) for p in self.exclude
        )
