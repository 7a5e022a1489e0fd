"""Upstream lifecycle: lazy and eager start, restart with backoff, timeouts, dead upstreams, shutdown."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from adapters.mcp.errors import REASON_CODES
from tests.support import gateway, stdio_upstream

DEMO = {"name": "demo", "transport": "builtin"}


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (the port was bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


async def readyz(base: str, strict: bool = False) -> tuple[int, dict[str, Any]]:
    async with httpx2.AsyncClient(base_url=base) as http:
        response = await http.get("/readyz", params={"strict": "1"} if strict else None)
    return response.status_code, response.json()


def state_of(ready: dict[str, Any], name: str) -> dict[str, Any]:
    return next(u for u in ready["upstreams"] if u["name"] == name)


async def test_dead_upstream_names_itself_and_blocks_no_one() -> None:
    """A refused upstream answers with upstream_unavailable naming it; the other upstream still works."""
    dead = {"name": "ghost", "transport": "http", "url": closed_port_url(), "connect_timeout_s": 2}
    async with gateway(
        upstreams=[dead, DEMO], virtual_servers=[{"name": "v", "upstreams": ["ghost", "demo"]}]
    ) as base:
        async with Client(f"{base}/mcp/v") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "demo__lookup_person" in names and not any(n.startswith("ghost__") for n in names)
            with pytest.raises(MCPError) as err:
                await client.call_tool("ghost__anything", {})
            assert err.value.code == REASON_CODES["upstream_unavailable"][0]
            assert err.value.data == {"reason": "upstream_unavailable", "upstream": "ghost"}
            assert "connection refused" in err.value.message and "127.0.0.1" not in err.value.message
            ok = await client.call_tool("demo__lookup_person", {"query": "ada"})
            assert not ok.is_error
        status, ready = await readyz(base)
        assert status == 200 and ready["status"] == "degraded"
        assert state_of(ready, "ghost")["state"] in ("backoff", "starting")
        assert state_of(ready, "ghost")["last_error"] == "connection refused"
        assert (await readyz(base, strict=True))[0] == 503


async def test_slow_upstream_times_out_while_others_answer() -> None:
    """A call past the upstream's timeout gets upstream_timeout; a concurrent call elsewhere succeeds."""
    slow = stdio_upstream("slowpoke", start="eager", call_timeout_s=0.5)
    async with gateway(
        upstreams=[slow, DEMO], virtual_servers=[{"name": "v", "upstreams": ["slowpoke", "demo"]}]
    ) as base:
        async with Client(f"{base}/mcp/v") as client:
            await client.list_tools()

            async def stuck() -> MCPError:
                with pytest.raises(MCPError) as err:
                    await client.call_tool("slowpoke__slow", {"seconds": 5})
                return err.value

            async def quick() -> float:
                loop = asyncio.get_running_loop()
                start = loop.time()
                await client.call_tool("demo__lookup_person", {"query": "ada"})
                return loop.time() - start

            async with asyncio.timeout(10):
                error, quick_s = await asyncio.gather(stuck(), quick())
            assert error.data == {"reason": "upstream_timeout", "upstream": "slowpoke"}
            assert error.code == REASON_CODES["upstream_timeout"][0]
            assert quick_s < 0.5
            assert (await client.call_tool("slowpoke__echo", {"text": "still here"})).content[
                0
            ].text == "still here"  # type: ignore[union-attr]


async def test_crashed_stdio_upstream_is_restarted() -> None:
    """When the child process dies, the call fails cleanly and the next call runs on a new process."""
    crashy = stdio_upstream("crashy", start="eager", restart_backoff_s=0.1)
    async with gateway(upstreams=[crashy], virtual_servers=[{"name": "v", "upstreams": ["crashy"]}]) as base:
        async with Client(f"{base}/mcp/v") as client:
            first_pid = (await client.call_tool("crashy__pid", {})).structured_content
            with pytest.raises(MCPError) as err:
                await client.call_tool("crashy__crash", {})
            assert err.value.data["reason"] == "upstream_unavailable"
            async with asyncio.timeout(15):
                while True:
                    status, ready = await readyz(base)
                    if state_of(ready, "crashy")["state"] == "ready":
                        break
                    await asyncio.sleep(0.05)
            assert state_of(ready, "crashy")["restarts"] >= 1
            second_pid = (await client.call_tool("crashy__pid", {})).structured_content
            assert second_pid != first_pid


async def test_lazy_upstream_starts_on_first_use_and_stops_on_shutdown() -> None:
    """A lazy stdio upstream is idle until needed; on gateway shutdown its process is gone."""
    lazy = stdio_upstream("lazy", start="lazy")
    async with gateway(upstreams=[lazy], virtual_servers=[{"name": "v", "upstreams": ["lazy"]}]) as base:
        assert state_of((await readyz(base))[1], "lazy")["state"] == "idle"
        async with Client(f"{base}/mcp/v") as client:
            result = await client.call_tool("lazy__pid", {})
        assert state_of((await readyz(base))[1], "lazy")["state"] == "ready"
        assert result.structured_content is not None
        pid = int(result.structured_content["result"])
    async with asyncio.timeout(5):
        while _alive(pid):
            await asyncio.sleep(0.05)


async def test_missing_command_is_reported() -> None:
    """An upstream whose command does not exist is unavailable with cause 'command not found'."""
    broken = {"name": "broken", "transport": "stdio", "command": "/nonexistent/mcp-server", "start": "eager"}
    async with gateway(
        upstreams=[broken, DEMO], virtual_servers=[{"name": "v", "upstreams": ["broken", "demo"]}]
    ) as base:
        async with asyncio.timeout(5):
            while state_of((await readyz(base))[1], "broken")["last_error"] is None:
                await asyncio.sleep(0.05)
        assert state_of((await readyz(base))[1], "broken")["last_error"] == "command not found"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone once its state is Z.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_health_probes_keep_a_healthy_upstream_ready(protocol: str, http_upstream: str) -> None:
    """Frequent health probes (server/discover on 2026-07-28, ping on the handshake era) never make a
    healthy upstream look dead: no restarts, and calls keep working between probes."""
    probing = {"health_interval_s": 0.1, "protocol": protocol}
    upstreams = [
        stdio_upstream("child", start="eager", **probing),
        {"name": "web", "transport": "http", "url": http_upstream, **probing},
    ]
    async with gateway(
        upstreams=upstreams, virtual_servers=[{"name": "v", "upstreams": ["child", "web"]}]
    ) as base:
        async with Client(f"{base}/mcp/v", mode=protocol) as client:
            for _ in range(8):
                await asyncio.sleep(0.1)
                assert (await client.call_tool("web__add", {"a": 1, "b": 2})).structured_content == {
                    "result": 3
                }
        _status, ready = await readyz(base)
        for name in ("child", "web"):
            upstream = state_of(ready, name)
            assert (upstream["state"], upstream["restarts"], upstream["last_error"]) == ("ready", 0, None)
