"""A REST system as a tool provider (adapters/mcp/providers.py): its OpenAPI operations are the
tools, and a call is one HTTP request with Interlink's own credential. Imports only `gateway.errors`
from the gateway.

The caller's request never reaches the REST system except as the tool's arguments: no header, token
or cookie of the caller is copied. A response is read up to `max_response_bytes`; the whole call is
bounded by `call_timeout_s`. An unreachable system or a timeout is the gateway's
`UpstreamUnavailable` / `UpstreamTimeout`; an HTTP error is a tool error (adapters/openapi/request.py).
A document that could not be loaded (a URL that is down) is retried in the background with
exponential backoff while `/readyz` shows the upstream in `backoff`.

`max_response_bytes` bounds the decoded body: httpx2 inflates gzip/deflate in pieces of at most
1 MiB (`httpx2._decoders.MAX_DECODE_CHUNK_SIZE`) as the body is read, so a compression bomb costs
at most that much more. A body whose encoding is corrupt is `UpstreamUnavailable`, like malformed
HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx2
import structlog
from jsonschema import Draft202012Validator
from mcp_types import CallToolResult, TextContent, Tool

from adapters.mcp.clients import UPSTREAM_LIMITS
from adapters.mcp.pool import State, UpstreamStatus
from adapters.mcp.providers import ProviderCall
from adapters.openapi.convert import Conversion
from adapters.openapi.request import REASON, ArgumentError, HttpAnswer, build, render
from adapters.openapi.schema import OpenApiError
from gateway.errors import UnknownTool, UpstreamTimeout, UpstreamUnavailable

log = structlog.get_logger(__name__)

Loader = Callable[[], Awaitable[Conversion]]
"""Loads and converts the document; raises OpenApiError with a safe message when it cannot."""

RETRY_FIRST_S: Final = 1.0


@dataclass(frozen=True)
class RestOptions:
    """How to reach the REST system; every credential here is Interlink's own."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Static headers and an API key in a header (they win over header parameters)."""
    query: Mapping[str, str] = field(default_factory=dict)
    """An API key in the query (it wins over a query parameter of the same name)."""
    auth: httpx2.Auth | None = None
    """Bearer tokens from an OAuth client-credentials source (adapters/mcp/credentials.py)."""
    call_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_response_bytes: int = 4 * 1_048_576
    secrets: Sequence[str] = ()
    """Values never shown in an error excerpt (credentials; the list may grow as tokens are issued)."""
    retry_max_s: float = 15.0
    """Longest wait between two attempts to load a document that could not be loaded."""


