"""REST systems as MCP tools (`transport: openapi`), end to end: a real REST service with its own
OpenAPI 3.1 document behind the gateway, called with the official `mcp.Client` through a protected
virtual server. Interlink's credentials are injected, the caller's token never reaches the service,
HTTP errors are tool errors with a safe excerpt, failures are precise, policy and audit apply."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ImageContent, TextContent

from adapters.openapi.convert import Conversion, convert
from adapters.openapi.provider import OpenApiProvider, RestOptions
from gateway.audit import AuditStore
from gateway.cli import main
from gateway.openapi_upstream import build_openapi
from gateway.settings import OpenApiUpstream
from tests import rest_service
from tests.rest_service import RestService
from tests.support import bound_socket, gateway, hold, issued_token, serve

SECRET = "openapi-bridge-agent-secret"
AGENT = {
    "client_id": "shopper",
    "name": "Shopper",
    "owner": "shop",
    "secret": {"value": SECRET},
    "audiences": ["mcp/shop"],
    "scopes": ["mcp"],
}
POLICY = {
    "version": "1",
    "rules": [
        {
            "id": "read-pets",
            "effect": "permit",
            "principals": {"agents": ["shopper"]},
            "actions": ["tools/call"],
            "resources": ["mcp:shop/rest__getPet", "mcp:shop/rest__getFile"],
        }
    ],
}


@dataclass
class Shop:
    base: str
    token: str
    audit_url: str


@pytest.fixture
async def service() -> AsyncIterator[tuple[RestService, str]]:
    svc = RestService()
    async with serve(svc.app()) as url:
        yield svc, url


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "pets.openapi.json"
    path.write_text(json.dumps(rest_service.DOCUMENT))
    return path


def rest(name: str, spec: str | Path, base_url: str, **options: Any) -> dict[str, Any]:
    """An openapi upstream's configuration."""
    return {"name": name, "transport": "openapi", "spec": str(spec), "base_url": base_url, **options}


@asynccontextmanager
async def shop(upstreams: list[dict[str, Any]], tmp_path: Path, **settings: Any) -> AsyncIterator[Shop]:
    """A gateway whose protected virtual server `shop` fronts `upstreams`; an agent's token for it."""
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with gateway(
        upstreams=upstreams,
        virtual_servers=[{"name": "shop", "upstreams": [u["name"] for u in upstreams], "public": False}],
        identity={"agents": [AGENT]},
        audit={"database_url": audit_url, "checkpoint_key_file": str(tmp_path / "audit-key.pem")},
        **settings,
    ) as base:
        yield Shop(base, await issued_token(base, "shopper", SECRET, "mcp/shop", "mcp"), audit_url)


@asynccontextmanager
async def connect(shop: Shop, mode: str = "auto") -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {shop.token}"}) as http:
        async with hold(
            Client(streamable_http_client(f"{shop.base}/mcp/shop", http_client=http), mode=mode)
        ) as c:
            yield c


