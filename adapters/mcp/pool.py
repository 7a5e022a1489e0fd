"""Long-lived connections to upstream MCP servers: start (lazily or eagerly), supervise, restart, stop.

Each upstream has one `mcp.Client` owned by a supervisor task. Callers borrow it through
`UpstreamConnection.call()`, which bounds the call with the upstream's timeout and translates every
transport failure into `UpstreamUnavailable` / `UpstreamTimeout` naming the upstream and a safe cause.
A replies-with-an-error upstream is not a failure: its JSON-RPC error passes through untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

import anyio
import httpx2
import structlog
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.session import IncomingMessage, MessageHandlerFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp_types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    EmptyResult,
    PaginatedRequestParams,
    PromptListChangedNotification,
    ResourceListChangedNotification,
    ResourceUpdatedNotification,
    SubscribeRequest,
    SubscribeRequestParams,
    Tool,
    ToolListChangedNotification,
    UnsubscribeRequest,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
State = Literal["idle", "starting", "ready", "backoff", "stopped"]

HEALTH_INTERVAL_S: Final = 15.0
"""How often a ready upstream is probed by default, so `/readyz` notices a dead one between calls."""

EventListener = Callable[[str, ServerEvent], Awaitable[None]]
"""Receives (upstream name, change event)."""

_EVENTS: Final[dict[type, ServerEvent]] = {
    ToolListChangedNotification: ToolsListChanged(),
    PromptListChangedNotification: PromptsListChanged(),
    ResourceListChangedNotification: ResourcesListChanged(),
}

MAX_PAGES: Final = 100
"""Upper bound on pages fetched from one upstream list, so a looping cursor cannot hang the gateway."""

_TRANSPORT_ERRORS: Final = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    ConnectionError,
    OSError,
    httpx2.TransportError,
)


@dataclass(frozen=True)
class UpstreamSpec:
    """What the pool needs to know about one upstream; `connect` builds a fresh, unentered Client."""

    name: str
    connect: Callable[[MessageHandlerFnT], Client]
    """Builds a fresh, unentered Client whose upstream notifications go to the given handler."""
    eager: bool
    call_timeout_s: float
    connect_timeout_s: float
    backoff_s: float
    backoff_max_s: float
    health_interval_s: float = HEALTH_INTERVAL_S


@dataclass
class UpstreamStatus:
    """A snapshot for `/readyz`: safe to show (no URLs, no secrets)."""

    name: str
    state: State
    protocol_version: str | None
    last_error: str | None
    restarts: int
    since_s: float = field(default=0.0)


class UpstreamConnection:
    """One upstream: a supervisor keeps a Client connected and restarts it with exponential backoff."""

    def __init__(self, spec: UpstreamSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._state: State = "idle"
        self._since = clock()
        self._client: Client | None = None
        self._last_error: str | None = None
        self._restarts = 0
        self._ready = anyio.Event()
        self._dead = anyio.Event()
        self._wanted = anyio.Event()
        self._stopping = False
        self._tools: dict[str, Tool] | None = None
        self._tools_lock = anyio.Lock()
        self._listeners: list[EventListener] = []
        self._watched: dict[str, int] = {}
        """Resource URIs someone downstream subscribed to, with how many virtual servers want each."""
        self._watch_changed = anyio.Event()
        self._listening = False
        """A 2026-07-28 listen stream is open, so announced changes reach us."""

    @property
    def state(self) -> State:
        return self._state

    def status(self) -> UpstreamStatus:
        version = (
            self._client.protocol_version if self._client is not None and self._state == "ready" else None
        )
        return UpstreamStatus(
            name=self.spec.name,
            state=self._state,
            protocol_version=version,
            last_error=self._last_error,
            restarts=self._restarts,
            since_s=round(self._clock() - self._since, 3),
        )

    async def run(self) -> None:
        """The supervisor loop; runs until `stop()` (cancelled by the pool's task group)."""
        if not self.spec.eager:
            await self._wanted.wait()
        delay = self.spec.backoff_s
        while not self._stopping:
            if await self._connect_once():
                delay = self.spec.backoff_s
            if self._stopping:
                break
            self._set_state("backoff")
            self._restarts += 1
            log.warning(
                "upstream_restart_scheduled", upstream=self.spec.name, delay_s=delay, cause=self._last_error
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, self.spec.backoff_max_s)
        self._set_state("stopped")

    async def _connect_once(self) -> bool:
        """Connect, serve until the connection dies; True if it was ever ready."""
        self._set_state("starting")
        self._dead = anyio.Event()
        was_ready = False
        with anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + self.spec.connect_timeout_s
            try:
                async with self.spec.connect(self._on_message) as client:
                    scope.deadline = math.inf
                    self._client = client
                    self._tools = None
                    self._set_state("ready")
                    self._last_error = None
                    was_ready = True
                    self._ready.set()
                    log.info("upstream_ready", upstream=self.spec.name, protocol=client.protocol_version)
                    async with anyio.create_task_group() as tg:
                        if _wants_listen(client):
                            tg.start_soon(self._listen, client)
                        else:
                            tg.start_soon(self._resubscribe, client)
                        await self._watch(client)
                        tg.cancel_scope.cancel()
            except Exception as exc:  # noqa: BLE001 - any failure of a child/remote is a restart cause
                self._last_error = _describe(exc)
                log.warning("upstream_failed", upstream=self.spec.name, cause=self._last_error, exc_info=exc)
            finally:
                self._client = None
                self._ready = anyio.Event()
        if scope.cancelled_caught and not was_ready:
            self._last_error = f"did not start within {self.spec.connect_timeout_s:g}s"
            log.warning(
                "upstream_connect_timeout", upstream=self.spec.name, timeout_s=self.spec.connect_timeout_s
            )
        return was_ready

    async def _watch(self, client: Client) -> None:
        """Return when the connection is known dead: a failed call marked it, or a health probe failed."""
        while not self._stopping:
            with anyio.move_on_after(self.spec.health_interval_s):
                await self._dead.wait()
                return
            try:
                with anyio.fail_after(self.spec.call_timeout_s):
                    await _probe(client)
            except Exception as exc:  # noqa: BLE001 - a failed probe means restart
                self._last_error = f"health probe failed: {_describe(exc)}"
                return

    def add_listener(self, listener: EventListener) -> None:
        """Call `listener` for every change the upstream announces (tools, prompts, resources)."""
        self._listeners.append(listener)

    async def _on_message(self, message: IncomingMessage) -> None:
        """Handshake-era upstreams announce changes as notifications on the connection."""
        event = _EVENTS.get(type(message))
        if isinstance(message, ResourceUpdatedNotification):
            await self._emit(ResourceUpdated(uri=str(message.params.uri)))
        elif event is not None:
            await self._emit(event)

    async def _listen(self, client: Client) -> None:
        """2026-07-28 upstreams announce changes on a `subscriptions/listen` stream; hold one open.

        The stream's filter carries the watched resource URIs, so it is reopened when they change.
        """
        while not self._stopping:
            self._watch_changed = anyio.Event()
            uris = sorted(self._watched)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._relay_listen, client, uris)
                await self._watch_changed.wait()
                tg.cancel_scope.cancel()

    async def _relay_listen(self, client: Client, uris: list[str]) -> None:
        try:
            async with client.listen(
                tools_list_changed=True,
                prompts_list_changed=True,
                resources_list_changed=True,
                resource_subscriptions=uris,
            ) as subscription:
                self._listening = True
                async for event in subscription:
                    await self._emit(event)
        except Exception as exc:  # noqa: BLE001 - losing change events must not take the upstream down
            log.warning("upstream_listen_ended", upstream=self.spec.name, cause=_describe(exc))
        finally:
            self._listening = False

    async def _resubscribe(self, client: Client) -> None:
        """After a restart, a handshake-era upstream has forgotten our resource subscriptions."""
        for uri in list(self._watched):
            try:
                with anyio.fail_after(self.spec.call_timeout_s):
                    await _legacy_subscription(client, uri, subscribe=True)
            except Exception as exc:  # noqa: BLE001 - one bad URI must not stop the others
                log.warning("upstream_resubscribe_failed", upstream=self.spec.name, cause=_describe(exc))

    async def watch_resource(self, uri: str) -> None:
        """Ask the upstream for `resources/updated` events about `uri` (reference-counted)."""
        self._watched[uri] = self._watched.get(uri, 0) + 1
        if self._watched[uri] == 1:
            try:
                await self._apply_watch(uri, subscribe=True)
            except BaseException:
                self._watched.pop(uri, None)
                raise

    async def unwatch_resource(self, uri: str) -> None:
        """Drop one interest in `uri`; the upstream subscription ends with the last one."""
        count = self._watched.get(uri, 0) - 1
        if count > 0:
            self._watched[uri] = count
            return
        self._watched.pop(uri, None)
        try:
            await self._apply_watch(uri, subscribe=False)
        except (UpstreamUnavailable, UpstreamTimeout, MCPError) as exc:
            # A dead upstream forgot the subscription anyway; a restart does not renew it.
            log.info("upstream_unsubscribe_failed", upstream=self.spec.name, cause=str(exc))

    async def _apply_watch(self, uri: str, *, subscribe: bool) -> None:
        client = await self._borrow()
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            self._watch_changed.set()  # the listen loop reopens with the new URI set
            return

        await self.call(lambda c: _legacy_subscription(c, uri, subscribe=subscribe))

    async def _emit(self, event: ServerEvent) -> None:
        if isinstance(event, ToolsListChanged):
            self._tools = None
        for listener in self._listeners:
            try:
                await listener(self.spec.name, event)
            except Exception:  # noqa: BLE001 - one listener's failure must not starve the others
                log.exception("upstream_event_listener_failed", upstream=self.spec.name)

    def _set_state(self, state: State) -> None:
        if state != self._state:
            self._state = state
            self._since = self._clock()

    async def _borrow(self) -> Client:
        self._wanted.set()
        if self._state == "backoff" and self._last_error is not None:
            raise UpstreamUnavailable(
                f"upstream {self.spec.name!r} is unavailable ({self._last_error}); retrying in background",
                upstream=self.spec.name,
            )
        if self._client is None or self._state != "ready":
            with anyio.move_on_after(self.spec.connect_timeout_s):
                await self._ready.wait()
        if self._client is None:
            cause = self._last_error or f"not ready within {self.spec.connect_timeout_s:g}s"
            raise UpstreamUnavailable(
                f"upstream {self.spec.name!r} is unavailable ({cause})", upstream=self.spec.name
            )
        return self._client

    async def call(self, op: Callable[[Client], Awaitable[T]]) -> T:
        """Run `op` on the upstream's client within its call timeout, translating transport failures."""
        client = await self._borrow()
        with self._map_errors():
            with anyio.fail_after(self.spec.call_timeout_s):
                return await op(client)

    @contextmanager
    def _map_errors(self) -> Iterator[None]:
        name = self.spec.name
        try:
            yield
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream {name!r} did not answer within {self.spec.call_timeout_s:g}s", upstream=name
            ) from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._mark_dead("connection closed")
                raise UpstreamUnavailable(f"upstream {name!r} closed the connection", upstream=name) from exc
            if exc.code == REQUEST_TIMEOUT:
                raise UpstreamTimeout(f"upstream {name!r} timed out", upstream=name) from exc
            raise
        except _TRANSPORT_ERRORS as exc:
            cause = _describe(exc)
            self._mark_dead(cause)
            raise UpstreamUnavailable(f"upstream {name!r} is unavailable ({cause})", upstream=name) from exc

    async def tools(self, *, refresh: bool = False) -> dict[str, Tool]:
        """The upstream's tools by name, listed once per connection and again on `refresh`."""
        async with self._tools_lock:
            if self._tools is None or refresh:
                self._tools = {t.name: t for t in await self.call(_list_all_tools)}
            return self._tools

    @property
    def tools_change_announced(self) -> bool:
        """Whether the connected upstream promises `tools/list_changed` (so a cached list stays true)."""
        client = self._client
        if client is None:
            return False
        caps = client.server_capabilities.tools
        delivered = self._listening or client.protocol_version not in MODERN_PROTOCOL_VERSIONS
        return caps is not None and bool(caps.list_changed) and delivered

    def forget_tools(self) -> None:
        """Drop the cached tool list (the upstream said it changed)."""
        self._tools = None

    def _mark_dead(self, cause: str) -> None:
        self._last_error = cause
        self._dead.set()

    def stop(self) -> None:
        self._stopping = True
        self._dead.set()
        self._wanted.set()


