"""An A2A agent's skills as the tools of a virtual MCP server (`transport: a2a`).

One tool per selected card skill (`skills.py`); a call sends one A2A message (`exchange.py`: A2A 1.0
§9.4.1 SendMessage, or §9.4.2 SendStreamingMessage when the card says the agent streams) and maps
what comes back (`content.py`). The virtual server has already validated, decided and recorded the MCP call;
here the A2A side is governed too: the agent's own governor decides and records `SendMessage` on
`a2a:<agent>/<skill>` (naming `mcp:<virtual>/<tool>` as its bridge), so the bridge is no way around
the A2A policy. The governor passed in also applies the agent's admission (gateway/a2a_tools.py:
a protected agent needs the caller's token to carry its `required_scopes`). The agent gets
Interlink's per-call credential (the caller's token never leaves).

- Status updates become MCP progress notifications (when the caller asked for progress).
- INPUT_REQUIRED / AUTH_REQUIRED: a caller that can answer an elicitation gets an
  `InputRequiredResult` asking for a `reply` (its `request_state` a sealed continuation); the retry
  sends the reply to the waiting task. Any other caller gets a result telling the model to call the
  tool again with its answer and `context_id=<continuation>`. Continuations (`continuation.py`) are
  sealed, expire, and are bound to the caller and agent; another caller's is refused.
- The caller cancelling the call (MCP notifications/cancelled) cancels the downstream task
  (CancelTask, at most `exchange.CANCEL_TIMEOUT_S`, recorded by the agent's governor), as does
  the call outliving `call_timeout_s`.
- No card, circuit open, connection refused: `UpstreamUnavailable`; silence longer than the agent's
  `timeout_s` or a call longer than `call_timeout_s`: `UpstreamTimeout`. Messages name the agent,
  never its URL or a credential. An agent's JSON-RPC refusal is a tool error (`downstream_error`),
  and an error on the A2A record too. An answer past `exchange.MAX_RESPONSE_BYTES` or
  `MAX_RESPONSE_PARTS` cancels the task: a tool error `downstream_response_too_large`.
- `data` a protobuf `Value` cannot hold (an integer beyond a double, nesting over 100 levels) is
  an invalid-arguments tool error; nothing is sent.
- A non-streaming agent answers when the task ends or waits: its progress is not relayed, and a
  cancelled call cannot cancel a task whose id has not come back yet.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import structlog
from a2a.types import (
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict, ParseError
from mcp_types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
    TextContent,
    Tool,
)

from adapters.a2a.proxy import SKILL_KEY, message_args
from adapters.bridge.content import (
    A2A_META,
    REASON_META,
    WAITING,
    finished,
    message_text,
    waiting,
)
from adapters.bridge.continuation import Continuation, ContinuationError, Sealer, derive_key
from adapters.bridge.exchange import (
    DOWNSTREAM_ERROR,
    MAX_RESPONSE_BYTES,
    MAX_RESPONSE_PARTS,
    TOO_LARGE,
    Downstream,
    Exchange,
    Messenger,
)
from adapters.bridge.skills import SkillTool, skill_tools
from adapters.governance import CallGovernor, Failed
from adapters.mcp.pool import State, UpstreamStatus
from adapters.mcp.providers import ProviderCall
from gateway.errors import InvalidArguments, UpstreamUnavailable

log = structlog.get_logger(__name__)

SEND: Final = "SendMessage"
REPLY: Final = "reply"
"""The elicitation's key and its form's one field."""
REPLY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {REPLY: {"type": "string", "title": "Your answer", "minLength": 1}},
    "required": [REPLY],
}


class A2AToolProvider:
    """The `ToolProvider` of an `A2AToolsUpstream`: the skills of one agent as tools."""

    def __init__(
        self,
        name: str,
        downstream: Downstream,
        governor: CallGovernor,
        *,
        skills: Sequence[str],
        call_timeout_s: float,
        secret: Callable[[], bytes],
        caller_of: Callable[[Mapping[str, Any]], str],
    ) -> None:
        self.name = name
        self._down = downstream
        self._messenger = Messenger(downstream, governor, upstream=name, call_timeout_s=call_timeout_s)
        self._governor = governor
        self._patterns = tuple(skills)
        self._secret = secret
        self._caller_of = caller_of
        self._sealer: Sealer | None = None
        self._built: tuple[AgentCard | None, dict[str, SkillTool]] = (None, {})
        self._state = "idle"
        self._since = time.monotonic()

    # -- ToolProvider -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._sealer = Sealer(derive_key(self._secret()))
        self._state, self._since = "started", time.monotonic()

    async def stop(self) -> None:
        self._state, self._since = "stopped", time.monotonic()

    async def tools(self, *, refresh: bool = False) -> dict[str, Tool]:
        """The tools of the card the agent's owner holds now (re-read on every call, so `refresh`
        changes nothing). `refresh` deliberately does not re-fetch the card: the virtual server
        passes it on every lookup of a tool it does not know, so honouring it would let any caller
        make Interlink fetch the agent's card at will; the owner refreshes it every `card_refresh_s`."""
        return {name: st.tool for name, st in self._skill_tools().items()}

    def bridged(self, tool: Tool) -> str | None:
        return f"a2a:{self._down.name}/{self._skill_of(tool)}"

    def shows(self, scope: Mapping[str, Any], tool: Tool) -> bool:
        """Listed only to callers the agent admits and its policy lets send the skill a message."""
        return self._governor.shows(scope, "SendMessage", self._skill_of(tool))

    def status(self) -> UpstreamStatus:
        readiness, error = self._down.readiness()
        state: State
        if self._state == "stopped":
            state, error = "stopped", None
        elif self._state == "idle":
            state, error = "starting", None
        elif readiness == "ready" and self._down.card is not None:
            state, error = "ready", None
        else:
            state, error = "backoff", f"agent {self._down.name!r}: {error or readiness}"
        return UpstreamStatus(self.name, state, "a2a/1.0", error, 0, time.monotonic() - self._since)

    async def call_tool(self, call: ProviderCall) -> CallToolResult | InputRequiredResult:
        skill = self._skill_of(call.tool)
        caller = self._caller_of(call.scope)
        text, data = str(call.arguments["text"]), call.arguments.get("data")
        resume: Continuation | None = None
        if call.request_state is not None:  # the retry of a call that asked the caller (elicitation)
            resume = self._open(call.request_state, caller, skill, kinds=("elicit",))
            if resume is None:
                raise InvalidArguments("requestState is not one this gateway issued to you, or it expired")
            answer = _reply(call.input_responses)
            if answer is None:
                await self._messenger.cancel(call.scope, resume.task_id, skill)
                return _declined(self._down.name, skill)
            text, data = answer, None
        elif "context_id" in call.arguments:
            resume = self._open(str(call.arguments["context_id"]), caller, skill, kinds=("task", "context"))
            if resume is None:
                return _invalid_context(call.exposed)
        try:
            message = _message(text, data, resume, skill)
        except (OverflowError, ParseError):  # a number beyond a double, or nesting beyond 100 levels
            return _invalid_arguments(
                call.exposed,
                "data cannot travel as an A2A data part (numbers must fit a double, nesting at "
                "most 100 levels deep)",
            )
        exchange = await self._governed_send(call, skill, message)
        return self._result(call, skill, caller, exchange)

    # -- tools ------------------------------------------------------------------------------------

    def _skill_tools(self) -> dict[str, SkillTool]:
        card = self._down.card
        if card is None:
            raise UpstreamUnavailable(f"agent {self._down.name!r} has no usable card", upstream=self.name)
        if self._built[0] is not card:  # the card was refreshed: rebuild (same card, same Tool objects)
            self._built = (card, skill_tools(card, self._patterns, self._down.name))
        return self._built[1]

    def _skill_of(self, tool: Tool) -> str:
        found = self._built[1].get(tool.name)
        return found.skill_id if found is not None else tool.name

    # -- continuations ----------------------------------------------------------------------------

    def _seal(self, continuation: Continuation) -> str:
        if self._sealer is None:
            raise UpstreamUnavailable(f"upstream {self.name!r} is not started", upstream=self.name)
        return self._sealer.seal(continuation)

    def _open(self, token: str, caller: str, skill: str, *, kinds: tuple[str, ...]) -> Continuation | None:
        if self._sealer is None:
            return None
        try:
            found = self._sealer.open(token, caller=caller, agent=self._down.name)
        except ContinuationError as exc:
            log.info("a2a_bridge_continuation_refused", upstream=self.name, problem=str(exc))
            return None
        if found.kind not in kinds or (found.kind != "context" and found.skill != skill):
            log.info("a2a_bridge_continuation_refused", upstream=self.name, problem="wrong kind or skill")
            return None
        return found

    # -- the exchange -----------------------------------------------------------------------------

    async def _governed_send(self, call: ProviderCall, skill: str, message: Message) -> Exchange:
        """Decide and record `SendMessage` under the agent's policy, then send."""
        exchange = Exchange(skill=skill)
        bridge = f"mcp:{call.virtual}/{call.exposed}"

        async def run() -> Task | Message | Failed | None:
            await self._governor.check(call.scope, SEND, skill, message_args(message), bridge=bridge)
            await self._messenger.send(
                call.scope, SendMessageRequest(message=message), call.progress, exchange
            )
            return exchange.as_a2a()

        await self._governor.around(call.scope, SEND, skill, None, run, call.meta)
        return exchange

    # -- the result -------------------------------------------------------------------------------

    def _result(
        self, call: ProviderCall, skill: str, caller: str, ex: Exchange
    ) -> CallToolResult | InputRequiredResult:
        agent = self._down.name
        if ex.refused is not None:
            return _failed(
                f"the agent {agent!r} refused the message ({ex.refused})", DOWNSTREAM_ERROR, agent, skill
            )
        if ex.too_large:
            return _failed(
                f"the agent {agent!r} answered more than a tool result may carry "
                f"({MAX_RESPONSE_BYTES // 2**20} MiB or {MAX_RESPONSE_PARTS} parts); its task was cancelled",
                TOO_LARGE,
                agent,
                skill,
            )
        artifacts = list(ex.artifacts.values())
        if ex.state in WAITING:
            assert ex.state is not None
            held = Continuation("task", caller, agent, skill, ex.context_id, ex.task_id)
            if call.can_elicit:
                return self._elicit(ex, held)
            return waiting(
                ex.state,
                artifacts,
                ex.message,
                agent=agent,
                skill=skill,
                continue_with=self._seal(held),
                tool=call.exposed,
            )
        follow = Continuation("context", caller, agent, skill, ex.context_id) if ex.context_id else None
        return finished(
            ex.state,
            artifacts,
            ex.message,
            agent=agent,
            skill=skill,
            continue_with=self._seal(follow) if follow is not None else None,
            tool=call.exposed,
        )

    def _elicit(self, ex: Exchange, held: Continuation) -> InputRequiredResult:
        need = "authorization" if ex.state == TaskState.TASK_STATE_AUTH_REQUIRED else "more input"
        question = message_text(ex.message) or f"The agent {self._down.name!r} needs {need}."
        state = Continuation("elicit", held.caller, held.agent, held.skill, held.context_id, held.task_id)
        params = ElicitRequestFormParams(message=question, requested_schema=REPLY_SCHEMA)
        return InputRequiredResult(
            input_requests={REPLY: ElicitRequest(params=params)}, request_state=self._seal(state)
        )


