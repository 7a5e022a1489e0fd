"""The seam every protocol adapter calls the gateway's policy and audit through (implemented by
`gateway.enforce.Governor`); adapters never import the gateway beyond its errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Failed:
    """What a governed request's `run` may return when it failed without raising (a bridge answers
    its caller with a tool error): its audit record's outcome is an error with this stable `reason`."""

    reason: str


class CallGovernor(Protocol):
    """`around` wraps each governed request: it may refuse it (fail closed when the audit trail
    cannot record), runs it, and records it. `check` decides one call against the policy and raises
    the gateway's refusal (PolicyDenied, ApprovalRequired, RateLimited...) when it may not be made;
    an allowed call with effects is recorded write-ahead. `scope` is the request's ASGI scope (the
    authenticated caller travels in it); `meta` its protocol metadata (an approval id on a retry);
    `bridge` names, on a bridged call, the resource of the other protocol it becomes (recorded)."""

    async def check(
        self,
        scope: Mapping[str, Any],
        action: str,
        name: str,
        args: Mapping[str, Any],
        definition: Any = None,
        bridge: str | None = None,
    ) -> None: ...

    def shows(self, scope: Mapping[str, Any], action: str, name: str) -> bool:
        """Whether the caller in `scope` may be shown `name` (lists: only what may be used)."""
        ...

    async def around(
        self,
        scope: Mapping[str, Any],
        method: str,
        name: str | None,
        args: Mapping[str, Any] | None,
        run: Callable[[], Awaitable[T]],
        meta: Mapping[str, Any] | None = None,
    ) -> T: ...
