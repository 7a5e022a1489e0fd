"""Fetching a document from, or posting a webhook to, a URL someone else controls (a trusted
issuer's JWKS, agent cards, A2A push-notification webhooks), treating the URL as hostile: https
only, public addresses only (unless the operator allows private networks), no redirects, bounded
size and time. Webhooks are checked when registered and again on every connection, against the
very address connected to (`webhook_client`), so a name that re-resolves elsewhere (DNS
rebinding) is refused."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
import httpx2

MAX_DOCUMENT_BYTES: Final = 256 * 1024
FETCH_TIMEOUT_S: Final = 5.0


class FetchError(Exception):
    """The document could not be fetched safely; the message names the reason, not the content."""


async def fetch_json(url: str, *, allow_private: bool = False) -> dict[str, Any]:
    """GET `url` as a JSON object. Plain http and private, loopback or link-local addresses are
    refused unless `allow_private` (development against local services)."""
    body = await fetch_bytes(url, allow_private=allow_private)
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchError("not JSON") from None
    if not isinstance(document, dict):
        raise FetchError("not a JSON object")
    return document


async def fetch_bytes(
    url: str,
    *,
    allow_private: bool = False,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    accept: str = "application/json",
    timeout_s: float = FETCH_TIMEOUT_S,
) -> bytes:
    """GET `url`'s body under the same rules as `fetch_json`, at most `max_bytes` (an OpenAPI
    document is larger than a JWKS and may be YAML)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise FetchError("only https URLs are fetched")
    if not parts.hostname or parts.username or parts.password:
        raise FetchError("the URL needs a host and no credentials")
    if not allow_private:
        await _require_public(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    body = bytearray()
    try:
        with anyio.fail_after(timeout_s):
            async with httpx2.AsyncClient(follow_redirects=False, timeout=timeout_s) as http:
                async with http.stream("GET", url, headers={"accept": accept}) as response:
                    if response.status_code != 200:
                        raise FetchError(f"HTTP {response.status_code} (redirects are not followed)")
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchError(f"document larger than {max_bytes} bytes")
    except TimeoutError:
        raise FetchError(f"no answer within {timeout_s:g}s") from None
    except httpx2.HTTPError as exc:
        raise FetchError(f"network error ({type(exc).__name__})") from None
    return bytes(body)


async def _require_public(host: str, port: int) -> None:
    """Every address the name resolves to must be public. (A resolver that answers differently on
    the connection's own lookup could still rebind; operators who need that closed pin IPs.)"""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchError("the host name does not resolve") from None
    _public_addresses(infos)


def _public_addresses(infos: Sequence[tuple[Any, ...]]) -> list[str]:
    """The resolved addresses, if every one of them is public; else FetchError."""
    addresses = []
    for info in infos:
        text = str(info[4][0])
        address = ipaddress.ip_address(text.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise FetchError("the host resolves to a private, loopback or reserved address")
        addresses.append(text)
    return addresses


async def check_url(
    url: str,
    *,
    allow_private: bool = False,
    https_only: str = "only https URLs are used (http needs allow_private_network)",
) -> None:
    """Raise FetchError unless Interlink may send requests (and credentials) to `url`: the rules
    of `fetch_json` (https, a host, no credentials in it, public addresses only unless
    `allow_private`), for URLs taken from an inline agent card, an OAuth `token_url` or a webhook.
    `https_only`: the refusal of a plain-http URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("not a valid URL") from None
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise FetchError(https_only)
    if not parts.hostname or parts.username or parts.password:
        raise FetchError("the URL needs a host and no credentials")
    if not allow_private:
        await _require_public(parts.hostname, port)


# -- webhooks --------------------------------------------------------------------------------------

WEBHOOK_TIMEOUT_S: Final = 10.0


async def check_webhook_url(url: str, *, allow_private: bool = False) -> None:
    """Raise FetchError unless `url` may receive webhooks: https (http too when `allow_private`), a
    host and no credentials, and (unless `allow_private`) only public addresses behind the host."""
    await check_url(url, allow_private=allow_private, https_only="only https webhook URLs are accepted")


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves each connection's host once, refuses it unless every address is public, and
    connects to the address it checked (TLS still verifies the host name)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise httpcore.ConnectError("the webhook host does not resolve") from None
        try:
            address = _public_addresses(infos)[0]
        except FetchError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def webhook_client(*, allow_private: bool = False) -> httpx.AsyncClient:
    """An HTTP client (the `httpx` the A2A SDK takes) for posting webhooks: no redirects, no proxy
    from the environment, `WEBHOOK_TIMEOUT_S` per request, and unless `allow_private` every
    connection re-checked against the address it is made to."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    if not allow_private:
        transport._pool = httpcore.AsyncConnectionPool(  # the one seam httpx offers for this
            ssl_context=httpx.create_ssl_context(), network_backend=_PublicOnlyBackend()
        )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(WEBHOOK_TIMEOUT_S, connect=5.0),
    )