def interlink_meta(result: CallToolResult) -> dict[str, Any]:
    return {k: v for k, v in (result.meta or {}).items() if k.startswith("io.interlink/")}


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_operations_become_tools_with_their_schemas(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """Each operation is a tool: operationId (or method_path) as name, parameters and body as input
    schema (refs resolved, readOnly fields out of requests), the 2xx object response as output schema."""
    _svc, url = service
    async with (
        shop([rest("rest", spec_file, url, exclude_tags=["secure", "hostile"])], tmp_path) as s,
        connect(s) as c,
    ):
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == {
        f"rest__{n}"
        for n in (
            "listPets createPet getPet deletePet getFile boom slow big getReport getLogo get_status".split()
        )
    }
    listing = tools["rest__listPets"]
    assert listing.input_schema["properties"]["tag"] == {"type": "array", "items": {"type": "string"}}
    assert "required" not in listing.input_schema and listing.input_schema["additionalProperties"] is False
    assert listing.annotations is not None and listing.annotations.read_only_hint is True
    assert listing.output_schema is not None and listing.output_schema["required"] == ["pets"]
    get = tools["rest__getPet"]
    assert get.input_schema["required"] == ["petId"]
    assert get.output_schema is not None and "id" in get.output_schema["properties"]
    create = tools["rest__createPet"]
    assert create.input_schema["required"] == ["body"]
    pet = create.input_schema["$defs"]["Pet"]
    assert "id" not in pet["properties"] and pet["required"] == ["name"]  # readOnly: not in requests
    assert pet["properties"]["parent"] == {"$ref": "#/$defs/Pet"}  # recursive, kept finite
    delete = tools["rest__deletePet"]
    assert delete.annotations is not None and delete.annotations.destructive_hint is True
    assert get.description == "Get one pet"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_calls_carry_path_query_header_and_body(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path, mode: str
) -> None:
    """Path, query (exploded array), header and JSON body reach the service; JSON answers come back
    as structured content, text as text, an image as an image."""
    svc, url = service
    async with shop([rest("rest", spec_file, url)], tmp_path) as s, connect(s, mode) as c:
        listed = await c.call_tool(
            "rest__listPets", {"limit": 1, "tag": ["dog", "cat"], "X-Request-Note": "hello"}
        )
        created = await c.call_tool("rest__createPet", {"body": {"name": "Kit", "tag": None}})
        fetched = await c.call_tool("rest__getPet", {"petId": "3"})
        report = await c.call_tool("rest__getReport", {})
        logo = await c.call_tool("rest__getLogo", {})
        status = await c.call_tool("rest__get_status", {})
    assert not listed.is_error
    assert listed.structured_content == {"pets": [{"id": 1, "name": "Rex", "tag": "dog"}], "total": 1}
    assert json.loads(text(listed)) == listed.structured_content
    (seen,) = svc.seen("/pets")[:1]
    assert seen.query == "limit=1&tag=dog&tag=cat" and seen.headers["x-request-note"] == "hello"
    assert created.structured_content == {"id": 3, "name": "Kit", "tag": None}
    assert json.loads(svc.seen("/pets")[1].body) == {"name": "Kit", "tag": None}
    assert svc.seen("/pets")[1].headers["content-type"] == "application/json"
    assert fetched.structured_content == {"id": 3, "name": "Kit", "tag": None}
    assert text(report) == "name,tag\nRex,dog\n" and report.structured_content is None
    assert isinstance(logo.content[0], ImageContent) and logo.content[0].mime_type == "image/png"
    assert status.structured_content == {"up": True}


async def test_credentials_are_injected_and_the_callers_token_never_reaches_the_service(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """API key in a header or the query, a static bearer token, OAuth client credentials and static
    headers are Interlink's; the caller's Interlink token and headers never reach the REST service."""
    svc, url = service

    def only(operation: str) -> dict[str, list[str]]:
        return {"include_operations": [operation]}

    upstreams = [
        rest(
            "hdr",
            spec_file,
            url,
            auth={"kind": "api_key", "name": "X-API-Key", "value": {"value": rest_service.API_KEY}},
            headers={"X-Tenant": "acme"},
            **only("whoamiHeader"),
        ),
        rest(
            "qry",
            spec_file,
            url,
            auth={
                "kind": "api_key",
                "name": "api_key",
                "location": "query",
                "value": {"value": rest_service.QUERY_KEY},
            },
            **only("whoamiQuery"),
        ),
        rest(
            "brr",
            spec_file,
            url,
            auth={"kind": "bearer", "token": {"value": rest_service.BEARER}},
            **only("whoamiBearer"),
        ),
        rest(
            "oau",
            spec_file,
            url,
            auth={
                "kind": "oauth_client_credentials",
                "token_url": f"{url}/oauth/token",
                "client_id": rest_service.CLIENT_ID,
                "client_secret": {"value": rest_service.CLIENT_SECRET},
            },
            **only("whoamiOAuth"),
        ),
        rest(
            "bad",
            spec_file,
            url,
            auth={"kind": "api_key", "name": "X-API-Key", "value": {"value": "wrong-key-1234"}},
            **only("whoamiHeader"),
        ),
    ]
    async with shop(upstreams, tmp_path) as s, connect(s) as c:
        results = {
            name: await c.call_tool(name, {})
            for name in ("hdr__whoamiHeader", "qry__whoamiQuery", "brr__whoamiBearer", "oau__whoamiOAuth")
        }
        again = await c.call_tool("oau__whoamiOAuth", {})
        refused = await c.call_tool("bad__whoamiHeader", {})
    for name, result in results.items():
        assert not result.is_error, (name, text(result))
        assert result.structured_content is not None and result.structured_content["ok"] is True
    assert not again.is_error and len(svc.issued) == 1  # the OAuth token is cached
    assert svc.seen("/secure/header")[0].headers["x-tenant"] == "acme"
    assert svc.seen("/secure/query")[0].query == f"api_key={rest_service.QUERY_KEY}"
    assert "authorization" not in svc.seen("/secure/header")[0].headers
    assert refused.is_error and refused.meta is not None
    assert refused.meta["io.interlink/status"] == 401
    assert "wrong-key-1234" not in text(refused) and "10.20.30.40" not in text(refused)
    for seen in svc.requests:
        everything = json.dumps(seen.headers) + seen.query + seen.body.decode()
        assert s.token not in everything and SECRET not in everything
        assert "mcp-session-id" not in seen.headers and "mcp-protocol-version" not in seen.headers


async def test_operations_are_selected_by_tag_and_operation_id(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """include/exclude by tag and operation id (globs); included tags and operations add up, and
    any exclusion wins."""
    _svc, url = service
    upstreams = [
        rest("pets", spec_file, url, include_tags=["pets"], exclude_operations=["delete*"]),
        rest(
            "misc",
            spec_file,
            url,
            include_tags=["rep*"],
            include_operations=["getFile", "deletePet"],
            exclude_tags=["admin"],
        ),
    ]
    async with shop(upstreams, tmp_path) as s, connect(s) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        with pytest.raises(MCPError) as err:
            await c.call_tool("pets__deletePet", {"petId": "1"})
    assert names == {
        "pets__listPets",
        "pets__createPet",
        "pets__getPet",
        "misc__getReport",
        "misc__getLogo",
        "misc__get_status",
        "misc__getFile",
    }
    assert err.value.data["reason"] == "unknown_tool"


async def test_http_errors_are_tool_errors_with_status_and_a_safe_excerpt(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """A 404 or 500 is a tool error carrying the status and a short excerpt, without internal URLs,
    control characters or the service's base URL."""
    _svc, url = service
    async with shop([rest("rest", spec_file, url)], tmp_path) as s, connect(s) as c:
        missing = await c.call_tool("rest__getPet", {"petId": "99"})
        boom = await c.call_tool("rest__boom", {})
    assert missing.is_error and interlink_meta(missing) == {
        "io.interlink/reason": "upstream_http_error",
        "io.interlink/status": 404,
    }
    assert text(missing) == 'HTTP 404 Not Found: {"error":"no pet 99"}'
    assert boom.is_error and boom.meta is not None and boom.meta["io.interlink/status"] == 500
    message = text(boom)
    assert message.startswith("HTTP 500 Internal Server Error: Traceback: ConnectionError at [url]")
    assert "10.20.30.40" not in message and "\x1b" not in message and url not in message
    assert len(message) < 400


async def test_invalid_arguments_never_reach_the_service(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """Arguments outside the schema, and values HTTP cannot carry safely (a header with a line
    break, a path value of '..'), are refused before the service sees anything; a path value is
    one encoded segment, so it cannot climb out of its path."""
    svc, url = service
    async with shop([rest("rest", spec_file, url)], tmp_path) as s, connect(s) as c:
        refused = [
            await c.call_tool("rest__listPets", args)
            for args in (
                {"limit": "many"},
                {"limit": 0},
                {"nope": 1},
                {"X-Request-Note": "a\r\nX-Evil: 1"},
            )
        ]
        refused.append(await c.call_tool("rest__createPet", {}))
        refused.append(await c.call_tool("rest__getFile", {"name": ".."}))
        climbed = await c.call_tool("rest__getFile", {"name": "../../admin?x=1#y"})
    for result in refused:
        assert result.is_error and result.meta is not None
        assert result.meta["io.interlink/reason"] == "invalid_arguments", text(result)
    assert svc.seen("/pets") == [] and svc.seen("/files/..") == []
    assert not climbed.is_error
    assert [r.raw_path for r in svc.requests] == ["/files/..%2F..%2Fadmin%3Fx%3D1%23y"]


async def test_a_dead_or_slow_service_is_a_precise_error_and_the_gateway_keeps_serving(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """Connection refused is upstream_unavailable, no answer in time is upstream_timeout (neither
    naming the URL), and the other upstreams keep working."""
    _svc, url = service
    with bound_socket() as closed:
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    upstreams = [
        rest("dead", spec_file, dead_url, include_operations=["getPet"]),
        rest("slow", spec_file, url, include_operations=["slow"], call_timeout_s=0.5),
        rest("live", spec_file, url, include_operations=["getPet"]),
    ]
    async with shop(upstreams, tmp_path) as s, connect(s) as c:
        with pytest.raises(MCPError) as dead:
            await c.call_tool("dead__getPet", {"petId": "1"})
        with pytest.raises(MCPError) as slow:
            await c.call_tool("slow__slow", {"seconds": 3})
        live = await c.call_tool("live__getPet", {"petId": "1"})
    assert dead.value.data["reason"] == "upstream_unavailable" and dead.value.data["upstream"] == "dead"
    assert slow.value.data["reason"] == "upstream_timeout"
    assert "127.0.0.1" not in dead.value.error.message + slow.value.error.message
    assert live.structured_content == {"id": 1, "name": "Rex", "tag": "dog"}


async def test_an_oversized_response_is_a_tool_error(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """A body larger than max_response_bytes is not read past the limit: a tool error says so."""
    _svc, url = service
    async with shop([rest("rest", spec_file, url, max_response_bytes=1000)], tmp_path) as s, connect(s) as c:
        big = await c.call_tool("rest__big", {})
    assert big.is_error and interlink_meta(big) == {
        "io.interlink/reason": "upstream_response_too_large",
        "io.interlink/status": 200,
    }


async def test_policy_permits_one_operation_and_not_another_and_the_call_is_audited(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """A policy rule permitting getPet only: listPets is hidden and refused (the service never sees
    it); the allowed call and the HTTP error are recorded in the audit trail."""
    svc, url = service
    async with shop([rest("rest", spec_file, url)], tmp_path, policy=POLICY) as s, connect(s) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        with pytest.raises(MCPError) as denied:
            await c.call_tool("rest__listPets", {})
        ok = await c.call_tool("rest__getPet", {"petId": "1"})
        missing = await c.call_tool("rest__getPet", {"petId": "99"})
    assert names == {"rest__getPet", "rest__getFile"}
    assert denied.value.data["reason"] == "policy_denied" and svc.seen("/pets") == []
    assert not ok.is_error and missing.is_error
    async with AuditStore.open(s.audit_url) as store:
        trail = [r.record() async for r in store.records("main")]
    calls = [
        (r["event"], r["target"]["name"], r["decision"]["reason"], r["outcome"]["status"])
        for r in trail
        if r["event"].startswith("mcp.tools/call")
    ]
    assert calls == [
        ("mcp.tools/call", "rest__listPets", "default_deny", "denied"),
        ("mcp.tools/call", "rest__getPet", "permit", "pending"),
        ("mcp.tools/call.result", "rest__getPet", "permit", "ok"),
        ("mcp.tools/call", "rest__getPet", "permit", "pending"),
        ("mcp.tools/call.result", "rest__getPet", "permit", "tool_error"),
    ]
    allowed = next(
        r for r in trail if r["event"] == "mcp.tools/call" and r["target"]["name"] == "rest__getPet"
    )
    assert allowed["actor"]["agent"] == "shopper" and allowed["decision"]["rule"] == "read-pets"
    assert allowed["target"]["definition_sha256"] and allowed["target"]["bridge"] is None
    assert trail[-1]["outcome"] == {"status": "tool_error", "reason": "upstream_http_error", "code": 404}


async def test_a_document_url_that_is_down_shows_in_readyz_until_it_loads(tmp_path: Path) -> None:
    """An OpenAPI document at a URL that does not answer does not stop the gateway: /readyz shows
    the upstream in backoff (without its URL), and once the document is served the tools appear."""
    svc = RestService()
    sock = bound_socket()  # bound, not yet listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    upstream = rest("rest", f"{url}/openapi.json", url, allow_private_network=True, health_interval_s=1)
    async with shop([upstream], tmp_path) as s, httpx2.AsyncClient(base_url=s.base) as http:
        ready = (await http.get("/readyz")).json()
        (state,) = [u for u in ready["upstreams"] if u["name"] == "rest"]
        assert state["state"] == "backoff" and ready["status"] == "degraded"
        assert "cannot fetch" in state["last_error"] and url not in state["last_error"]
        async with connect(s) as c:
            assert (await c.list_tools()).tools == []
        async with serve(svc.app(), sock):
            async with asyncio.timeout(10):
                while (await http.get("/readyz")).json()["status"] != "ok":
                    await asyncio.sleep(0.1)
            async with connect(s) as c:
                pet = await c.call_tool("rest__getPet", {"petId": "2"})
    assert pet.structured_content == {"id": 2, "name": "Tom"}


async def test_a_lazy_document_url_is_fetched_on_first_use(
    service: tuple[RestService, str], tmp_path: Path
) -> None:
    """With `start: lazy` the document is fetched when the tools are first needed (`idle` before)."""
    _svc, url = service
    upstream = rest("rest", f"{url}/openapi.json", url, allow_private_network=True, start="lazy")
    async with shop([upstream], tmp_path) as s, httpx2.AsyncClient(base_url=s.base) as http:
        before = (await http.get("/readyz")).json()["upstreams"][0]
        async with connect(s) as c:
            names = {t.name for t in (await c.list_tools()).tools}
        after = (await http.get("/readyz")).json()["upstreams"][0]
    assert before["state"] == "idle" and after["state"] == "ready"
    assert after["protocol_version"] == "openapi 3.1.0" and "rest__getPet" in names


def test_interlink_check_validates_openapi_upstreams(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`interlink check` converts a file document (relative to the configuration file) and names
    the upstream and the problem when it cannot."""
    config = tmp_path / "interlink.yaml"

    def check(spec: str) -> int:
        upstreams = [rest("rest", spec, "https://pets.example.com")]
        config.write_text(
            json.dumps({"upstreams": upstreams, "virtual_servers": [{"name": "v", "upstreams": ["rest"]}]})
        )
        return main(["check", "--config", str(config)])

    (tmp_path / "pets.yaml").write_text(yaml.safe_dump(rest_service.DOCUMENT))
    assert check(spec_file.name) == 0 and check("pets.yaml") == 0
    assert capsys.readouterr().out.count("rest: 18 tool(s) from OpenAPI 3.1.0") == 2
    (tmp_path / "old.yaml").write_text("swagger: '2.0'\ninfo: {title: old}\npaths: {}\n")
    assert check("old.yaml") == 2
    assert "upstreams.rest.spec" in (err := capsys.readouterr().err) and "Swagger 2.0" in err
    assert check("missing.json") == 2
    assert "cannot read" in capsys.readouterr().err


# -- review fixes: hostile documents and responses -------------------------------------------------


def big_spec(operations: int) -> bytes:
    """A YAML document of `operations` GETs, each with a path parameter and a 10-field object."""
    lines = ["openapi: 3.1.0", "info: {title: big}", "paths:"]
    for i in range(operations):
        lines += [
            f"  /r{i}/{{id}}:",
            "    get:",
            f"      operationId: op{i}",
            "      parameters: [{name: id, in: path, required: true, schema: {type: string}}]",
            "      responses:",
            "        '200':",
            "          description: ok",
            "          content: {application/json: {schema: {type: object, properties: {"
            + ", ".join(f"p{j}: {{type: string, description: field {j} of op {i}}}" for j in range(10))
            + "}}}}",
        ]
    return "\n".join(lines).encode()


def openapi_upstream(**fields: Any) -> OpenApiUpstream:
    return OpenApiUpstream.model_validate({"name": "rest", "transport": "openapi", **fields})


async def test_a_large_document_is_parsed_and_converted_off_the_event_loop() -> None:
    """Loading a large fetched document (parse + convert: over a second here) stalls the event
    loop for a fraction of that at most: other requests keep being served meanwhile."""
    svc = RestService(spec=big_spec(800))
    async with serve(svc.app()) as url:
        provider = build_openapi(
            openapi_upstream(spec=f"{url}/openapi.json", base_url=url, allow_private_network=True), None
        )
        gaps: list[float] = []

        async def tick() -> None:
            loop = asyncio.get_running_loop()
            while True:
                before = loop.time()
                await asyncio.sleep(0.005)
                gaps.append(loop.time() - before)

        ticker = asyncio.create_task(tick())
        try:
            async with asyncio.timeout(60):
                started = asyncio.get_running_loop().time()
                await provider.start()
                took = asyncio.get_running_loop().time() - started
            await asyncio.sleep(0.05)  # the ticker notes the gap it is in
        finally:
            ticker.cancel()
            await provider.stop()
    assert provider.status().protocol_version == "openapi 3.1.0"
    assert took > 0.4, f"the document loaded in {took:.2f}s: too fast to show a stall"
    # Not zero: CPython's cyclic garbage collector, run by the loading thread's allocations, pauses
    # every thread (about 0.2 s here); parsing on the loop stalls it for the whole load.
    assert max(gaps) < took / 2, f"the event loop stalled {max(gaps):.2f}s during a {took:.2f}s load"


async def test_a_malformed_document_url_leaves_the_gateway_serving_until_a_good_one_loads(
    tmp_path: Path,
) -> None:
    """A document Python cannot read (a 5,000-digit number) does not stop the gateway: /readyz shows
    the upstream in backoff with the reason; once the document is readable, operations with values
    of the wrong type (`required: 5`) are skipped, `tags: 5` is ignored, and the others are served
    (a YAML mapping key is read as text: an integer media type is the media type "5")."""
    svc = RestService(spec=b"openapi: 3.1.0\ninfo: {title: t}\nx-n: " + b"7" * 5000 + b"\npaths: {}\n")
    document = json.loads(json.dumps(rest_service.DOCUMENT))
    paths = document["paths"]
    paths["/pets"]["get"]["tags"] = 5
    paths["/pets"]["post"]["requestBody"]["content"]["application/json"]["schema"] = {
        "type": "object",
        "required": 5,
        "properties": {"id": {"readOnly": True}},
    }
    paths["/report"]["get"]["responses"]["200"]["content"] = {5: {}}
    async with serve(svc.app()) as url:
        upstream = rest("rest", f"{url}/openapi.json", url, allow_private_network=True, health_interval_s=1)
        async with shop([upstream], tmp_path) as s, httpx2.AsyncClient(base_url=s.base) as http:
            (state,) = (await http.get("/readyz")).json()["upstreams"]
            assert state["state"] == "backoff" and "cannot be read" in state["last_error"]
            svc.spec = yaml.safe_dump(document).encode()
            async with asyncio.timeout(10):
                while (await http.get("/readyz")).json()["status"] != "ok":
                    await asyncio.sleep(0.1)
            async with connect(s) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                pets = await c.call_tool("rest__listPets", {})
    assert {"rest__listPets", "rest__getPet", "rest__getLogo"} <= names
    assert "rest__createPet" not in names and "rest__getReport" in names
    assert not pets.is_error and pets.structured_content is not None


def test_a_file_document_with_an_unreadable_value_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`interlink check` names the upstream and the problem instead of failing with a traceback."""
    config = tmp_path / "interlink.yaml"
    (tmp_path / "huge.yaml").write_text("openapi: 3.1.0\ninfo: {title: t}\nx-n: " + "7" * 5000 + "\n")
    upstreams = [rest("rest", "huge.yaml", "https://pets.example.com")]
    config.write_text(
        json.dumps({"upstreams": upstreams, "virtual_servers": [{"name": "v", "upstreams": ["rest"]}]})
    )
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "upstreams.rest.spec" in err and "cannot be read" in err and "Traceback" not in err


async def test_a_loader_that_fails_unexpectedly_is_retried_and_reported() -> None:
    """Any exception from loading (not only OpenApiError) leaves the upstream in backoff, named
    by type in its status, and the retry goes on until the document loads."""
    attempts: list[int] = []

    async def load() -> Conversion:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("internal detail http://10.0.0.1/")
        return convert(rest_service.DOCUMENT)

    provider = OpenApiProvider("rest", load, RestOptions("https://pets.example.com"))
    await provider.start()
    try:
        failed = provider.status()
        async with asyncio.timeout(5):
            while provider.status().state != "ready":
                await asyncio.sleep(0.05)
        assert "getPet" in await provider.tools()
    finally:
        await provider.stop()
    assert failed.state == "backoff" and failed.last_error is not None
    assert "RuntimeError" in failed.last_error and "10.0.0.1" not in failed.last_error
    assert len(attempts) == 2


async def test_a_lazy_load_cancelled_by_its_caller_is_started_again_by_the_next() -> None:
    """A caller that goes away while a lazy document loads does not leave the upstream stuck in
    `starting`: the next caller loads it."""
    release = asyncio.Event()

    async def load() -> Conversion:
        await release.wait()
        return convert(rest_service.DOCUMENT)

    provider = OpenApiProvider("rest", load, RestOptions("https://pets.example.com"), eager=False)
    await provider.start()
    try:
        first = asyncio.create_task(provider.tools())
        async with asyncio.timeout(5):
            while provider.status().state != "starting":
                await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        release.set()
        async with asyncio.timeout(5):
            assert "getPet" in await provider.tools()
    finally:
        await provider.stop()


async def test_corrupt_deeply_nested_and_compression_bomb_responses_are_precise_errors(
    service: tuple[RestService, str], spec_file: Path, tmp_path: Path
) -> None:
    """A gzip body that is not gzip is upstream_unavailable; JSON nested 100,000 levels deep is a
    tool error (upstream_response_invalid); a gzip body inflating to 64 MiB stops at
    max_response_bytes, inflated piecewise (memory stays far below the inflated size)."""
    _svc, url = service
    upstreams = [
        rest("rest", spec_file, url, include_tags=["hostile"], exclude_operations=["bomb"]),
        rest("tiny", spec_file, url, include_operations=["bomb"], max_response_bytes=1000),
    ]
    async with shop(upstreams, tmp_path) as s, connect(s) as c:
        with pytest.raises(MCPError) as corrupt:
            await c.call_tool("rest__corrupt", {})
        deep = await c.call_tool("rest__deep", {})
        rest_service.bomb_body()  # compressed before measuring
        tracemalloc.start()
        try:
            bomb = await c.call_tool("tiny__bomb", {})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert corrupt.value.data["reason"] == "upstream_unavailable" and url not in corrupt.value.error.message
    assert deep.is_error and interlink_meta(deep) == {
        "io.interlink/reason": "upstream_response_invalid",
        "io.interlink/status": 200,
    }
    assert bomb.is_error and interlink_meta(bomb)["io.interlink/reason"] == "upstream_response_too_large"
    assert peak < 16 * 1_048_576 < rest_service.BOMB_BYTES, f"peak {peak} bytes"
