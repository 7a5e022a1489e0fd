"""Posting webhooks to hostile URLs (A2A push notifications): the URL is checked when registered,
and each connection again against the address it is made to, so a name that resolved to a public
address at registration and to loopback at delivery (DNS rebinding) reaches nothing."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.fetch import FetchError, check_webhook_url, webhook_client
from tests.support import serve

REBINDING = "rebinding.interlink.test"


def _receiver(hits: list[str]) -> Starlette:
    async def hook(request: Request) -> Response:
        hits.append(request.url.path)
        return Response(status_code=204)

    async def moved(request: Request) -> Response:
        hits.append(request.url.path)
        return RedirectResponse("/hook", status_code=307)

    return Starlette(
        routes=[Route("/hook", hook, methods=["POST"]), Route("/moved", moved, methods=["POST"])]
    )


async def test_a_name_rebound_to_loopback_is_not_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo
    answers = ["93.184.215.14"]  # public when the webhook is registered, loopback afterwards

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (REBINDING, REBINDING.encode()):
            return real(answers.pop(0) if answers else "127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    hits: list[str] = []
    async with serve(_receiver(hits)) as base:
        port = base.rsplit(":", 1)[1]
        url = f"https://{REBINDING}:{port}/hook"
        await check_webhook_url(url)  # accepted: the name is public now
        async with webhook_client() as http:
            with pytest.raises(httpx.ConnectError, match="private, loopback or reserved"):
                await http.post(url, json={})
        with pytest.raises(FetchError, match="private"):
            await check_webhook_url(url)
    assert hits == []


async def test_private_webhooks_when_allowed_and_no_redirects() -> None:
    hits: list[str] = []
    async with serve(_receiver(hits)) as base, webhook_client(allow_private=True) as http:
        await check_webhook_url(f"{base}/hook", allow_private=True)
        assert (await http.post(f"{base}/hook", json={})).status_code == 204
        assert (await http.post(f"{base}/moved", json={})).status_code == 307
        async with webhook_client() as strict:
            with pytest.raises(httpx.ConnectError, match="private"):
                await strict.post(f"{base}/hook", json={})
    assert hits == ["/hook", "/moved"]  # the redirect was not followed
