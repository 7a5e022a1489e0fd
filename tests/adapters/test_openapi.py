"""The OpenAPI → MCP conversion (adapters/openapi), pure: names, schemas ($ref, cycles, 3.0 dialect,
read/write-only), selection, request building and response rendering; and GitHub's published REST
API description (about 1,200 operations) converted without error."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp_types import EmbeddedResource

from adapters.openapi.convert import MAX_NAME, Selection, convert, tool_name
from adapters.openapi.request import (
    MISMATCH_EXCERPT_CHARS,
    ArgumentError,
    HttpAnswer,
    build,
    render,
    safe_excerpt,
)
from adapters.openapi.schema import OpenApiError
from gateway.openapi_upstream import parse_document

GITHUB = Path(__file__).parents[1] / "npm/node_modules/@octokit/openapi/generated/api.github.com.json"
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def doc(
    paths: dict[str, Any], schemas: dict[str, Any] | None = None, version: str = "3.1.0"
) -> dict[str, Any]:
    return {
        "openapi": version,
        "info": {"title": "t"},
        "paths": paths,
        "components": {"schemas": schemas or {}},
    }


def op(**fields: Any) -> dict[str, Any]:
    return {"responses": {"200": {"description": "ok"}}, **fields}


def json_response(schema: Any) -> dict[str, Any]:
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def json_body(schema: Any, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation_id", "method", "path", "expected"),
    [
        ("listPets", "get", "/pets", "listPets"),
        ("repos/get-content", "get", "/x", "repos_get-content"),
        ("a.b c:d", "get", "/x", "a_b_c_d"),
        (None, "get", "/pets/{petId}/toys", "get_pets_petId_toys"),
        (None, "delete", "/", "delete"),
        ("???", "post", "/a", "post_a"),
    ],
)
def test_tool_names_are_sanitised_operation_ids_or_method_and_path(
    operation_id: str | None, method: str, path: str, expected: str
) -> None:
    """Names keep to [A-Za-z0-9_-]; without an operationId the name is `<method>_<path>`."""
    assert tool_name(operation_id, method, path, set()) == expected


def test_long_and_clashing_names_stay_unique_deterministic_and_short() -> None:
    """A long operationId is cut with a hash of the original; a clash gets a hashed suffix."""
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    a, b = tool_name(long_a, "get", "/a", set()), tool_name(long_b, "get", "/b", set())
    assert len(a) == len(b) == MAX_NAME and a != b and a == tool_name(long_a, "get", "/a", set())
    first = tool_name("get.pet", "get", "/a", set())
    second = tool_name("get_pet", "get", "/b", {first})
    assert first == "get_pet" and second != first and TOOL_NAME.match(second)
    clashing = doc({"/a": {"get": op(operationId="get.pet")}, "/b": {"get": op(operationId="get_pet")}})
    both = convert(clashing)
    assert len(both.tools) == 2 and both.operations["get_pet"].path == "/a"
    only_b = convert(clashing, Selection(exclude_operations=["get.pet"]))
    assert only_b.tools.keys() == {second} and only_b.operations[second].path == "/b"  # never renamed


# -- schemas -------------------------------------------------------------------------------------


def test_parameters_and_body_become_the_input_schema() -> None:
    """Path, query, header and cookie parameters (path-level ones too, overridable) plus `body`;
    a path parameter is always required; a name used twice is suffixed with its location."""
    document = doc(
        {
            "/items/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "v", "in": "query", "schema": {"type": "string"}, "description": "old"},
                ],
                "put": op(
                    operationId="put",
                    parameters=[
                        {"name": "v", "in": "query", "schema": {"type": "boolean"}, "description": "new"},
                        {"name": "id", "in": "header", "schema": {"type": "string"}},
                        {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "required": True, "schema": {"type": "string"}},
                    ],
                    requestBody=json_body({"type": "object", "properties": {"n": {"type": "number"}}}),
                ),
            }
        }
    )
    tool = convert(document).tools["put"]
    assert tool.input_schema == {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "v": {"type": "boolean", "description": "new"},
            "id_header": {"type": "string"},
            "session": {"type": "string"},
            "body": {"type": "object", "properties": {"n": {"type": "number"}}},
        },
        "required": ["id", "session", "body"],
        "additionalProperties": False,
    }
    assert tool.annotations is not None and tool.annotations.idempotent_hint is True


def test_local_refs_are_inlined_across_components() -> None:
    """$refs to components/schemas, parameters, requestBodies and responses are resolved."""
    document = doc(
        {
            "/a/{id}": {
                "post": {
                    "operationId": "a",
                    "parameters": [{"$ref": "#/components/parameters/Id"}],
                    "requestBody": {"$ref": "#/components/requestBodies/Thing"},
                    "responses": {"200": {"$ref": "#/components/responses/Thing"}},
                }
            }
        },
        {
            "Thing": {"type": "object", "properties": {"name": {"$ref": "#/components/schemas/Name"}}},
            "Name": {"type": "string", "maxLength": 5},
        },
    )
    document["components"] |= {
        "parameters": {
            "Id": {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"$ref": "#/components/schemas/Name"},
            }
        },
        "requestBodies": {"Thing": json_body({"$ref": "#/components/schemas/Thing"})},
        "responses": {
            "Thing": {
                "description": "x",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}},
            }
        },
    }
    tool = convert(document).tools["a"]
    thing = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}}
    assert tool.input_schema["properties"] == {"id": {"type": "string", "maxLength": 5}, "body": thing}
    assert tool.output_schema == thing
    assert "$ref" not in json.dumps(tool.input_schema)


def test_recursive_schemas_are_kept_once_in_defs_and_still_validate() -> None:
    """A self-referencing type and a mutual recursion (A → B → A) end in `$defs`; the schema is
    finite, valid JSON Schema 2020-12, and accepts and refuses nested instances correctly."""
    schemas = {
        "Node": {
            "type": "object",
            "required": ["v"],
            "properties": {"v": {"type": "integer"}, "next": {"$ref": "#/components/schemas/Node"}},
        },
        "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
        "B": {
            "type": "object",
            "properties": {"a": {"$ref": "#/components/schemas/A"}, "n": {"type": "string"}},
        },
        "Wrapper": {
            "type": "object",
            "properties": {
                "node": {"$ref": "#/components/schemas/Node"},
                "a": {"$ref": "#/components/schemas/A"},
            },
        },
    }
    document = doc(
        {
            "/w": {
                "post": op(operationId="w", requestBody=json_body({"$ref": "#/components/schemas/Wrapper"}))
            }
        },
        schemas,
    )
    schema = convert(document).tools["w"].input_schema
    assert set(schema["$defs"]) == {"Node", "A", "B"}
    assert schema["properties"]["body"]["properties"]["node"] == {"$ref": "#/$defs/Node"}
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    good = {
        "body": {"node": {"v": 1, "next": {"v": 2, "next": {"v": 3}}}, "a": {"b": {"a": {"b": {"n": "x"}}}}}
    }
    assert validator.is_valid(good)
    assert not validator.is_valid({"body": {"node": {"v": 1, "next": {"next": {"v": 3}}}}})
    assert not validator.is_valid({"body": {"a": {"b": {"a": {"b": {"n": 5}}}}}})


def test_openapi_30_nullable_and_exclusive_bounds_become_json_schema_2020_12() -> None:
    """`nullable: true` adds `null` to the type (and enum), or wraps a $ref in anyOf; boolean
    exclusiveMinimum/Maximum qualify minimum/maximum."""
    schemas = {"Color": {"type": "string", "enum": ["red", "blue"]}}
    body = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "nullable": True},
            "color": {"type": "string", "enum": ["red"], "nullable": True},
            "ref": {"$ref": "#/components/schemas/Color", "nullable": True},
            "free": {"nullable": True, "description": "anything"},
            "n": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 9,
                "exclusiveMaximum": False,
            },
            "x-vendor": {"type": "string"},
        },
        "x-internal": True,
        "example": {"name": "x"},
        "discriminator": {"propertyName": "name"},
    }
    document = doc({"/a": {"post": op(operationId="a", requestBody=json_body(body))}}, schemas, "3.0.3")
    props = convert(document).tools["a"].input_schema["properties"]["body"]
    assert set(props) == {"type", "properties"}
    p = props["properties"]
    assert p["name"] == {"type": ["string", "null"]}
    assert p["color"] == {"type": ["string", "null"], "enum": ["red", None]}
    assert p["ref"] == {"anyOf": [{"type": "string", "enum": ["red", "blue"]}, {"type": "null"}]}
    assert p["free"] == {"anyOf": [{"description": "anything"}, {"type": "null"}]}
    assert p["n"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 9}
    assert p["x-vendor"] == {"type": "string"}  # a property named x-..., not an extension


def test_read_only_fields_leave_requests_and_write_only_fields_leave_responses() -> None:
    """OpenAPI 3.1 §4.8.24: readOnly properties are not sent, writeOnly ones not returned."""
    user = {
        "type": "object",
        "required": ["id", "password", "name"],
        "properties": {
            "id": {"type": "integer", "readOnly": True},
            "password": {"type": "string", "writeOnly": True},
            "name": {"type": "string"},
        },
    }
    document = doc(
        {
            "/u": {
                "post": {
                    "operationId": "u",
                    "requestBody": json_body({"$ref": "#/components/schemas/User"}),
                    "responses": json_response({"$ref": "#/components/schemas/User"}),
                }
            }
        },
        {"User": user},
    )
    tool = convert(document).tools["u"]
    assert set(tool.input_schema["properties"]["body"]["properties"]) == {"password", "name"}
    assert tool.input_schema["properties"]["body"]["required"] == ["password", "name"]
    assert tool.output_schema is not None
    assert set(tool.output_schema["properties"]) == {"id", "name"} and tool.output_schema["required"] == [
        "id",
        "name",
    ]


@pytest.mark.parametrize(
    ("responses", "has_output"),
    [
        (json_response({"type": "object", "properties": {}}), True),
        (json_response({"type": "array", "items": {}}), False),
        ({**json_response({"type": "object"}), "201": {"description": "also"}}, False),
        ({"2XX": json_response({"type": "object"})["200"]}, True),
        ({"200": {"description": "x", "content": {"text/plain": {"schema": {"type": "object"}}}}}, False),
    ],
)
def test_an_output_schema_only_for_the_single_2xx_json_object_response(
    responses: Any, has_output: bool
) -> None:
    """Structured output is promised only when the one success response is a JSON object."""
    document = doc({"/a": {"get": {"operationId": "a", "responses": responses}}})
    assert (convert(document).tools["a"].output_schema is not None) is has_output


# -- selection and unusable input ----------------------------------------------------------------


def _tagged() -> dict[str, Any]:
    return doc(
        {
            "/p": {
                "get": op(operationId="listPets", tags=["pets"]),
                "post": op(operationId="createPet", tags=["pets", "admin"]),
            },
            "/s": {"get": op(operationId="getStore", tags=["store"]), "delete": op(tags=["store"])},
            "/u": {"get": op(operationId="untagged")},
        }
    )


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(), {"listPets", "createPet", "getStore", "delete_s", "untagged"}),
        (Selection(include_tags=["pets"]), {"listPets", "createPet"}),
        (Selection(include_tags=["pe*"], exclude_tags=["admin"]), {"listPets"}),
        (Selection(include_operations=["get*"]), {"getStore"}),
        (
            Selection(include_tags=["store"], include_operations=["untagged"]),
            {"getStore", "delete_s", "untagged"},
        ),
        (Selection(exclude_operations=["*Pet*", "delete_s"]), {"getStore", "untagged"}),
        (Selection(include_operations=["listPets"], exclude_tags=["pets"]), set()),
    ],
)
def test_selection_by_tag_and_operation_id(selection: Selection, expected: set[str]) -> None:
    """Inclusions add up (a tag or an operation id); any exclusion wins; globs match."""
    assert set(convert(_tagged(), selection).tools) == expected


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be an object"),
        ({"swagger": "2.0", "paths": {}}, "Swagger 2.0"),
        ({"openapi": "2.9", "paths": {}}, "not an OpenAPI 3.x"),
        ({"openapi": "3.1.0", "paths": []}, "'paths' must be an object"),
    ],
)
def test_an_unusable_document_is_refused_with_a_reason(document: Any, message: str) -> None:
    with pytest.raises(OpenApiError, match=re.escape(message)):
        convert(document)


def test_an_operation_that_cannot_be_converted_is_skipped_and_named() -> None:
    """Bad or cyclic references, an external reference, a path with `..` or an invalid cookie
    name skip that operation only."""
    document = doc(
        {
            "/ok": {"get": op(operationId="ok")},
            "/bad": {"get": op(parameters=[{"$ref": "#/components/parameters/Nope"}])},
            "/ext": {"get": op(parameters=[{"$ref": "other.yaml#/Param"}])},
            "/a/../admin": {"get": op(operationId="climb")},
            "/loop": {"get": op(parameters=[{"$ref": "#/components/parameters/L1"}])},
            "/cookie": {"get": op(parameters=[{"name": "a;b=c", "in": "cookie", "schema": {}}])},
        }
    )
    document["components"]["parameters"] = {
        "L1": {"$ref": "#/components/parameters/L2"},
        "L2": {"$ref": "#/components/parameters/L1"},
    }
    converted = convert(document)
    assert set(converted.tools) == {"ok"}
    assert [s.split(":")[0] for s in converted.skipped] == [
        "GET /bad",
        "GET /ext",
        "GET /a/../admin",
        "GET /loop",
        "GET /cookie",
    ]


def test_values_of_the_wrong_type_skip_their_operation_and_never_raise_anything_else() -> None:
    """`tags: 5` is no tag; `required: 5`, an integer media type (request or response), non-list
    parameters or an integer schema keyword skip that operation only, named as malformed."""
    body = {"type": "object", "required": 5, "properties": {"id": {"readOnly": True}}}
    document = doc(
        {
            "/ok": {"get": op(operationId="ok", tags=5)},
            "/required": {"post": op(requestBody=json_body(body))},
            "/media": {"post": op(requestBody={"content": {5: {"schema": {}}}})},
            "/answer": {"get": {"responses": {"200": {"description": "x", "content": {5: {}}}}}},
            "/params": {"get": op(parameters=5)},
            "/keyword": {"post": op(requestBody=json_body({"type": "object", 5: 1}))},
        }
    )
    converted = convert(document)
    assert set(converted.tools) == {"ok"}
    assert [s.split(":")[0] for s in converted.skipped] == [
        "POST /required",
        "POST /media",
        "GET /answer",
        "GET /params",
        "POST /keyword",
    ]
    assert all("malformed" in s for s in converted.skipped)
    assert set(convert(document, Selection(include_tags=["*"])).tools) == set()  # 5 is not a tag


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "Cookie",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "Authorization",
        "Accept",
    ],
)
def test_headers_that_frame_route_or_attribute_a_request_are_not_arguments(header: str) -> None:
    """A header parameter naming Host, a framing or hop-by-hop header, Cookie, a proxy header or a
    forwarding header is left out of the input schema, so no argument can set it."""
    params = [
        {"name": header, "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
    ]
    document = doc({"/a": {"get": op(operationId="a", parameters=params)}})
    converted = convert(document)
    assert converted.tools["a"].input_schema["properties"] == {"X-Trace": {"type": "string"}}
    assert "required" not in converted.tools["a"].input_schema
    assert [p.name for p in converted.operations["a"].parameters] == ["X-Trace"]


# -- requests and responses ----------------------------------------------------------------------


def _operation(**fields: Any) -> Any:
    document = doc({"/files/{name}/v/{n}": {"post": op(operationId="f", **fields)}})
    return convert(document).operations["f"]


def test_path_values_are_one_encoded_segment_and_cannot_leave_the_base_url() -> None:
    """`/`, `?`, `#`, `%` and `..` inside a value are encoded; '.', '..' and '' are refused."""
    operation = _operation()
    call = build(operation, {"name": "../../etc/passwd?x#y", "n": "50%"}, "https://api.example.com/v1/")
    assert call.url == "https://api.example.com/v1/files/..%2F..%2Fetc%2Fpasswd%3Fx%23y/v/50%25"
    for bad in ("..", ".", ""):
        with pytest.raises(ArgumentError):
            build(operation, {"name": bad, "n": "1"}, "https://api.example.com")
    with pytest.raises(ArgumentError):
        build(operation, {"n": "1"}, "https://api.example.com")


def test_query_header_and_cookie_serialisation_styles() -> None:
    """form (exploded or not), spaceDelimited, pipeDelimited, deepObject, content-as-JSON; header and
    cookie values must be one line."""
    params = [
        {"name": "a", "in": "query", "schema": {"type": "array"}},
        {"name": "b", "in": "query", "explode": False, "schema": {"type": "array"}},
        {"name": "c", "in": "query", "style": "pipeDelimited", "explode": False, "schema": {"type": "array"}},
        {"name": "d", "in": "query", "style": "deepObject", "schema": {"type": "object"}},
        {"name": "e", "in": "query", "content": {"application/json": {"schema": {"type": "object"}}}},
        {"name": "f", "in": "query", "schema": {"type": "boolean"}},
        {"name": "X-Tag", "in": "header", "schema": {"type": "array"}},
        {"name": "sid", "in": "cookie", "schema": {"type": "string"}},
    ]
    operation = _operation(parameters=params)
    args = {
        "name": "n",
        "n": 1,
        "a": [1, 2],
        "b": ["x", "y"],
        "c": ["p", "q"],
        "d": {"k": "v", "m": 2},
        "e": {"j": [1]},
        "f": True,
        "X-Tag": ["t1", "t2"],
        "sid": "s 1;",
    }
    call = build(operation, args, "http://h")
    assert call.params == [
        ("a", "1"),
        ("a", "2"),
        ("b", "x,y"),
        ("c", "p|q"),
        ("d[k]", "v"),
        ("d[m]", "2"),
        ("e", '{"j":[1]}'),
        ("f", "true"),
    ]
    assert call.headers["x-tag"] == "t1,t2" and call.headers["cookie"] == "sid=s%201%3B"
    for bad in ({"X-Tag": ["a\r\nInjected: 1"]}, {"sid": "a\nb"}, {"X-Tag": ["snowman ☃"]}):
        with pytest.raises(ArgumentError):
            build(operation, {"name": "n", "n": 1, **bad}, "http://h")


@pytest.mark.parametrize(
    ("media", "body", "content", "content_type"),
    [
        ("application/json", {"a": "é"}, '{"a":"é"}'.encode(), "application/json"),
        ("application/merge-patch+json", {"a": None}, b'{"a":null}', "application/merge-patch+json"),
        (
            "application/x-www-form-urlencoded",
            {"a": "1 2", "b": True},
            b"a=1+2&b=true",
            "application/x-www-form-urlencoded",
        ),
        ("text/plain", "hello", b"hello", "text/plain"),
        ("application/octet-stream", "AAEC", b"\x00\x01\x02", "application/octet-stream"),
    ],
)
def test_request_bodies_by_media_type(media: str, body: Any, content: bytes, content_type: str) -> None:
    operation = _operation(requestBody={"content": {media: {"schema": {}}}})
    call = build(operation, {"name": "n", "n": 1, "body": body}, "http://h")
    assert call.content == content and call.headers["content-type"] == content_type


def test_multipart_bodies_are_plain_form_fields() -> None:
    operation = _operation(requestBody={"content": {"multipart/form-data": {"schema": {"type": "object"}}}})
    call = build(operation, {"name": "n", "n": 1, "body": {"a": 1, "b": "x"}}, "http://h")
    assert call.files == [("a", (None, "1")), ("b", (None, "x"))] and "content-type" not in call.headers


def test_responses_become_structured_content_text_binary_or_tool_errors() -> None:
    """A JSON object is structured content; a response contradicting the output schema, an HTTP
    error or an oversized body are tool errors with a reason and the status."""
    validator = Draft202012Validator(
        {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    )
    ok = render(
        HttpAnswer(200, "application/json", b'{"id": 1}'), validator=validator, resource_uri="openapi://r/t"
    )
    assert ok.structured_content == {"id": 1} and not ok.is_error
    wrong = render(
        HttpAnswer(200, "application/json", b'{"id": "x"}'), validator=validator, resource_uri="openapi://r/t"
    )
    assert wrong.is_error and wrong.meta == {
        "io.interlink/reason": "upstream_response_invalid",
        "io.interlink/status": 200,
    }
    listed = render(
        HttpAnswer(200, "application/json; charset=utf-8", b"[1, 2]"),
        validator=None,
        resource_uri="openapi://r/t",
    )
    assert listed.structured_content is None and listed.content[0].text == "[1, 2]"  # type: ignore[union-attr]
    blob = render(HttpAnswer(200, "application/pdf", b"%PDF"), validator=None, resource_uri="openapi://r/t")
    assert (
        isinstance(blob.content[0], EmbeddedResource) and str(blob.content[0].resource.uri) == "openapi://r/t"
    )
    empty = render(HttpAnswer(204, "", b""), validator=None, resource_uri="openapi://r/t")
    assert not empty.is_error
    moved = render(
        HttpAnswer(302, "text/html", b"<a href='http://internal/x'>"), validator=None, resource_uri="u:x"
    )
    assert moved.is_error and moved.content[0].text == "HTTP 302 Found (redirects are not followed)"  # type: ignore[union-attr]
    big = render(HttpAnswer(200, "", b"", oversized=10), validator=None, resource_uri="u:x")
    assert big.meta == {"io.interlink/reason": "upstream_response_too_large", "io.interlink/status": 200}


def test_a_response_contradicting_its_schema_carries_a_bounded_redacted_excerpt() -> None:
    """The body of a 2xx that does not match the output schema is shown capped and without
    Interlink's credentials or URLs, like other excerpts."""
    validator = Draft202012Validator({"type": "object", "required": ["id"]})
    body = json.dumps({"key": "SECRET-KEY-1", "at": "http://10.0.0.1/x", "pad": "p" * 1_000_000}).encode()
    result = render(
        HttpAnswer(200, "application/json", body),
        validator=validator,
        resource_uri="u:x",
        redact=["SECRET-KEY-1"],
    )
    assert result.is_error and result.meta is not None
    assert result.meta["io.interlink/reason"] == "upstream_response_invalid"
    excerpt = result.content[1].text  # type: ignore[union-attr]
    assert len(excerpt) <= MISMATCH_EXCERPT_CHARS and excerpt.startswith(
        '{"key": "[redacted]", "at": "[url]"'
    )
    assert "SECRET-KEY-1" not in excerpt and "10.0.0.1" not in excerpt