class OpenApiProvider:
    """The tools of one OpenAPI upstream (see the module docstring)."""

    def __init__(
        self,
        name: str,
        load: Loader,
        options: RestOptions,
        *,
        eager: bool = True,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`eager`: load the document at start; otherwise on first use (`/readyz`: idle until then)."""
        self.name = name
        self._eager = eager
        self._host = urlsplit(options.base_url).netloc
        """The REST system's address, kept out of error excerpts (URLs are removed whole)."""
        self._loading = anyio.Lock()
        self._load = load
        self._options = options
        self._transport = transport
        self._clock = clock
        self._conversion: Conversion | None = None
        self._validators: dict[str, Draft202012Validator | None] = {}
        self._http: httpx2.AsyncClient | None = None
        self._state: State = "idle"
        self._since = clock()
        self._last_error: str | None = None
        self._failures = 0
        self._retry: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        options = self._options
        self._http = httpx2.AsyncClient(
            auth=options.auth,
            timeout=httpx2.Timeout(options.call_timeout_s, connect=options.connect_timeout_s),
            limits=UPSTREAM_LIMITS,
            follow_redirects=False,
            transport=self._transport,
        )
        if self._eager:
            await self._load_or_retry()

    async def _load_or_retry(self) -> None:
        async with self._loading:
            if self._conversion is None and self._retry is None and not await self._try_load():
                self._retry = asyncio.create_task(self._retry_loading())

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        self._set_state("stopped")

    async def _try_load(self) -> bool:
        self._set_state("starting")
        try:
            conversion = await self._load()
        except OpenApiError as exc:
            return self._failed(f"its OpenAPI document: {exc}")
        except Exception as exc:  # a loader's bug must not kill the retry task or the gateway's start
            log.error("openapi_loader_failed", upstream=self.name, exc_info=True)
            return self._failed(f"its OpenAPI document could not be loaded ({type(exc).__name__})")
        self._conversion = conversion
        self._validators = {}
        self._last_error = None
        for skipped in conversion.skipped:
            log.warning("openapi_operation_skipped", upstream=self.name, operation=skipped)
        log.info("openapi_upstream_ready", upstream=self.name, tools=len(conversion.tools))
        self._set_state("ready")
        return True

    def _failed(self, problem: str) -> bool:
        self._failures += 1
        self._last_error = problem
        log.warning("openapi_document_unavailable", upstream=self.name, cause=problem)
        self._set_state("backoff")
        return False

    async def _retry_loading(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            await asyncio.sleep(delay)
            if await self._try_load():
                return
            delay = min(delay * 2, self._options.retry_max_s)

    def _set_state(self, state: State) -> None:
        if state != self._state:
            self._state, self._since = state, self._clock()

    def status(self) -> UpstreamStatus:
        conversion = self._conversion
        return UpstreamStatus(
            name=self.name,
            state=self._state,
            protocol_version=f"openapi {conversion.version}" if conversion is not None else None,
            last_error=self._last_error,
            restarts=self._failures,
            since_s=round(self._clock() - self._since, 3),
        )

    # -- tools ------------------------------------------------------------------------------------

    async def tools(self, *, refresh: bool = False) -> dict[str, Tool]:
        if self._conversion is None and self._retry is None:  # not loaded yet, or a load was cancelled
            await self._load_or_retry()
        if self._conversion is None:
            raise UpstreamUnavailable(
                f"upstream {self.name!r} is unavailable ({self._last_error or 'not started'}); "
                "retrying in background",
                upstream=self.name,
            )
        return self._conversion.tools

    def bridged(self, tool: Tool) -> str | None:
        return None  # a REST call leaves the gateway's protocols

    def shows(self, scope: Mapping[str, Any], tool: Tool) -> bool:
        return True  # the REST system has no policy of its own here: the MCP policy decides

    async def call_tool(self, call: ProviderCall) -> CallToolResult:
        """One HTTP request for a validated call; never anything of the caller's request but the
        arguments (RFC 6750 §5.3: bearer tokens are not passed on)."""
        conversion, http = self._conversion, self._http
        operation = conversion.operations.get(call.tool.name) if conversion is not None else None
        if operation is None or http is None:
            raise UnknownTool(f"unknown tool {call.exposed!r} on virtual server {call.virtual!r}")
        options = self._options
        try:
            parts = build(operation, call.arguments, options.base_url)
        except ArgumentError as exc:
            return _invalid(call.exposed, str(exc))
        params: list[tuple[str, str | int | float | bool | None]] = [
            (k, v) for k, v in parts.params if k not in options.query
        ]
        params += options.query.items()
        request = http.build_request(
            parts.method,
            parts.url,
            params=params,
            headers={**parts.headers, **{k.lower(): v for k, v in options.headers.items()}},
            content=parts.content,
            files=parts.files,
        )
        answer = await self._send(http, request)
        return render(
            answer,
            validator=self._validator(call.tool),
            resource_uri=f"openapi://{self.name}/{operation.tool}",
            redact=[*options.secrets, *options.headers.values(), *options.query.values(), self._host],
        )

    async def _send(self, http: httpx2.AsyncClient, request: httpx2.Request) -> HttpAnswer:
        """The response (marked `oversized`, without its body, past `max_response_bytes`);
        transport failures become the gateway's upstream errors, named by upstream, never by URL."""
        options, name = self._options, self.name
        try:
            with anyio.fail_after(options.call_timeout_s):
                response = await http.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > options.max_response_bytes:
                            return HttpAnswer(response.status_code, "", b"", options.max_response_bytes)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx2.TimeoutException):
            raise UpstreamTimeout(
                f"upstream {name!r} did not answer within {options.call_timeout_s:g}s", upstream=name
            ) from None
        except httpx2.RequestError as exc:  # transport, and a body whose content-encoding is corrupt
            raise UpstreamUnavailable(
                f"upstream {name!r} is unavailable ({type(exc).__name__})", upstream=name
            ) from None
        return HttpAnswer(response.status_code, response.headers.get("content-type", ""), bytes(body))

    def _validator(self, tool: Tool) -> Draft202012Validator | None:
        if tool.name not in self._validators:
            schema = tool.output_schema
            self._validators[tool.name] = Draft202012Validator(schema) if schema is not None else None
        return self._validators[tool.name]


def _invalid(tool: str, problem: str) -> CallToolResult:
    """Arguments the schema allowed but HTTP cannot carry: refused before anything is sent."""
    return CallToolResult(
        content=[TextContent(type="text", text=f"Invalid arguments for tool {tool!r}: {problem}")],
        is_error=True,
        _meta={REASON: "invalid_arguments"},
    )
