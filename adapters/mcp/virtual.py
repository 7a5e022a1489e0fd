"""A virtual MCP server: one endpoint that aggregates and forwards the capabilities of several upstreams.

Built on the SDK's low-level `Server`, whose handlers are evaluated per request, so the catalog is
always computed from live upstream state. Lists fan out to every upstream concurrently and leave out
(and log) an upstream that fails; a call goes to exactly one upstream and a failure names it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import anyio
import structlog
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from mcp import Client
from mcp.server import InitializationOptions
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp_types import (
    INVALID_REQUEST,
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    CompleteRequestParams,
    CompleteResult,
    CreateMessageResult,
    ElicitResult,
    EmptyResult,
    GetPromptRequestParams,
    GetPromptResult,
    InputRequiredResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListRootsResult,
    ListToolsResult,
    PaginatedRequestParams,
    Prompt,
    PromptReference,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    Result,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    TextContent,
    Tool,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter

from adapters.governance import CallGovernor
from adapters.mcp.errors import to_mcp_error
from adapters.mcp.guard import McpRequestGuard
from adapters.mcp.naming import Namespacing, Origin, ToolSelection, expose, split
from adapters.mcp.pool import MAX_PAGES, UpstreamConnection
from adapters.mcp.providers import ProgressFn, ProviderCall, ToolProvider
from adapters.mcp.routing import ResourceRoutes
from gateway.errors import GatewayError, UnknownPrompt, UnknownResource, UnknownTool

log = structlog.get_logger(__name__)

T = TypeVar("T")
Ctx = Any
"""The SDK's `ServerRequestContext`; its generics add nothing for us."""

INPUT_RESULT_TYPES: Final[Mapping[str, type[Any]]] = {
    "elicitation/create": ElicitResult,
    "sampling/createMessage": CreateMessageResult,
    "roots/list": ListRootsResult,
}
"""Result models of the server->client requests an upstream may embed in an `InputRequiredResult`."""

CALL_RESULT: Final = TypeAdapter[CallToolResult | InputRequiredResult](CallToolResult | InputRequiredResult)
"""An upstream's answer to tools/call: the result, or (2026-07-28) a request for input."""

MAX_INPUT_ROUNDS: Final = 8
"""Most input rounds the gateway drives for a handshake-era caller before giving up."""

NOTIFY_TIMEOUT_S: Final = 2.0
"""How long relaying one change notification to one handshake-era session may take."""

MAX_LEGACY_SESSIONS: Final = 10_000
"""Most handshake-era sessions remembered for change notifications (least recently active go first)."""

SESSION_ID_HEADER: Final = "mcp-session-id"

PROTOCOL_META_PREFIX: Final = "io.modelcontextprotocol/"

UNWATCH_TIMEOUT_S: Final = 5.0
"""How long ending an upstream resource subscription may hold up a closing listen stream."""
"""Most input rounds the gateway drives for a handshake-era caller before giving up."""


