"""Calls that talk back: cancellation reaches the upstream, and elicitation crosses the gateway
where the protocol eras on both sides allow it (the README's "Elicitation" table)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequestParams, ElicitResult

from tests.support import gateway, hold, stdio_upstream

WAIT_S = 10.0


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    """A gateway with our test server over stdio: `modern` negotiates 2026-07-28, `old` is pinned to
    the 2025-11-25 handshake. The servers write `cancelled` into tmp_path when a call is cancelled."""
    async with gateway(
        upstreams=[
            stdio_upstream("modern", "--marker-dir", str(tmp_path / "m"), start="eager"),
            stdio_upstream("old", "--marker-dir", str(tmp_path / "o"), start="eager", protocol="legacy"),
        ],
        virtual_servers=[{"name": "v", "upstreams": ["modern", "old"]}],
    ) as url:
        yield f"{url}/mcp/v"


@pytest.mark.parametrize("caller", ["auto", "legacy"])
@pytest.mark.parametrize(("upstream", "marker"), [("modern", "m"), ("old", "o")])
async def test_cancellation_reaches_the_upstream(
    base: str, tmp_path: Path, caller: str, upstream: str, marker: str
) -> None:
    """A caller abandoning a call makes the gateway cancel it at the upstream (the tool sees it)."""
    (tmp_path / marker).mkdir()
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with hold(Client(base, mode=caller)) as client:
        call = asyncio.create_task(
            client.call_tool(f"{upstream}__slow", {"seconds": 4}, progress_callback=on_progress)
        )
        async with asyncio.timeout(WAIT_S):
            await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(WAIT_S):
            while not (tmp_path / marker / "cancelled").exists():
                await asyncio.sleep(0.05)
        # The session still works after the cancellation.
        assert (await client.call_tool(f"{upstream}__add", {"a": 1, "b": 1})).structured_content == {
            "result": 2
        }


def answering(ok: bool, asked: list[str]) -> Any:
    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"ok": ok})

    return callback


@pytest.mark.parametrize("caller", ["auto", "legacy"])
@pytest.mark.parametrize("ok", [True, False])
async def test_elicitation_from_a_modern_upstream_reaches_the_caller(
    base: str, caller: str, ok: bool
) -> None:
    """2026-07-28 upstream: its input request reaches a modern caller as an InputRequiredResult
    (passed through), and a handshake-era caller as a real elicitation/create request (driven by
    the gateway); the answer decides the result either way."""
    asked: list[str] = []
    client = Client(base, mode=caller, elicitation_callback=answering(ok, asked))
    async with hold(client) as c:
        result = await c.call_tool("modern__delete_record", {})
    assert not result.is_error
    assert result.content[0].text == ("deleted" if ok else "kept")  # type: ignore[union-attr]
    assert asked == ["Really delete the record?"]


@pytest.mark.parametrize("caller", ["auto", "legacy"])
async def test_elicitation_from_a_handshake_upstream_is_declined(base: str, caller: str) -> None:
    """2025-11-25 upstream over stdio: its elicitation/create cannot be tied to the caller's request,
    so the gateway declines it with a message saying so (which this upstream returns as its error),
    and the caller is never asked."""
    asked: list[str] = []
    async with hold(Client(base, mode=caller, elicitation_callback=answering(True, asked))) as c:
        with pytest.raises(MCPError, match="does not relay elicitation from handshake-era upstreams"):
            await c.call_tool("old__delete_record", {})
    assert asked == []
