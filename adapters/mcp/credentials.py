"""How Interlink authenticates itself to an HTTP upstream: a bearer token from a token source,
attached to every request by an httpx2 `Auth`, refreshed before it expires and once on a 401.

The caller's own token never gets here: sources mint or fetch credentials of the gateway's own.
Imports only `gateway.errors` from the gateway."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final

import anyio
import httpx2

from gateway.errors import UpstreamUnavailable

TokenSource = Callable[[], Awaitable[tuple[str, float]]]
"""Returns (access token, expiry as Unix time)."""

REFRESH_MARGIN_S: Final = 30.0
"""A cached token is replaced this long before it expires."""


class BearerAuth(httpx2.Auth):
    """`Authorization: Bearer` from `source`, cached until shortly before expiry (RFC 6750 §2.1)."""

    def __init__(self, source: TokenSource, *, clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._clock = clock
        self._token: tuple[str, float] | None = None
        self._lock = anyio.Lock()

    async def _current(self, *, renew: bool = False) -> str:
        async with self._lock:
            if renew or self._token is None or self._token[1] - REFRESH_MARGIN_S <= self._clock():
                self._token = await self._source()
            return self._token[0]

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers["authorization"] = f"Bearer {await self._current()}"
        response = yield request
        if response.status_code == 401:  # revoked or rotated early: one fresh attempt
            request.headers["authorization"] = f"Bearer {await self._current(renew=True)}"
            yield request


def client_credentials(
    upstream: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    *,
    scope: str | None,
    resource: str | None,
    timeout_s: float,
    clock: Callable[[], float] = time.time,
) -> TokenSource:
    """A token from the upstream's own authorization server (RFC 6749 §4.4, client_secret_basic;
    RFC 8707 `resource` when given). Failures name the upstream and the HTTP status, never secrets."""

    async def fetch() -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        if resource:
            form["resource"] = resource
        try:
            async with httpx2.AsyncClient(timeout=timeout_s, follow_redirects=False) as http:
                response = await http.post(token_url, data=form, auth=(client_id, client_secret))
        except httpx2.HTTPError as exc:
            raise UpstreamUnavailable(
                f"upstream {upstream!r}: its authorization server is unreachable ({type(exc).__name__})",
                upstream=upstream,
            ) from None
        try:
            body = response.json() if response.status_code == 200 else {}
            token = body["access_token"]
            expires_in = float(body.get("expires_in", 300))
            if not isinstance(token, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            error = _oauth_error(response)
            status = f"HTTP {response.status_code}" + (f", {error}" if error else "")
            message = f"upstream {upstream!r}: its authorization server refused a token ({status})"
            raise UpstreamUnavailable(message, upstream=upstream) from None
        return token, clock() + expires_in

    return fetch


def _oauth_error(response: httpx2.Response) -> str | None:
    try:
        error = response.json().get("error")
    except ValueError:
        return None
    return error if isinstance(error, str) and error.isascii() and len(error) < 64 else None
