"""MCP tools as A2A skills (`a2a_published`): a virtual MCP server's tools served as an A2A agent at
`/a2a/<name>` (JSON-RPC; HTTP+JSON under `/a2a/<name>/rest`), one skill per selected tool.

* **Card.** Generated from the tool definitions (adapters/a2a/tool_skills.py: skill id = the
  exposed tool name) at `/a2a/<name>/.well-known/agent-card.json`, with Interlink's interfaces and
  OAuth scheme (its security requirement names the agent's and the virtual server's scopes: a
  tool call needs both); never an upstream's URL. The extended card (`GetExtendedAgentCard`)
  lists only the skills the caller may use: its token holds the virtual server's
  `required_scopes`, and the policy may show it `SendMessage` on `a2a:<name>/<skill>` and
  `tools/call` on `mcp:<virtual>/<skill>`. Tools the gateway cannot call for an A2A caller (MCP
  task augmentation required) are left out. Tool lists are re-read at most every `TOOLS_TTL_S`;
  a skill not in the list re-reads it at most every `REFRESH_MIN_S`.
* **A message** names its skill in `metadata.skill` (or the agent has one skill); its arguments are
  its data part, or its text (the mapping rules are in tool_skills.py). An unknown skill, or a
  message that does not map to the tool's arguments, is refused at once with the SDK's
  invalid-params error (JSON-RPC -32602, HTTP 400; `data.reason` `unknown_skill` /
  `invalid_arguments`): nothing ran, so no task exists. The policy speaks first: a message on a
  skill the policy does not show the caller (`SendMessage`) is decided, and refused, as any other;
  an unknown skill names only the skills the caller's extended card shows, and only a caller whose
  card shows the skill is told the arguments it expects and what its schema refused.
* **Governed twice, recorded twice.** The A2A side is governed like a proxied agent (policy
  `SendMessage` on `a2a:<name>/<skill>`, approvals, audit, owner-scoped persisted tasks) and its
  record names the MCP side (`target.bridge = mcp:<virtual>/<skill>`); the tool call then goes
  through `VirtualServer.call_as` with the caller's identity: pinning, schema validation, policy
  `tools/call`, approvals, rate limits, and its own record naming the A2A side
  (`a2a:<name>/<skill>`). Both records carry the caller (agent, subject, delegation chain).
  The virtual server's door is kept too: a token without its `required_scopes` (unless it is
  public) is refused before `call_as` like the MCP side's policy refusals (task REJECTED,
  `metadata.reason` `policy_denied`, JSON-RPC -32013 on that side: MCP's error table has no code
  for a 403 that, on the MCP face, is HTTP's), recorded on the MCP side with decision reason
  `insufficient_scope`.
* **The task.** WORKING while the tool runs (each MCP progress notification is a WORKING status
  update, `metadata.progress`/`total`); the result is one artifact (tool_skills.result_parts),
  then COMPLETED. A tool error (`isError`) ends FAILED with the tool's text; a refusal on the MCP
  side (policy, rate limit, pinning, arguments) ends REJECTED and a call held for approval
  AUTH_REQUIRED, each with the gateway's message and `metadata.reason`; any other MCP error ends
  FAILED with a safe message (an upstream's own error text is not shown). A tool that asks for
  input (an `InputRequiredResult`) ends FAILED saying so: A2A callers cannot answer it yet. A
  result A2A cannot carry (a number beyond a double's range...) ends FAILED, `metadata.reason`
  `unconvertible_result`; any other failure FAILED `internal_error` (logged): never WORKING.
* **Exposure.** A protected agent (the default) needs a token for `a2a/<name>` with its
  `required_scopes`. A public agent over a protected virtual server is refused at start-up: it
  would let anonymous callers use tools that need an identity. Published agents are not part of
  the aggregate `/a2a` router and have no push notifications.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, Final, NoReturn

import anyio
import structlog
from a2a.helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.tasks import DatabaseTaskStore, TaskUpdater
from a2a.types import AgentCard, Message, Part, SendMessageRequest, TaskState
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, InputRequiredResult, Tool

from adapters.a2a.proxy import (
    HOLD_KEY,
    SCOPE_KEY,
    GovernedHandler,
    fail_task,
    hold_task,
    message_meta,
)
from adapters.a2a.tool_skills import (
    JSON,
    TEXT,
    UnconvertibleResult,
    arguments_for,
    check_arguments,
    error_text,
    result_parts,
    skill_for,
)
from adapters.mcp.errors import to_mcp_error
from adapters.mcp.virtual import VirtualServer
from gateway import __version__
from gateway.a2a_face import _secure, _skill_name, interfaces
from gateway.approvals import APPROVAL_META
from gateway.auth import PRINCIPAL
from gateway.enforce import DENYING_REASONS, Governor
from gateway.errors import GatewayError, PolicyDenied, UnknownSkill
from gateway.settings import ConfigError, GatewaySettings, PublishedAgentSettings
from identity.tokens import Principal

log = structlog.get_logger(__name__)

TOOLS_TTL_S: Final = 5.0
"""How long a listing of the virtual server's tools serves cards and skill look-ups."""
REFRESH_MIN_S: Final = 1.0
"""A skill not in the listing re-reads it at most this often: a tool added upstream is found
within a second, and made-up skills cannot force a listing of every upstream per message."""
CALL_KEY: Final = "interlink.tool_call"
"""`ServerCallContext.state` key: the admitted message's (skill, arguments)."""
MAX_NAMED_SKILLS: Final = 20
"""Most skill names an `unknown_skill` refusal lists."""