async def _probe(client: Client) -> None:
    """A cheap request that proves the upstream answers: `ping` was removed in 2026-07-28, whose
    equivalent is `server/discover`; handshake-era upstreams get `ping`."""
    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
        await client.session.discover()
    else:
        await client.session.send_ping()


async def _legacy_subscription(client: Client, uri: str, *, subscribe: bool) -> EmptyResult:
    """resources/(un)subscribe, which only 2025-11-25 upstreams have (sent as a plain request; the
    SDK's helpers for it are marked deprecated because the 2026-07-28 era replaced it)."""
    request: SubscribeRequest | UnsubscribeRequest
    if subscribe:
        request = SubscribeRequest(params=SubscribeRequestParams(uri=uri))
    else:
        request = UnsubscribeRequest(params=UnsubscribeRequestParams(uri=uri))
    return await client.session.send_request(request, EmptyResult)


def _wants_listen(client: Client) -> bool:
    caps = client.server_capabilities
    announces = any(c is not None and c.list_changed for c in (caps.tools, caps.prompts, caps.resources))
    subscribable = caps.resources is not None and bool(caps.resources.subscribe)
    return client.protocol_version in MODERN_PROTOCOL_VERSIONS and (announces or subscribable)


async def _list_all_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.session.list_tools(
            params=PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _describe(exc: BaseException) -> str:
    """A cause safe to show a caller: the kind of failure, never a URL, path or secret."""
    if isinstance(exc, httpx2.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx2.TimeoutException):
        return "network timeout"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx2.TransportError):
        return "network error"
    if isinstance(exc, FileNotFoundError):
        return "command not found"
    if isinstance(exc, GatewayError):  # our own messages are safe to show by construction
        return exc.message.removeprefix(f"upstream {exc.detail.get('upstream', '')!r}: ")
    if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream):
        return "connection closed"
    if isinstance(exc, MCPError):
        return f"protocol error {exc.code}"
    if isinstance(exc, BaseExceptionGroup):
        return _describe(exc.exceptions[0])
    if isinstance(exc, OSError):
        return f"OS error {exc.errno}" if exc.errno else "OS error"
    return type(exc).__name__


class UpstreamPool:
    """All upstream connections of one gateway process; `running()` owns their supervisor tasks."""

    def __init__(self, specs: list[UpstreamSpec], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.connections = {s.name: UpstreamConnection(s, clock=clock) for s in specs}

    def get(self, name: str) -> UpstreamConnection:
        return self.connections[name]

    def statuses(self) -> list[UpstreamStatus]:
        return [c.status() for c in self.connections.values()]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[UpstreamPool]:
        async with anyio.create_task_group() as tg:
            self._start_all(tg)
            try:
                yield self
            finally:
                for conn in self.connections.values():
                    conn.stop()
                tg.cancel_scope.cancel()

    def _start_all(self, tg: TaskGroup) -> None:
        for conn in self.connections.values():
            tg.start_soon(conn.run, name=f"upstream:{conn.spec.name}")


def describe_failure(exc: BaseException) -> str:
    """Public form of the safe-cause helper, for callers that report upstream failures themselves."""
    return _describe(exc)
