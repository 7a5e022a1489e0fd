"""Fetching hostile URLs (identity-research §9 cases 29-30): only https to public addresses, no
redirects, bounded size, JSON objects only. Address checks need no network: every case below is
refused before any connection is attempted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.fetch import MAX_DOCUMENT_BYTES, FetchError, fetch_json
from tests.support import serve


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com/jwks.json", "only https"),
        ("file:///etc/passwd", "only https"),
        ("https://127.0.0.1/jwks.json", "private"),
        ("https://localhost/jwks.json", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://10.1.2.3/x", "private"),
        ("https://192.168.0.1/x", "private"),
        ("https://[::1]/x", "private"),
        ("https://[::ffff:127.0.0.1]/x", "private"),
        ("https://2130706433/x", "private"),
        ("https://0x7f000001/x", "private"),
        ("https://0.0.0.0/x", "private"),
        ("https://user:pw@example.com/x", "credentials"),
    ],
)
async def test_refused_before_connecting(url: str, words: str) -> None:
    with pytest.raises(FetchError, match=words):
        await fetch_json(url)


async def _jwks(request: Request) -> Response:
    return JSONResponse({"keys": []})


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/jwks.json")


async def _huge(request: Request) -> Response:
    return PlainTextResponse("x" * (MAX_DOCUMENT_BYTES + 1))


async def _text(request: Request) -> Response:
    return PlainTextResponse("not json")


async def _array(request: Request) -> Response:
    return JSONResponse([1, 2])


@pytest.fixture
async def site() -> AsyncIterator[str]:
    routes = [
        Route("/jwks.json", _jwks),
        Route("/redirect", _redirect),
        Route("/huge", _huge),
        Route("/text", _text),
        Route("/array", _array),
    ]
    async with serve(Starlette(routes=routes)) as url:
        yield url


async def test_a_local_document_when_private_networks_are_allowed(site: str) -> None:
    assert await fetch_json(f"{site}/jwks.json", allow_private=True) == {"keys": []}


async def test_local_documents_are_refused_by_default(site: str) -> None:
    with pytest.raises(FetchError, match="only https"):
        await fetch_json(f"{site}/jwks.json")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/redirect", "redirects are not followed"),
        ("/huge", "larger than"),
        ("/text", "not JSON"),
        ("/array", "object"),
    ],
)
async def test_bad_documents(site: str, path: str, words: str) -> None:
    with pytest.raises(FetchError, match=words):
        await fetch_json(f"{site}{path}", allow_private=True)