def test_json_nested_too_deeply_is_a_tool_error() -> None:
    """A 2xx JSON body nested 100,000 levels deep is `upstream_response_invalid`, not a crash."""
    deep = b"[" * 100_000 + b"]" * 100_000
    result = render(HttpAnswer(200, "application/json", deep), validator=None, resource_uri="u:x")
    assert result.is_error and result.meta == {
        "io.interlink/reason": "upstream_response_invalid",
        "io.interlink/status": 200,
    }


def test_error_excerpts_hide_credentials_urls_and_control_characters() -> None:
    body = b"denied for key SECRET-KEY-1 at https://10.0.0.1:8443/db?x=1 \x1b[31mred\x1b[0m\n" + b"z" * 1000
    excerpt = safe_excerpt(HttpAnswer(403, "text/plain", body), ["SECRET-KEY-1", "abc"])
    assert excerpt.startswith("denied for key [redacted] at [url] [31mred [0m z")
    assert len(excerpt) == 300 and "10.0.0.1" not in excerpt
    assert safe_excerpt(HttpAnswer(500, "image/png", b"\x89PNG")) == "<4 bytes of image/png>"


# -- a public spec of realistic size -------------------------------------------------------------


@pytest.mark.skipif(
    not GITHUB.is_file(), reason="npm package @octokit/openapi not installed (npm ci --prefix tests/npm)"
)
def test_githubs_rest_api_description_converts_without_error() -> None:
    """GitHub's OpenAPI 3.0 description (@octokit/openapi, ~13 MB, ~1,200 operations): every
    operation becomes a tool with a valid, unique name; sampled schemas are valid 2020-12."""
    document = json.loads(GITHUB.read_text())
    operations = sum(
        1
        for item in document["paths"].values()
        for m in item
        if m in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    )
    started = time.perf_counter()
    converted = convert(document)
    elapsed = time.perf_counter() - started
    print(f"\nGitHub REST API: {operations} operations -> {len(converted.tools)} tools in {elapsed:.2f}s")
    assert converted.skipped == () and len(converted.tools) == operations > 1000
    assert all(TOOL_NAME.match(name) for name in converted.tools)
    assert sum(1 for t in converted.tools.values() if t.output_schema is not None) > 400
    for tool in list(converted.tools.values())[::40]:
        Draft202012Validator.check_schema(tool.input_schema)
        if tool.output_schema is not None:
            Draft202012Validator.check_schema(tool.output_schema)
    repo = converted.tools["repos_get"]
    assert repo.input_schema["required"] == ["owner", "repo"] and repo.output_schema is not None
    filtered = convert(document, Selection(include_tags=["issues"], exclude_operations=["issues/*lock"]))
    assert 30 < len(filtered.tools) < 100 and {"issues_lock", "issues_unlock"}.isdisjoint(filtered.tools)


LAUGHS = b"""openapi: 3.1.0
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (LAUGHS, "once YAML aliases expand"),
        (b"openapi: 3.1.0\nloop: &l {self: *l}\n", "contains itself"),
    ],
)
def test_hostile_yaml_is_refused(document: bytes, problem: str) -> None:
    """Aliases are data, not a way to make a few kB into gigabytes or a value that holds itself."""
    with pytest.raises(OpenApiError, match=problem):
        parse_document(document)


def test_yaml_scalars_become_plain_json() -> None:
    parsed = parse_document(b"openapi: 3.1.0\ninfo: {title: t, version: 2024-01-02}\n200: ok\n")
    assert parsed == {"openapi": "3.1.0", "info": {"title": "t", "version": "2024-01-02"}, "200": "ok"}