class _FederatingServer(Server[Any]):
    """The low-level server; tells handshake-era clients `listChanged` (upstream changes are relayed)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(True, True, True)
        return super().create_initialization_options(options, experimental_capabilities, extensions)


class Governor(CallGovernor, Protocol):
    """The MCP face's view of the gateway's policy and audit (see `adapters.governance`), plus:
    `shows` says whether a listed item may be shown; tool pinning: `pinned` says whether an
    upstream's tool may be served as defined now, for every caller; `admit` raises ToolNotApproved
    when not (named `name`, as the caller called it)."""

    async def pinned(self, upstream: str, tool: Tool) -> bool: ...

    async def admit(self, name: str, upstream: str, tool: Tool) -> None: ...


UNGOVERNED: Final = frozenset({"subscriptions/listen"})
"""Methods not wrapped by the governor: the listen stream lives as long as the caller wants."""


class VirtualServer:
    """The MCP endpoint `/mcp/<name>`: a selection of upstream tools, resources and prompts."""

    def __init__(
        self,
        name: str,
        connections: Sequence[UpstreamConnection],
        *,
        selection: ToolSelection,
        namespacing: Namespacing,
        max_body_bytes: int,
        security: TransportSecuritySettings | None,
        version: str,
        governor: Governor | None = None,
        providers: Sequence[ToolProvider] = (),
    ) -> None:
        self.name = name
        self._governor = governor
        self._conns = {c.spec.name: c for c in connections}
        self._providers = {p.name: p for p in providers}
        """Non-MCP upstreams (protocol bridges): tools only, called in-process."""
        self._selection = selection
        self._namespacing: Namespacing = namespacing
        self._exposed: dict[str, tuple[str, Tool]] = {}
        self._unapproved: frozenset[str] = frozenset()
        """Exposed names whose definition is not approved (tool pinning): resolvable, never shown."""
        self._validators: dict[tuple[str, str], tuple[Tool, Validator]] = {}
        self._routes = ResourceRoutes.build([], [])
        self._bus = InMemorySubscriptionBus()
        """Change events for 2026-07-28 callers' `subscriptions/listen` streams."""
        self._listen_handler = ListenHandler(self._bus)
        self._legacy_sessions: dict[str, Any] = {}
        """Handshake-era sessions by `Mcp-Session-Id`: the latest request's ServerSession, whose
        connection-wide channel reaches the session's GET stream. Dropped when a send fails."""
        self._legacy_subs: dict[str, set[str]] = {}
        """Ids of the handshake-era sessions subscribed to each resource URI."""
        for conn in connections:
            conn.add_listener(self._on_upstream_event)
        sources = [*self._conns, *self._providers]
        self.server = _FederatingServer(
            f"interlink/{name}",
            version=version,
            instructions=f"Interlink virtual MCP server {name!r}: tools of {', '.join(sources)}.",
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._translating(self._list_tools),
            on_call_tool=self._translating(self._call_tool),
            on_list_resources=self._translating(self._list_resources),
            on_list_resource_templates=self._translating(self._list_resource_templates),
            on_read_resource=self._translating(self._read_resource),
            on_subscribe_resource=self._translating(self._subscribe),
            on_unsubscribe_resource=self._translating(self._unsubscribe),
            on_list_prompts=self._translating(self._list_prompts),
            on_get_prompt=self._translating(self._get_prompt),
            on_completion=self._translating(self._complete),
            on_subscriptions_listen=self._translating(self._listen),
        )
        self.manager = StreamableHTTPSessionManager(
            app=self.server, security_settings=security, max_request_body_size=max_body_bytes
        )
        self.asgi = McpRequestGuard(StreamableHTTPASGIApp(self.manager), max_body_bytes)

    @property
    def governor(self) -> Governor | None:
        """Its policy and audit seam (another protocol's face decides visibility with it)."""
        return self._governor

    # -- plumbing ---------------------------------------------------------------------------------

    def _translating(
        self,
        handler: Callable[[Ctx, Any], Awaitable[T]],
    ) -> Callable[[Ctx, Any], Awaitable[T]]:
        """Turn our GatewayErrors into JSON-RPC errors; an upstream's own MCPError passes through.

        Also remembers each handshake-era session, so upstream changes can be relayed to it.
        """

        async def wrapped(ctx: Ctx, params: Any) -> T:
            if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                self._remember_session(ctx)
            try:
                governor = self._governor
                if governor is None or ctx.request is None or ctx.method in UNGOVERNED:
                    return await handler(ctx, params)
                name, args = _target(params)
                return await governor.around(
                    ctx.request.scope, ctx.method, name, args, lambda: handler(ctx, params), _meta(params)
                )
            except GatewayError as exc:
                log.info("mcp_request_failed", virtual=ctx.method, reason=exc.reason, **exc.detail)
                raise to_mcp_error(exc) from None

        return wrapped

    def _remember_session(self, ctx: Ctx) -> None:
        session_id = _session_id(ctx)
        if session_id is None:
            return
        self._legacy_sessions.pop(session_id, None)  # re-insert: the dict stays ordered by last use
        self._legacy_sessions[session_id] = ctx.session
        if len(self._legacy_sessions) > MAX_LEGACY_SESSIONS:
            del self._legacy_sessions[next(iter(self._legacy_sessions))]

    async def _each(self, op: Callable[[UpstreamConnection], Awaitable[T]]) -> list[tuple[str, T]]:
        """Run `op` on every upstream concurrently; failed upstreams are logged and left out."""
        results: dict[str, T] = {}

        async def one(conn: UpstreamConnection) -> None:
            try:
                results[conn.spec.name] = await op(conn)
            except (GatewayError, MCPError) as exc:
                log.warning("upstream_left_out_of_list", upstream=conn.spec.name, cause=str(exc))

        async with anyio.create_task_group() as tg:
            for conn in self._conns.values():
                tg.start_soon(one, conn)
        return [(n, results[n]) for n in self._conns if n in results]

    # -- tools ------------------------------------------------------------------------------------

    async def _list_tools(self, ctx: Ctx, params: PaginatedRequestParams | None) -> ListToolsResult:
        # An upstream that announces tool changes is listed once and again after each announcement;
        # one that does not is asked every time, so a list is never staler than the upstream.
        per_upstream = await self._each(lambda c: c.tools(refresh=not c.tools_change_announced))
        per_upstream += await self._each_provider()
        candidates = [
            (upstream, tool, await self._pinned(upstream, tool))
            for upstream, tools in per_upstream
            for tool in tools.values()
            if self._selection.selects(Origin(upstream, tool.name))
        ]
        # Approved definitions first (a stable sort): a tool awaiting approval never shadows one.
        candidates.sort(key=lambda c: not c[2])
        exposed: dict[str, tuple[str, Tool]] = {}
        unapproved: set[str] = set()
        for upstream, tool, approved in candidates:
            name = expose(Origin(upstream, tool.name), self._namespacing)
            if name in exposed:
                log.warning("tool_name_clash_hidden", tool=name, kept=exposed[name][0], hidden=upstream)
                continue
            exposed[name] = (upstream, tool)
            if not approved:
                unapproved.add(name)
        self._exposed, self._unapproved = exposed, frozenset(unapproved)
        scope = ctx.request.scope if ctx is not None and ctx.request is not None else None
        shown = [
            (n, t)
            for n, (u, t) in exposed.items()
            if n not in unapproved and self._shows(ctx, "tools/call", n) and self._provider_shows(scope, u, t)
        ]
        return ListToolsResult(tools=[t.model_copy(update={"name": n}) for n, t in shown])

    async def _each_provider(self) -> list[tuple[str, dict[str, Tool]]]:
        """Every provider's tools, concurrently; a failing provider is logged and left out."""
        results: dict[str, dict[str, Tool]] = {}

        async def one(provider: ToolProvider) -> None:
            try:
                results[provider.name] = await provider.tools()
            except (GatewayError, MCPError) as exc:
                log.warning("upstream_left_out_of_list", upstream=provider.name, cause=str(exc))
            except Exception as exc:  # noqa: BLE001 - a broken bridge never takes the list down
                log.error("upstream_left_out_of_list", upstream=provider.name, cause=type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for provider in self._providers.values():
                tg.start_soon(one, provider)
        return [(n, results[n]) for n in self._providers if n in results]

    def _provider_shows(self, scope: Mapping[str, Any] | None, upstream: str, tool: Tool) -> bool:
        provider = self._providers.get(upstream)
        return provider is None or scope is None or provider.shows(scope, tool)

    async def _pinned(self, upstream: str, tool: Tool) -> bool:
        return self._governor is None or await self._governor.pinned(upstream, tool)

    def _shows(self, ctx: Ctx, action: str, name: str) -> bool:
        if self._governor is None or ctx is None or ctx.request is None:
            return True
        return self._governor.shows(ctx.request.scope, action, name)

    async def _check(
        self, ctx: Ctx, action: str, name: str, args: Mapping[str, Any], definition: Any = None
    ) -> None:
        if self._governor is not None and ctx is not None and ctx.request is not None:
            await self._governor.check(ctx.request.scope, action, name, args, definition)

    async def _check_scope(
        self,
        scope: Mapping[str, Any] | None,
        name: str,
        args: Mapping[str, Any],
        definition: Tool,
        bridge: str | None,
    ) -> None:
        if self._governor is not None and scope is not None:
            await self._governor.check(scope, "tools/call", name, args, definition, bridge)

    def _input_schema(self, exposed: str) -> Mapping[str, Any] | None:
        found = self._exposed.get(exposed)
        return found[1].input_schema if found and exposed not in self._unapproved else None

    async def _origin(self, exposed: str) -> Origin | None:
        if self._namespacing == "prefix":
            return split(exposed)
        if exposed not in self._exposed:
            await self._list_tools(None, None)
        found = self._exposed.get(exposed)
        return Origin(found[0], found[1].name) if found else None

    async def _resolve_tool(self, exposed: str) -> tuple[UpstreamConnection | ToolProvider, Tool]:
        origin = await self._origin(exposed)
        source = (
            self._conns.get(origin.upstream) or self._providers.get(origin.upstream)
            if origin is not None
            else None
        )
        if origin is None or source is None or not self._selection.selects(origin):
            raise UnknownTool(f"unknown tool {exposed!r} on virtual server {self.name!r}")
        tool = (await source.tools()).get(origin.name) or (await source.tools(refresh=True)).get(origin.name)
        if tool is None:
            raise UnknownTool(f"unknown tool {exposed!r} on virtual server {self.name!r}")
        return source, tool

    def _argument_errors(self, upstream: str, tool: Tool, arguments: Mapping[str, Any]) -> list[str]:
        cached = self._validators.get((upstream, tool.name))
        if cached is None or cached[0] is not tool:
            cls = validator_for(tool.input_schema, default=Draft202012Validator)
            cached = (tool, cls(tool.input_schema))
            self._validators[(upstream, tool.name)] = cached
        errors = sorted(cached[1].iter_errors(arguments), key=lambda e: list(e.absolute_path))
        return [f"{e.json_path}: {e.message}" for e in errors[:10]]

    async def _call_tool(
        self, ctx: Ctx, params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        async def progress(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        # Ask the upstream for progress only when the caller asked us (it costs a notification each).
        wants_progress = params.meta is not None and params.meta.get("progress_token") is not None
        caps = ctx.session.client_capabilities
        result, send = await self._invoke(
            ctx.request.scope if ctx.request is not None else None,
            params.name,
            params.arguments or {},
            progress=progress if wants_progress else None,
            can_elicit=caps is not None and caps.elicitation is not None,
            input_responses=params.input_responses,
            request_state=params.request_state,
            meta=_meta(params) or {},
        )
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return result  # the caller answers the input requests and retries with them (pass-through)
        return _own(await self._drive_input_rounds(ctx, result, send))

    async def call_as(
        self,
        scope: Mapping[str, Any],
        name: str,
        arguments: Mapping[str, Any],
        *,
        progress: ProgressFn | None = None,
        bridge: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallToolResult | InputRequiredResult:
        """Call tool `name` for the caller authenticated in `scope`, from another protocol (the
        A2A face publishing this server): the same resolution, schema validation, policy, approval,
        rate limits and audit record as an MCP caller's call; `bridge` names the other protocol's
        resource (recorded). A request for input comes back as an `InputRequiredResult`."""

        async def run() -> CallToolResult | InputRequiredResult:
            result, _send = await self._invoke(
                scope, name, arguments, progress=progress, can_elicit=False, bridge=bridge, meta=meta or {}
            )
            return result

        try:
            if self._governor is None:
                return await run()
            return await self._governor.around(scope, "tools/call", name, arguments, run, meta)
        except GatewayError as exc:
            raise to_mcp_error(exc) from None

    async def listed_tools(self, scope: Mapping[str, Any] | None) -> list[Tool]:
        """The tools the caller authenticated in `scope` would list (all, for None), named as exposed."""
        await self._list_tools(None, None)
        out: list[Tool] = []
        for exposed, (upstream, tool) in self._exposed.items():
            if exposed in self._unapproved or not self._provider_shows(scope, upstream, tool):
                continue
            if scope is not None and self._governor is not None:
                if not self._governor.shows(scope, "tools/call", exposed):
                    continue
            out.append(tool.model_copy(update={"name": exposed}))
        return out

    async def _invoke(
        self,
        scope: Mapping[str, Any] | None,
        name: str,
        arguments: Mapping[str, Any],
        *,
        progress: ProgressFn | None,
        can_elicit: bool,
        input_responses: Any = None,
        request_state: str | None = None,
        bridge: str | None = None,
        meta: Mapping[str, Any],
    ) -> tuple[
        CallToolResult | InputRequiredResult,
        Callable[[Any, str | None], Awaitable[CallToolResult | InputRequiredResult]],
    ]:
        """Resolve, admit (pinning), validate, decide, forward; the result and how to send again
        (with answers to the input it asked for)."""
        source, tool = await self._resolve_tool(name)
        upstream = source.spec.name if isinstance(source, UpstreamConnection) else source.name
        if self._governor is not None:
            await self._governor.admit(name, upstream, tool)
        problems = self._argument_errors(upstream, tool, arguments)
        if problems:
            # MCP 2025-11-25 "Tools" §Error Handling: input validation errors are tool execution
            # errors (isError), so the model can read them and correct its call.
            text = f"Invalid arguments for tool {name!r}: " + "; ".join(problems)
            invalid = CallToolResult(
                content=[TextContent(type="text", text=text)],
                is_error=True,
                structured_content=None,
                _meta={"io.interlink/reason": "invalid_arguments"},
            )
            return invalid, _no_resend
        if isinstance(source, UpstreamConnection):
            await self._check_scope(scope, name, arguments, tool, bridge)
            conn = source

            async def send(responses: Any, state: str | None) -> CallToolResult | InputRequiredResult:
                request = CallToolRequest(
                    params=CallToolRequestParams(
                        name=tool.name, arguments=arguments, input_responses=responses, request_state=state
                    )
                )

                async def op(client: Client) -> CallToolResult | InputRequiredResult:
                    # A plain request rather than `session.call_tool`, which would re-validate the
                    # result against the output schema: the upstream's answer passes through as it
                    # is, and the caller's own client validates it against the schema it was shown.
                    return await client.session.send_request(request, CALL_RESULT, progress_callback=progress)

                return await conn.call(op)

        else:
            provider = source
            await self._check_scope(scope, name, arguments, tool, provider.bridged(tool) or bridge)

            async def send(responses: Any, state: str | None) -> CallToolResult | InputRequiredResult:
                return await provider.call_tool(
                    ProviderCall(
                        virtual=self.name,
                        exposed=name,
                        tool=tool,
                        arguments=arguments,
                        scope=scope or {},
                        progress=progress,
                        can_elicit=can_elicit,
                        input_responses=responses,
                        request_state=state,
                        meta=meta,
                    )
                )

        return _own(await send(input_responses, request_state)), send

    async def _drive_input_rounds(
        self,
        ctx: Ctx,
        result: CallToolResult | InputRequiredResult,
        send: Callable[[Any, str | None], Awaitable[CallToolResult | InputRequiredResult]],
    ) -> CallToolResult:
        """Handshake-era caller: ask it each embedded question as a real server->client request."""
        for _ in range(MAX_INPUT_ROUNDS):
            if isinstance(result, CallToolResult):
                return result
            answers: dict[str, Any] = {}
            for key, request in (result.input_requests or {}).items():
                answers[key] = await ctx.session.send_request(
                    request,
                    INPUT_RESULT_TYPES[request.method],
                    metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
                )
            result = await send(answers, result.request_state)
        if isinstance(result, CallToolResult):
            return result
        raise MCPError(-32603, f"upstream asked for input more than {MAX_INPUT_ROUNDS} times")

    # -- resources --------------------------------------------------------------------------------

    async def _refresh_resources(self) -> tuple[list[Resource], list[ResourceTemplate]]:
        async def resources(conn: UpstreamConnection) -> list[Resource]:
            return await conn.call(_all_resources)

        async def templates(conn: UpstreamConnection) -> list[ResourceTemplate]:
            return await conn.call(_all_templates)

        listed = await self._each(resources)
        templated = await self._each(templates)
        self._routes = ResourceRoutes.build(
            [(u, [r.uri for r in rs]) for u, rs in listed],
            [(u, [t.uri_template for t in ts]) for u, ts in templated],
        )
        seen: set[str] = set()
        out: list[Resource] = []
        for _u, rs in listed:
            for r in rs:
                if r.uri not in seen:
                    seen.add(r.uri)
                    out.append(r)
        unique = {t.uri_template: t for _u, ts in reversed(templated) for t in ts}
        return out, [unique[k] for k in dict.fromkeys(t.uri_template for _u, ts in templated for t in ts)]

    async def _list_resources(self, ctx: Ctx, params: PaginatedRequestParams | None) -> ListResourcesResult:
        resources, _templates = await self._refresh_resources()
        return ListResourcesResult(
            resources=[r for r in resources if self._shows(ctx, "resources/read", r.uri)]
        )

    async def _list_resource_templates(
        self, ctx: Ctx, params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        _resources, templates = await self._refresh_resources()
        shown = [t for t in templates if self._shows(ctx, "resources/read", t.uri_template)]
        return ListResourceTemplatesResult(resource_templates=shown)

    async def _resource_owner(self, uri: str) -> UpstreamConnection:
        owner = self._routes.owner(uri)
        if owner is None:
            await self._refresh_resources()
            owner = self._routes.owner(uri)
        if owner is None and len(self._conns) == 1:
            # One upstream: nothing to disambiguate, so an unlisted URI (a dynamic resource) is its
            # to accept or refuse, exactly as if the caller were connected to it directly.
            owner = next(iter(self._conns))
        if owner is None:
            raise UnknownResource(
                f"no upstream of virtual server {self.name!r} serves resource {uri!r}", uri=uri
            )
        return self._conns[owner]

    async def _read_resource(
        self, ctx: Ctx, params: ReadResourceRequestParams
    ) -> ReadResourceResult | InputRequiredResult:
        conn = await self._resource_owner(params.uri)
        await self._check(ctx, "resources/read", params.uri, {})

        async def op(client: Client) -> ReadResourceResult:
            return await client.session.read_resource(params.uri)

        return _own(await conn.call(op))

    async def _subscribe(self, ctx: Ctx, params: SubscribeRequestParams) -> EmptyResult:
        """Handshake era: the first subscriber of a URI makes the owning upstream watch it."""
        conn = await self._resource_owner(params.uri)
        await self._check(ctx, "resources/read", params.uri, {})
        session_id = _session_id(ctx)
        if session_id is None:
            raise MCPError(INVALID_REQUEST, "resources/subscribe needs a session (Mcp-Session-Id)")
        subscribers = self._legacy_subs.get(params.uri)
        if subscribers is None:
            await conn.watch_resource(params.uri)
            subscribers = self._legacy_subs.setdefault(params.uri, set())
        subscribers.add(session_id)
        return EmptyResult()

    async def _unsubscribe(self, ctx: Ctx, params: UnsubscribeRequestParams) -> EmptyResult:
        """The last subscriber leaving ends the upstream subscription (unknown URIs are a no-op)."""
        subscribers = self._legacy_subs.get(params.uri)
        if subscribers is not None:
            subscribers.discard(_session_id(ctx) or "")
            if not subscribers:
                await self._drop_subscription(params.uri)
        return EmptyResult()

    async def _drop_subscription(self, uri: str) -> None:
        self._legacy_subs.pop(uri, None)
        owner = self._routes.owner(uri)
        if owner is not None:
            await self._conns[owner].unwatch_resource(uri)

    # -- change notifications ---------------------------------------------------------------------

    async def _listen(self, ctx: Ctx, params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        """2026-07-28 `subscriptions/listen`: the SDK's handler serves the stream from our bus;
        resource URIs in the filter are watched at their owning upstream while the stream is open.
        A URI no upstream serves is honored and never fires, as the specification allows."""
        watched: list[tuple[UpstreamConnection, str]] = []
        try:
            for uri in params.notifications.resource_subscriptions or ():
                try:
                    conn = await self._resource_owner(uri)
                    await self._check(ctx, "resources/read", uri, {})
                    await conn.watch_resource(uri)
                except (GatewayError, MCPError) as exc:
                    log.info("listen_resource_not_watched", virtual=self.name, uri=uri, cause=str(exc))
                    continue
                watched.append((conn, uri))
            return await self._listen_handler(ctx, params)
        finally:
            with anyio.move_on_after(UNWATCH_TIMEOUT_S, shield=True):
                for conn, uri in watched:
                    await conn.unwatch_resource(uri)

    async def _on_upstream_event(self, upstream: str, event: ServerEvent) -> None:
        """Relay an upstream's change to every caller: modern listen streams and legacy sessions."""
        await self._bus.publish(event)
        if isinstance(event, ResourceUpdated):
            targets = list(self._legacy_subs.get(event.uri, ()))
        else:
            targets = list(self._legacy_sessions)
        for session_id in targets:
            session = self._legacy_sessions.get(session_id)
            delivered = False
            if session is not None:
                with anyio.move_on_after(NOTIFY_TIMEOUT_S):
                    try:
                        await _notify_legacy(session, event)
                        delivered = True
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        pass
            if not delivered:
                await self._forget_session(session_id)

    async def _forget_session(self, session_id: str) -> None:
        """A session that cannot be reached is gone: drop it and its resource subscriptions."""
        self._legacy_sessions.pop(session_id, None)
        for uri, subscribers in list(self._legacy_subs.items()):
            subscribers.discard(session_id)
            if not subscribers:
                await self._drop_subscription(uri)

    # -- prompts and completion -------------------------------------------------------------------

    async def _list_prompts(self, ctx: Ctx, params: PaginatedRequestParams | None) -> ListPromptsResult:
        per_upstream = await self._each(lambda c: c.call(_all_prompts))
        out: dict[str, Prompt] = {}
        for upstream, prompts in per_upstream:
            for prompt in prompts:
                out.setdefault(expose(Origin(upstream, prompt.name), self._namespacing), prompt)
        shown = [(n, p) for n, p in out.items() if self._shows(ctx, "prompts/get", n)]
        return ListPromptsResult(prompts=[p.model_copy(update={"name": n}) for n, p in shown])

    async def _prompt_origin(self, exposed: str) -> Origin:
        if self._namespacing == "prefix":
            origin = split(exposed)
        else:
            per_upstream = await self._each(lambda c: c.call(_all_prompts))
            owners = [u for u, ps in per_upstream if any(p.name == exposed for p in ps)]
            origin = Origin(owners[0], exposed) if owners else None
        if origin is None or origin.upstream not in self._conns:
            raise UnknownPrompt(f"unknown prompt {exposed!r} on virtual server {self.name!r}")
        return origin

    async def _get_prompt(
        self, ctx: Ctx, params: GetPromptRequestParams
    ) -> GetPromptResult | InputRequiredResult:
        origin = await self._prompt_origin(params.name)
        await self._check(ctx, "prompts/get", params.name, params.arguments or {})

        async def op(client: Client) -> GetPromptResult:
            return await client.session.get_prompt(origin.name, params.arguments)

        return _own(await self._conns[origin.upstream].call(op))

    async def _complete(self, ctx: Ctx, params: CompleteRequestParams) -> CompleteResult:
        ref = params.ref
        if isinstance(ref, PromptReference):
            origin = await self._prompt_origin(ref.name)
            await self._check(ctx, "prompts/get", ref.name, {})
            conn = self._conns[origin.upstream]
            ref = ref.model_copy(update={"name": origin.name})
        else:
            owner = self._routes.template_owner(ref.uri)
            if owner is None:
                await self._refresh_resources()
                owner = self._routes.template_owner(ref.uri)
            if owner is None:
                raise UnknownResource(f"no upstream serves resource template {ref.uri!r}", uri=ref.uri)
            await self._check(ctx, "resources/read", ref.uri, {})
            conn = self._conns[owner]
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None

        async def op(client: Client) -> CompleteResult:
            return await client.session.complete(ref, argument, context)

        return _own(await conn.call(op))


R = TypeVar("R", bound=Result)


async def _no_resend(responses: Any, state: str | None) -> CallToolResult | InputRequiredResult:
    raise MCPError(INVALID_REQUEST, "nothing to answer: the call was refused")


def _meta(params: Any) -> Mapping[str, Any] | None:
    meta = getattr(params, "meta", None)
    return meta if isinstance(meta, Mapping) else None


def _target(params: Any) -> tuple[str | None, Mapping[str, Any] | None]:
    """The name (tool, prompt, URI) and arguments a request is about, for the governor."""
    if isinstance(params, CallToolRequestParams | GetPromptRequestParams):
        return params.name, params.arguments or {}
    if isinstance(params, ReadResourceRequestParams | SubscribeRequestParams | UnsubscribeRequestParams):
        return params.uri, None
    if isinstance(params, CompleteRequestParams):
        ref = params.ref
        return (ref.name if isinstance(ref, PromptReference) else ref.uri), None
    return None, None


def _own(result: R) -> R:
    """Drop the upstream's protocol-reserved `_meta` keys (its serverInfo, ...): the caller talks to
    Interlink, which stamps its own. Keys of other namespaces (tool-specific metadata) pass through."""
    meta = result.meta
    if not meta or not any(k.startswith(PROTOCOL_META_PREFIX) for k in meta):
        return result
    kept = {k: v for k, v in meta.items() if not k.startswith(PROTOCOL_META_PREFIX)}
    return result.model_copy(update={"meta": kept or None})


def _session_id(ctx: Ctx) -> str | None:
    request = ctx.request
    return request.headers.get(SESSION_ID_HEADER) if request is not None else None


async def _notify_legacy(session: Any, event: ServerEvent) -> None:
    if isinstance(event, ToolsListChanged):
        await session.send_tool_list_changed()
    elif isinstance(event, PromptsListChanged):
        await session.send_prompt_list_changed()
    elif isinstance(event, ResourcesListChanged):
        await session.send_resource_list_changed()
    elif isinstance(event, ResourceUpdated):
        await session.send_resource_updated(event.uri)


async def _all_resources(client: Client) -> list[Resource]:
    if client.server_capabilities.resources is None:
        return []
    out: list[Resource] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.session.list_resources(params=_page(cursor))
        out.extend(page.resources)
        if not (cursor := page.next_cursor):
            break
    return out


async def _all_templates(client: Client) -> list[ResourceTemplate]:
    if client.server_capabilities.resources is None:
        return []
    out: list[ResourceTemplate] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.session.list_resource_templates(params=_page(cursor))
        out.extend(page.resource_templates)
        if not (cursor := page.next_cursor):
            break
    return out


async def _all_prompts(client: Client) -> list[Prompt]:
    if client.server_capabilities.prompts is None:
        return []
    out: list[Prompt] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.session.list_prompts(params=_page(cursor))
        out.extend(page.prompts)
        if not (cursor := page.next_cursor):
            break
    return out


def _page(cursor: str | None) -> PaginatedRequestParams | None:
    return PaginatedRequestParams(cursor=cursor) if cursor else None
