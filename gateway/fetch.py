"""Fetching a document from a URL someone else controls (a trusted issuer's JWKS today; agent
cards and webhooks later), treating the URL as hostile: https only, public addresses only (unless
the operator allows private networks), no redirects, bounded size and time."""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import httpx2

MAX_DOCUMENT_BYTES: Final = 256 * 1024
FETCH_TIMEOUT_S: Final = 5.0


class FetchError(Exception):
    """The document could not be fetched safely; the message names the reason, not the content."""


async def fetch_json(url: str, *, allow_private: bool = False) -> dict[str, Any]:
    """GET `url` as a JSON object. Plain http and private, loopback or link-local addresses are
    refused unless `allow_private` (development against local services)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise FetchError("only https URLs are fetched")
    if not parts.hostname or parts.username or parts.password:
        raise FetchError("the URL needs a host and no credentials")
    if not allow_private:
        await _require_public(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    body = bytearray()
    try:
        with anyio.fail_after(FETCH_TIMEOUT_S):
            async with httpx2.AsyncClient(follow_redirects=False, timeout=FETCH_TIMEOUT_S) as http:
                async with http.stream("GET", url, headers={"accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise FetchError(f"HTTP {response.status_code} (redirects are not followed)")
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_DOCUMENT_BYTES:
                            raise FetchError(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    except TimeoutError:
        raise FetchError(f"no answer within {FETCH_TIMEOUT_S:g}s") from None
    except httpx2.HTTPError as exc:
        raise FetchError(f"network error ({type(exc).__name__})") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchError("not JSON") from None
    if not isinstance(document, dict):
        raise FetchError("not a JSON object")
    return document


async def _require_public(host: str, port: int) -> None:
    """Every address the name resolves to must be public. (A resolver that answers differently on
    the connection's own lookup could still rebind; operators who need that closed pin IPs.)"""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchError("the host name does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise FetchError("the host resolves to a private, loopback or reserved address")
