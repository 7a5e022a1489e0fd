"""Continuations: what a caller hands back to go on with an A2A task or conversation it started
through the bridge (the `context_id` argument, or an `InputRequiredResult.request_state`).

A continuation is sealed with Fernet (AES-128-CBC + HMAC-SHA256, with its issue time): the caller
can neither read the downstream ids in it nor forge or alter one. It is bound to the caller (the
gateway's stable caller key: tenant, client id, subject), to the agent and, for a waiting task, to
the skill; it expires (`TTL_S`). Keys are derived (HKDF-SHA256) from a secret the replicas share, so
any replica accepts any replica's continuation.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass
from typing import Final, Literal

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX: Final = "a2a1."
"""Marks our continuations (and their format version)."""

Kind = Literal["task", "context", "elicit"]
"""`task`: a task waiting for input (the next message goes to it); `context`: a finished task's
conversation (the next message starts a task in it); `elicit`: an elicitation's request state."""

TTL_S: Final[dict[str, int]] = {"task": 86_400, "context": 86_400, "elicit": 3_600}
"""How long each kind of continuation is accepted after it was issued."""

MAX_TTL_S: Final = max(TTL_S.values())


@dataclass(frozen=True)
class Continuation:
    kind: Kind
    caller: str
    agent: str
    skill: str
    context_id: str
    task_id: str = ""


class ContinuationError(Exception):
    """Not a continuation we issued to this caller for this agent, or expired (deliberately vague)."""


def derive_key(secret: bytes) -> bytes:
    """The Fernet key of the bridge's continuations, derived from a shared secret (RFC 5869)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"interlink a2a-bridge v1").derive(
        secret
    )
    return base64.urlsafe_b64encode(raw)


class Sealer:
    """Seals and opens continuations with one key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, continuation: Continuation) -> str:
        body = json.dumps(asdict(continuation), separators=(",", ":")).encode()
        return PREFIX + self._fernet.encrypt(body).decode()

    def open(self, token: str, *, caller: str, agent: str) -> Continuation:
        """The continuation in `token`, if we sealed it for this caller and agent and it is fresh."""
        if not token.startswith(PREFIX):
            raise ContinuationError("not a continuation")
        body = token.removeprefix(PREFIX).encode()
        try:
            found = Continuation(**json.loads(self._fernet.decrypt(body, ttl=MAX_TTL_S)))
            if time.time() - self._fernet.extract_timestamp(body) > TTL_S[found.kind]:
                raise ValueError("expired")
        except (InvalidToken, ValueError, TypeError, KeyError):
            raise ContinuationError("invalid or expired") from None
        if found.caller != caller or found.agent != agent:
            raise ContinuationError("issued to another caller or agent")
        return found
