"""MCP tools as A2A skills, the pure half: which text a tool takes, how a message becomes arguments,
how a result becomes artifact parts, and what a tool's skill says."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from a2a.types import Message, Part
from google.protobuf import json_format, struct_pb2
from mcp_types import (
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
    ToolAnnotations,
)

from adapters.a2a.tool_skills import (
    UnconvertibleResult,
    arguments_for,
    check_arguments,
    error_text,
    result_parts,
    skill_for,
    text_parameter,
)
from gateway.errors import InvalidArguments


def tool(properties: dict[str, Any] | None = None, required: list[str] | None = None, **extra: Any) -> Tool:
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required is not None:
        schema["required"] = required
    return Tool(name="t", input_schema=schema | extra)


STRING = {"type": "string"}
NUMBER = {"type": "number"}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (tool(), ""),  # no parameters: text carries nothing
        (tool({"message": STRING}, ["message"]), "message"),  # the only required string
        (tool({"q": STRING, "limit": NUMBER}, ["q"]), "q"),  # one required string, others optional
        (tool({"q": STRING}), "q"),  # the only (optional) parameter
        (tool({"a": NUMBER, "b": NUMBER}, ["a", "b"]), None),  # two required
        (tool({"n": NUMBER}, ["n"]), None),  # not a string
        (tool({"a": STRING, "b": STRING}), None),  # two optional: ambiguous
    ],
)
def test_text_parameter(definition: Tool, expected: str | None) -> None:
    """Text maps to a parameter only when exactly one string parameter can take it."""
    assert text_parameter(definition) == expected


def data(value: Any) -> Part:
    wrapped = struct_pb2.Value()
    json_format.ParseDict(value, wrapped)
    return Part(data=wrapped)


@pytest.mark.parametrize(
    ("parts", "definition", "expected"),
    [
        ([data({"a": 19, "b": 2.5})], tool({"a": NUMBER, "b": NUMBER}), {"a": 19, "b": 2.5}),
        ([data({"message": "x"}), Part(text="ignored")], tool({"message": STRING}), {"message": "x"}),
        ([Part(text='{"a": 1}')], tool({"a": NUMBER, "b": NUMBER}), {"a": 1}),
        ([Part(text="hello"), Part(text="world")], tool({"m": STRING}, ["m"]), {"m": "hello\nworld"}),
        ([Part(text="{not json")], tool({"m": STRING}, ["m"]), {"m": "{not json"}),
        ([Part(text="anything")], tool(), {}),
    ],
)
def test_arguments_for(parts: list[Part], definition: Tool, expected: dict[str, Any]) -> None:
    """A data part, then JSON-object text, then text for the one string parameter."""
    arguments = arguments_for(Message(parts=parts), "s", definition)
    assert arguments == expected
    assert all(type(v) is type(expected[k]) for k, v in arguments.items())  # 19 stays an integer


@pytest.mark.parametrize(
    ("parts", "definition", "says"),
    [
        ([Part(text="nineteen")], tool({"a": NUMBER, "b": NUMBER}, ["a", "b"]), "a (number, required)"),
        ([data([1, 2])], tool({"a": NUMBER}), "must hold an object"),
        ([Part(raw=b"%PDF")], tool({"m": STRING}, ["m"]), "does not take files"),
        ([], tool({"m": STRING}, ["m"]), "plain text (it fills 'm')"),
    ],
)
def test_unmappable_messages(parts: list[Part], definition: Tool, says: str) -> None:
    """Anything else is refused, naming the arguments the tool takes and how to send them."""
    with pytest.raises(InvalidArguments) as err:
        arguments_for(Message(parts=parts), "s", definition)
    assert says in err.value.message


def test_schema_violations_are_named() -> None:
    """Arguments the input schema refuses are refused with the path and the problem."""
    with pytest.raises(InvalidArguments) as err:
        check_arguments({"a": "x"}, "sum", tool({"a": NUMBER, "b": NUMBER}, ["a", "b"]))
    assert "$.a: 'x' is not of type 'number'" in err.value.message
    assert "'b' is a required property" in err.value.message


@pytest.mark.parametrize(
    "parts", [[Part(text="nineteen")], [data([1, 2])], [Part(raw=b"%PDF")], [data({"a": "x"})]]
)
def test_refusals_describe_nothing_without_describe(parts: list[Part]) -> None:
    """For a caller whose card does not show the skill, a refusal names no argument, type or
    schema complaint (the tool's schema is shown only to callers that may use it)."""
    definition = tool({"a": NUMBER, "b": NUMBER}, ["a", "b"])
    with pytest.raises(InvalidArguments) as err:
        arguments = arguments_for(Message(parts=parts), "sum", definition, describe=False)
        check_arguments(arguments, "sum", definition, describe=False)
    assert "sum" in err.value.message
    assert not any(word in err.value.message for word in ("number", "'a'", "'b'", "$.", "required"))


@pytest.mark.parametrize(
    ("result", "says"),
    [
        (CallToolResult(content=[], structured_content={"n": 10**309}), "beyond the range"),
        (CallToolResult(content=[TextContent(type="text", text="\ud800")]), "not valid Unicode"),
        (
            CallToolResult(
                content=[
                    EmbeddedResource(
                        type="resource", resource=TextResourceContents(uri="x://a", text="\udfff")
                    )
                ]
            ),
            "not valid Unicode",
        ),
    ],
)
def test_results_a2a_cannot_carry(result: CallToolResult, says: str) -> None:
    """A number beyond a double's range or text that is not valid Unicode is UnconvertibleResult,
    whose message names the kind of problem and nothing of the value."""
    with pytest.raises(UnconvertibleResult, match=says) as err:
        result_parts(result)
    assert "10000" not in str(err.value)


def test_result_parts() -> None:
    """Text, image, link, embedded text and blob resources, and structured content, in order."""
    png = base64.b64encode(b"\x89PNG...").decode()
    result = CallToolResult(
        content=[
            TextContent(type="text", text="hi"),
            ImageContent(type="image", data=png, mime_type="image/png"),
            ResourceLink(
                type="resource_link", name="doc", uri="https://example.com/doc", mime_type="text/html"
            ),
            EmbeddedResource(
                type="resource", resource=TextResourceContents(uri="demo://notes/a.txt", text="note")
            ),
            EmbeddedResource(
                type="resource",
                resource=BlobResourceContents(uri="demo://b.bin", blob=base64.b64encode(b"\x00").decode()),
            ),
            ImageContent(type="image", data="not base64!", mime_type="image/png"),
        ],
        structured_content={"n": 1},
    )
    parts = result_parts(result)
    assert [p.WhichOneof("content") for p in parts] == ["text", "raw", "url", "raw", "raw", "text", "data"]
    assert parts[1].raw == b"\x89PNG..." and parts[1].media_type == "image/png"
    assert (parts[2].url, parts[2].filename) == ("https://example.com/doc", "doc")
    assert (parts[3].raw, parts[3].filename, parts[3].media_type) == (b"note", "a.txt", "text/plain")
    assert parts[3].metadata["uri"] == "demo://notes/a.txt"
    assert parts[4].media_type == "application/octet-stream"
    assert "not valid base64" in parts[5].text
    assert (
        json_format.MessageToDict(parts[6].data) == {"n": 1.0} and parts[6].media_type == "application/json"
    )


def test_error_text() -> None:
    failed = CallToolResult(content=[TextContent(type="text", text="boom")], is_error=True)
    assert error_text(failed) == "boom"
    assert "without a message" in error_text(CallToolResult(content=[], is_error=True))


def test_skill_for() -> None:
    """A skill from a tool: title, description, hints as tags, schema examples, text mode when mappable."""
    definition = Tool(
        name="echo",
        title="Echo Tool",
        description="Echoes",
        input_schema={
            "type": "object",
            "properties": {"message": STRING},
            "required": ["message"],
            "examples": [{"message": "hi"}],
        },
        annotations=ToolAnnotations(read_only_hint=True),
    )
    skill = skill_for("srv__echo", definition, ["srv", "mcp"])
    assert (skill.id, skill.name, skill.description) == ("srv__echo", "Echo Tool", "Echoes")
    assert list(skill.tags) == ["srv", "mcp", "read-only"]
    assert list(skill.examples) == ['{"message":"hi"}']
    assert list(skill.input_modes) == ["application/json", "text/plain"]
    bare = skill_for("srv__sum", tool({"a": NUMBER}, ["a"]), [])
    assert (bare.name, list(bare.input_modes)) == ("srv__sum", ["application/json"])