def _message(text: str, data: Any, resume: Continuation | None, skill: str) -> Message:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if isinstance(data, Mapping):
        message.parts.append(Part(data=ParseDict(dict(data), struct_pb2.Value())))
    if resume is not None:
        message.context_id = resume.context_id
        message.task_id = resume.task_id if resume.kind != "context" else ""
    message.metadata.update({SKILL_KEY: skill})
    return message


def _reply(responses: Mapping[str, Any] | None) -> str | None:
    """The caller's accepted answer to our elicitation; None when it declined or cancelled."""
    answer = (responses or {}).get(REPLY)
    if isinstance(answer, Mapping):
        action, content = answer.get("action"), answer.get("content")
    else:
        action, content = getattr(answer, "action", None), getattr(answer, "content", None)
    if action != "accept" or not isinstance(content, Mapping):
        return None
    reply = content.get(REPLY)
    return reply if isinstance(reply, str) and reply.strip() else None


def _failed(text: str, reason: str, agent: str, skill: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(text=text)],
        is_error=True,
        _meta={REASON_META: reason, A2A_META: {"agent": agent, "skill": skill}},
    )


def _declined(agent: str, skill: str) -> CallToolResult:
    return _failed(
        f"no answer was given; the agent {agent!r}'s task was cancelled", "input_declined", agent, skill
    )


def _invalid_arguments(tool: str, problem: str) -> CallToolResult:
    # An input error the model can correct (MCP "Tools" §Error Handling), recorded as such.
    return CallToolResult(
        content=[TextContent(text=f"Invalid arguments for tool {tool!r}: {problem}")],
        is_error=True,
        _meta={REASON_META: "invalid_arguments"},
    )


def _invalid_context(tool: str) -> CallToolResult:
    return _invalid_arguments(
        tool,
        "context_id is not one this agent's results gave you (or it expired); omit it to start a "
        "new conversation",
    )