class PublishedAgent:
    """One `a2a_published` entry: the selected tools of a virtual MCP server as an A2A agent."""

    def __init__(
        self,
        settings: PublishedAgentSettings,
        virtual: VirtualServer,
        governor: Governor,
        public_url: str,
        *,
        virtual_scopes: Sequence[str],
        tool_governor: Governor | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`virtual_scopes`: the scopes the virtual server requires of a token (none when it is
        public); `tool_governor`: the virtual server's own (MCP) governor, which shows its tools
        and records its refusals."""
        self.settings = settings
        self.name = settings.name
        self._virtual = virtual
        self._governor = governor
        self._tool_governor = tool_governor
        self._virtual_scopes = tuple(virtual_scopes)
        self._public_url = public_url
        self._clock = clock
        self._tools: dict[str, Tool] = {}
        self._listed_at = -math.inf
        self._listing = anyio.Lock()

    async def skills(self, *, refresh: bool = False) -> dict[str, Tool]:
        """The published tools by exposed name (every caller's; cards filter per caller): re-read
        when older than TOOLS_TTL_S, or, with `refresh` (a skill not found), REFRESH_MIN_S."""
        max_age = REFRESH_MIN_S if refresh else TOOLS_TTL_S
        if self._clock() - self._listed_at >= max_age:
            async with self._listing:  # concurrent look-ups share one listing
                if self._clock() - self._listed_at >= max_age:
                    listed = await self._virtual.listed_tools(None)
                    self._tools = {t.name: t for t in listed if self._selects(t)}
                    self._listed_at = self._clock()
        return self._tools

    def _selects(self, tool: Tool) -> bool:
        if tool.execution is not None and tool.execution.task_support == "required":
            return False  # MCP task augmentation: not something the gateway's call_as can do
        return any(fnmatchcase(tool.name, pattern) for pattern in self.settings.tools)

    async def tool(self, skill: str, scope: Mapping[str, Any]) -> Tool:
        """The tool behind `skill`; UnknownSkill when none, naming only the skills the caller in
        `scope` may use (those its extended card shows)."""
        tools = await self.skills()
        found = tools.get(skill) if skill != "*" else None
        if found is None and skill != "*":
            found = (await self.skills(refresh=True)).get(skill)
        if found is not None:
            return found
        usable = [name for name in self._tools if self.usable(scope, name)]
        names = ", ".join(usable[:MAX_NAMED_SKILLS]) or "none"
        if skill == "*":
            raise UnknownSkill(
                f"name the skill in the message's metadata.skill (agent {self.name!r}, skills you may "
                f"use: {names})"
            )
        raise UnknownSkill(
            f"agent {self.name!r} has no skill {skill!r} (skills you may use: {names})", skill=skill
        )

    def missing_scopes(self, scope: Mapping[str, Any]) -> list[str]:
        """The virtual server's required scopes the caller's token lacks."""
        principal: Principal | None = scope.get(PRINCIPAL)
        held = principal.scopes if principal is not None else frozenset()
        return [s for s in self._virtual_scopes if s not in held]

    def shows_message(self, scope: Mapping[str, Any], skill: str) -> bool:
        """Whether the policy may let the caller send a message to `skill` (lists' rule)."""
        return self._governor.shows(scope, "SendMessage", skill)

    def usable(self, scope: Mapping[str, Any], skill: str) -> bool:
        """Whether the caller's extended card shows `skill`: its token holds the virtual server's
        scopes and the policy may show it the message and the tool call (lists' rule: conditions
        on arguments and time are not evaluated here)."""
        tools = self._tool_governor
        return (
            not self.missing_scopes(scope)
            and self.shows_message(scope, skill)
            and (tools is None or tools.shows(scope, "tools/call", skill))
        )

    def skill_of(self, message: Message) -> str:
        """The message's `metadata.skill`, else the agent's only skill, else `*`."""
        named = _skill_name(message)
        if named == "*" and len(self._tools) == 1:
            return next(iter(self._tools))
        return named

    def base_card(self) -> AgentCard:
        """The card without skills: its interfaces, capabilities and security scheme."""
        virtual = self.settings.virtual_server
        card = AgentCard(
            name=self.name,
            description=self.settings.description
            or f"The tools of Interlink virtual MCP server {virtual!r} as A2A skills: name the skill "
            "(the tool) in the message's metadata.skill and send its arguments as a data part (an "
            "object), or as text where the skill accepts text/plain.",
            version=__version__,
            supported_interfaces=interfaces(self._public_url, self.name),
            default_input_modes=[JSON, TEXT],
            default_output_modes=[TEXT, JSON],
        )
        card.capabilities.streaming = True
        card.capabilities.push_notifications = False
        card.capabilities.extended_agent_card = not self.settings.public
        if not self.settings.public:  # a tool call needs the virtual server's scopes too
            scopes = dict.fromkeys([*self.settings.required_scopes, *self._virtual_scopes])
            _secure(card, self._public_url, list(scopes))
        return card

    async def card(self) -> AgentCard:
        """The public card: every published tool as a skill."""
        card = self.base_card()
        tags = [self.settings.virtual_server, "mcp"]
        card.skills.extend(skill_for(name, tool, tags) for name, tool in (await self.skills()).items())
        return card

    async def card_for_caller(self, _card: AgentCard, context: ServerCallContext) -> AgentCard:
        """The extended card: only the skills the caller may use on both sides (`usable`); none
        for a token without the virtual server's scopes."""
        scope = context.state.get(SCOPE_KEY) or {}
        card = await self.card()
        keep = [s for s in card.skills if self.usable(scope, s.id)]
        del card.skills[:]
        card.skills.extend(keep)
        return card

    async def call(
        self,
        scope: Mapping[str, Any],
        skill: str,
        arguments: Mapping[str, Any],
        updater: TaskUpdater,
        meta: Mapping[str, Any],
    ) -> CallToolResult | InputRequiredResult:
        """Call the tool as the caller in `scope`, every progress notification a WORKING update."""

        async def report(progress: float, total: float | None, message: str | None) -> None:
            text = message or (f"{progress:g}/{total:g}" if total else f"{progress:g}")
            numbers = {"progress": progress} | ({"total": total} if total is not None else {})
            await updater.update_status(
                TaskState.TASK_STATE_WORKING,
                message=updater.new_agent_message([Part(text=text)]),
                metadata=numbers,
            )

        missing = self.missing_scopes(scope)
        if missing:
            await self._refuse_scopes(scope, skill, arguments, meta, missing)
        return await self._virtual.call_as(
            scope,
            skill,
            arguments,
            progress=report,
            bridge=f"a2a:{self.name}/{skill}",
            meta=meta,
        )

    async def _refuse_scopes(
        self,
        scope: Mapping[str, Any],
        skill: str,
        arguments: Mapping[str, Any],
        meta: Mapping[str, Any],
        missing: Sequence[str],
    ) -> NoReturn:
        """Refuse the tool call as the virtual server's door refuses such a token, recorded on the
        MCP side (decision `insufficient_scope`, naming the A2A side); raises the MCPError the
        other refusals of `call_as` raise (reason `policy_denied`)."""
        needed = " ".join(dict.fromkeys([*self.settings.required_scopes, *self._virtual_scopes]))
        error = PolicyDenied(
            f"tools/call {skill!r} denied: the token lacks scope {' '.join(missing)}, which virtual "
            f"server {self.settings.virtual_server!r} requires (request a token for this agent with "
            f"scope {needed!r})"
        )
        tools = self._tool_governor

        async def refuse() -> NoReturn:
            if tools is None:
                raise error
            tools.refuse("insufficient_scope", error, bridge=f"a2a:{self.name}/{skill}")

        try:
            if tools is not None:
                await tools.around(scope, "tools/call", skill, arguments, refuse, meta)
            raise error
        except GatewayError as exc:
            raise to_mcp_error(exc) from None

    def handler(self, store: DatabaseTaskStore) -> PublishedHandler:
        """The A2A request handler, its tasks in `store` (owner-scoped, see a2a_face.task_store)."""
        # The handler's cards only carry the capabilities (callers get `card()`/`card_for_caller`);
        # a stand-in skill keeps the SDK's spec check quiet (a card needs one).
        card = self.base_card()
        card.skills.add(id="*", name="tools", description="this agent's tools (see its card)", tags=["mcp"])
        extended: dict[str, Any] = {}
        if not self.settings.public:
            extended = {"extended_agent_card": card, "extended_card_modifier": self.card_for_caller}
        return PublishedHandler(
            ToolExecutor(self),
            store,
            card,
            governor=self._governor,
            skill_of=self.skill_of,
            agent=self,
            **extended,
        )

    def status(self) -> dict[str, Any]:
        """Its line in `/readyz`: served by the gateway itself, so ready when the gateway is."""
        return {
            "name": self.name,
            "state": "ready",
            "last_error": None,
            "published_from": f"mcp:{self.settings.virtual_server}",
            "skills": len(self._tools),
        }


class PublishedHandler(GovernedHandler):
    """A proxied agent's governed handler, admitting only messages that map to a tool call."""

    def __init__(self, *args: Any, agent: PublishedAgent, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._agent = agent

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Any:
        await self._agent.skills()  # current, so a message naming no skill finds the only one
        return await super().on_message_send(params, context)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        await self._agent.skills()
        async for event in super().on_message_send_stream(params, context):
            yield event

    async def _admit(self, skill: str, message: Message, context: ServerCallContext) -> str:
        """The message's tool call, checked before the decision only for a caller the policy may
        show the skill: any other is decided (and refused) first, told nothing of the agent's
        tools. Only a caller whose card shows the skill is told what its arguments should be."""
        bridge = f"mcp:{self._agent.settings.virtual_server}/{skill}"
        scope = context.state.get(SCOPE_KEY) or {}
        if not self._agent.shows_message(scope, skill):
            return bridge  # not admitted: were it allowed after all, the executor fails the task
        tool = await self._agent.tool(skill, scope)
        describe = self._agent.usable(scope, skill)
        arguments = arguments_for(message, skill, tool, describe=describe)
        check_arguments(arguments, skill, tool, describe=describe)
        context.state[CALL_KEY] = (skill, arguments)
        return bridge


class ToolExecutor(AgentExecutor):
    """Runs an admitted message's tool call and turns its outcome into the task's (module docstring)."""

    def __init__(self, agent: PublishedAgent) -> None:
        self._agent = agent

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        state = context.call_context.state if context.call_context is not None else {}
        if state.get(HOLD_KEY):
            await hold_task(event_queue, context, str(state[HOLD_KEY]))
            return
        planned = state.get(CALL_KEY)
        if planned is None:  # every message is admitted first; never serve one that was not
            await fail_task(event_queue, context, "the message was not admitted")
            return
        skill, arguments = planned
        task_id, context_id = context.task_id or "", context.context_id or ""
        if context.current_task is None:
            history = [context.message] if context.message is not None else []
            task = new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            await event_queue.enqueue_event(task)
            context.current_task = task  # ours from now on: a refusal updates it
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        meta = message_meta(context.message) if context.message is not None else {}
        approval = {APPROVAL_META: meta[APPROVAL_META]} if APPROVAL_META in meta else {}
        try:
            result = await self._agent.call(state.get(SCOPE_KEY) or {}, skill, arguments, updater, approval)
            await _finish(updater, skill, result)
        except MCPError as exc:
            await self._refused(event_queue, context, updater, skill, exc)
        except UnconvertibleResult as exc:
            log.info("published_result_unconvertible", agent=self._agent.name, skill=skill, why=str(exc))
            text = f"tool {skill!r} answered, but A2A cannot carry its result: {exc}"
            await _end(updater, TaskState.TASK_STATE_FAILED, text, "unconvertible_result")
        except Exception:  # noqa: BLE001 - never a task left WORKING, nor the error's text shown
            log.exception("published_tool_crashed", agent=self._agent.name, skill=skill)
            await _end(updater, TaskState.TASK_STATE_FAILED, "internal error (logged)", "internal_error")

    async def _refused(
        self, queue: EventQueue, context: RequestContext, updater: TaskUpdater, skill: str, exc: MCPError
    ) -> None:
        data = exc.data if isinstance(exc.data, Mapping) else {}
        reason = data.get("reason")
        if reason == "approval_required":
            text = exc.message.replace("_meta", "metadata")
            await hold_task(queue, context, f"{text} (send the same message again on this task)")
        elif reason in DENYING_REASONS:
            await _end(updater, TaskState.TASK_STATE_REJECTED, exc.message, str(reason))
        elif isinstance(reason, str):  # the gateway's own failure: its message is safe to show
            await _end(updater, TaskState.TASK_STATE_FAILED, exc.message, reason)
        else:  # the upstream's own JSON-RPC error: its text may name its internals
            log.info("published_tool_failed", agent=self._agent.name, skill=skill, code=exc.code)
            text = f"tool {skill!r} failed (MCP error {exc.code})"
            await _end(updater, TaskState.TASK_STATE_FAILED, text, "upstream_error")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Nothing to do here: the SDK then cancels `execute`, which cancels the tool call (the
        MCP record says `cancelled`), and records the task CANCELED."""


async def _finish(updater: TaskUpdater, skill: str, result: CallToolResult | InputRequiredResult) -> None:
    """The task's end from the tool's answer: its artifact and COMPLETED, or why not."""
    if not isinstance(result, CallToolResult):  # an InputRequiredResult: the tool asks for input
        asked = ", ".join(sorted({r.method for r in (result.input_requests or {}).values()})) or "input"
        await _end(
            updater,
            TaskState.TASK_STATE_FAILED,
            f"tool {skill!r} asked the caller for input ({asked}), which Interlink does not relay to "
            "A2A callers; call it through the virtual MCP server instead",
            "input_required",
        )
        return
    if result.is_error:
        if (result.meta or {}).get("io.interlink/reason") == "invalid_arguments":  # ours
            await _end(updater, TaskState.TASK_STATE_REJECTED, error_text(result), "invalid_arguments")
        else:
            await _end(updater, TaskState.TASK_STATE_FAILED, error_text(result), "tool_error")
        return
    parts = result_parts(result)
    if parts:
        await updater.add_artifact(parts, artifact_id=str(uuid.uuid4()), name=skill)
    await updater.complete()


async def _end(updater: TaskUpdater, state: TaskState, text: str, reason: str) -> None:
    await updater.update_status(
        state, message=updater.new_agent_message([Part(text=text)], {"reason": reason})
    )


def published_agents(
    settings: GatewaySettings, virtuals: Mapping[str, VirtualServer], governors: Mapping[str, Governor]
) -> dict[str, PublishedAgent]:
    """One agent per `a2a_published` entry; a public one over a protected virtual server is refused."""
    configured = {v.name: v for v in settings.virtual_servers}
    agents: dict[str, PublishedAgent] = {}
    for published in settings.a2a_published:
        if published.public and not configured[published.virtual_server].public:
            raise ConfigError(
                f"a2a_published.{published.name}: a public agent cannot publish protected virtual server "
                f"{published.virtual_server!r} (its tools need a caller's identity); drop `public`"
            )
        virtual = virtuals[published.virtual_server]
        config = configured[published.virtual_server]
        # VirtualServer has no public accessor for its governor: the one create_app gave it.
        tool_governor = virtual.governor
        agents[published.name] = PublishedAgent(
            published,
            virtual,
            governors[published.name],
            settings.public_url,
            virtual_scopes=[] if config.public else config.required_scopes,
            tool_governor=tool_governor if isinstance(tool_governor, Governor) else None,
        )
    return agents
