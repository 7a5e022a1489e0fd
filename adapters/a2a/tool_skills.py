"""MCP tools as A2A skills, the pure half: a tool's skill on a card, a message's tool arguments, a
tool result's artifact parts (A2A 1.0 §4.1 Part/Artifact/AgentSkill; MCP 2025-11-25 "Tools").
No I/O; imports nothing of the gateway but its errors (the wiring is gateway/a2a_publish.py).

A message becomes arguments by the first rule that applies:
1. a data part (`Part.data`) holding an object: the arguments (other parts are ignored); numbers
   that are whole become integers (protobuf carries every number as a double);
2. text (the text parts, joined by newlines) that is a JSON object: the arguments;
3. text, for a tool that takes exactly one string parameter (the only required one, or the only
   one): that parameter; for a tool with no parameters at all: no arguments.
Anything else (files, a data part that is not an object, text for any other tool) is refused with
`InvalidArguments` naming the arguments the tool expects; so are arguments its schema refuses. With
`describe=False` (a caller whose card does not show the skill) a refusal names neither the
arguments nor the schema's complaints: a tool's schema is shown only to callers that may use it.

A result whose content A2A cannot carry (a number beyond a double's range, text that is not valid
Unicode) raises `UnconvertibleResult`, whose message is safe to show.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from a2a.types import AgentSkill, Message, Part
from google.protobuf import json_format, struct_pb2
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    Tool,
)

from adapters.a2a.values import whole_numbers
from gateway.errors import InvalidArguments

TEXT: Final = "text/plain"
JSON: Final = "application/json"
MAX_PROBLEMS: Final = 5
"""Most schema violations named in one refusal."""


# -- a tool's skill ------------------------------------------------------------------------------


def text_parameter(tool: Tool) -> str | None:
    """The parameter a plain-text message fills: the tool's only required parameter, or its only
    parameter, when that is a string; `""` for a tool without parameters; None when text cannot be
    mapped unambiguously."""
    properties = _properties(tool)
    if not properties:
        return ""
    required = [r for r in tool.input_schema.get("required", ()) if isinstance(r, str)]
    candidates = required if len(required) == 1 else list(properties) if not required else []
    if len(candidates) != 1:
        return None
    schema = properties.get(candidates[0])
    if isinstance(schema, Mapping) and schema.get("type") == "string":
        return candidates[0]
    return None


def skill_for(exposed: str, tool: Tool, tags: Sequence[str]) -> AgentSkill:
    """The A2A skill of `tool` (exposed as `exposed`): id = the exposed name, name = its title,
    its description, `tags` plus its MCP annotations (read-only, destructive...), the examples of
    its input schema, and the input modes it accepts (text only where text can be mapped)."""
    annotations = tool.annotations
    skill = AgentSkill(
        id=exposed,
        name=tool.title or (annotations.title if annotations and annotations.title else None) or exposed,
        description=tool.description or f"MCP tool {exposed}",
        tags=[*tags, *_hints(tool)],
        examples=_examples(tool),
        input_modes=[JSON, TEXT] if text_parameter(tool) is not None else [JSON],
        output_modes=[TEXT, JSON],
    )
    return skill


def _hints(tool: Tool) -> list[str]:
    annotations = tool.annotations
    if annotations is None:
        return []
    hints = {
        "read-only": annotations.read_only_hint,
        "destructive": annotations.destructive_hint and not annotations.read_only_hint,
        "idempotent": annotations.idempotent_hint,
        "open-world": annotations.open_world_hint,
    }
    return [tag for tag, on in hints.items() if on]


def _examples(tool: Tool) -> list[str]:
    """JSON Schema `examples` of the input (each an arguments object), as the JSON to send."""
    examples = tool.input_schema.get("examples")
    if not isinstance(examples, list):
        return []
    return [json.dumps(e, separators=(",", ":")) for e in examples[:5] if isinstance(e, dict)]


class UnconvertibleResult(ValueError):
    """A tool result that cannot become A2A parts; the message says why, naming nothing of the value."""


def expected(tool: Tool) -> str:
    """The arguments `tool` takes, for a refusal: names, types, which are required, how to send."""
    properties = _properties(tool)
    required = set(tool.input_schema.get("required", ()))
    if not properties:
        return "it takes no arguments (send any text, or an empty data part {})"
    described = ", ".join(
        f"{name} ({_type(schema)}{', required' if name in required else ''})"
        for name, schema in properties.items()
    )
    how = "send them as a data part holding an object, or as text holding a JSON object"
    param = text_parameter(tool)
    if param:
        how += f", or as plain text (it fills {param!r})"
    return f"it takes {described}: {how}"


def _properties(tool: Tool) -> dict[str, Any]:
    properties = tool.input_schema.get("properties")
    return dict(properties) if isinstance(properties, Mapping) else {}


def _type(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    if "enum" in schema:
        return "one of " + "/".join(json.dumps(v) for v in schema["enum"][:8])
    return str(kind) if kind else "any"


# -- a message's arguments -----------------------------------------------------------------------


def arguments_for(message: Message, skill: str, tool: Tool, *, describe: bool = True) -> dict[str, Any]:
    """The tool arguments `message` carries (module docstring), not yet checked against the schema;
    a refusal names the arguments expected only with `describe`."""
    hint = f"; {expected(tool)}" if describe else ""
    data = [p for p in message.parts if p.WhichOneof("content") == "data"]
    if data:
        value = whole_numbers(json_format.MessageToDict(data[0].data))
        if not isinstance(value, dict):
            raise InvalidArguments(
                f"the data part for skill {skill!r} must hold an object of arguments{hint}"
            )
        return value
    if any(p.WhichOneof("content") in ("raw", "url") for p in message.parts):
        raise InvalidArguments(f"skill {skill!r} does not take files{hint}")
    text = "\n".join(p.text for p in message.parts if p.WhichOneof("content") == "text")
    if text.strip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    param = text_parameter(tool)
    if param == "":
        return {}
    if param is not None and text:
        return {param: text}
    raise InvalidArguments(f"cannot map this message to the arguments of skill {skill!r}{hint}")


def check_arguments(arguments: Mapping[str, Any], skill: str, tool: Tool, *, describe: bool = True) -> None:
    """Refuse arguments the tool's input schema refuses (the virtual server checks them again); the
    refusal names the schema's complaints and the arguments expected only with `describe`."""
    cls = validator_for(tool.input_schema, default=Draft202012Validator)
    errors = sorted(cls(tool.input_schema).iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if errors and not describe:
        raise InvalidArguments(f"invalid arguments for skill {skill!r}")
    if errors:
        problems = "; ".join(f"{e.json_path}: {e.message}" for e in errors[:MAX_PROBLEMS])
        raise InvalidArguments(f"invalid arguments for skill {skill!r} ({problems}); {expected(tool)}")


# -- a result's artifact -------------------------------------------------------------------------


def result_parts(result: CallToolResult) -> list[Part]:
    """A tool result as artifact parts: text as text parts; images, audio and embedded resources as
    file parts (bytes, media type, file name); resource links as URL parts; structured content as
    one data part (`application/json`), after the content it accompanies. UnconvertibleResult when
    A2A cannot carry it (protobuf holds every number as a double, and text as valid UTF-8)."""
    try:
        parts = [_part(block) for block in result.content]
        if result.structured_content is not None:
            value = struct_pb2.Value()
            json_format.ParseDict(result.structured_content, value)
            parts.append(Part(data=value, media_type=JSON))
    except OverflowError:
        raise UnconvertibleResult("it holds a number beyond the range A2A carries (a double)") from None
    except UnicodeError:
        raise UnconvertibleResult("it holds text that is not valid Unicode") from None
    except (ValueError, TypeError, json_format.Error):
        raise UnconvertibleResult("it holds a value A2A cannot carry") from None
    return parts


def error_text(result: CallToolResult) -> str:
    """What a failed tool said (its text content), or a generic line when it said nothing."""
    text = "\n".join(b.text for b in result.content if isinstance(b, TextContent)).strip()
    return text or "the tool reported an error without a message"


def _part(block: Any) -> Part:
    if isinstance(block, TextContent):
        return Part(text=block.text)
    if isinstance(block, ImageContent | AudioContent):
        return _raw(block.data, block.mime_type, block.type)
    if isinstance(block, ResourceLink):
        return Part(url=block.uri, media_type=block.mime_type or "", filename=block.name)
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        name = resource.uri.rstrip("/").rsplit("/", 1)[-1]
        if isinstance(resource, BlobResourceContents):
            part = _raw(resource.blob, resource.mime_type or "application/octet-stream", "resource")
        else:
            part = Part(raw=resource.text.encode(), media_type=resource.mime_type or TEXT)
        part.filename = name
        part.metadata.update({"uri": resource.uri})
        return part
    return Part(text=f"[{getattr(block, 'type', 'unknown')} content]")


def _raw(data: str, media_type: str, kind: str) -> Part:
    try:
        return Part(raw=base64.b64decode(data, validate=True), media_type=media_type)
    except (binascii.Error, ValueError):
        return Part(text=f"[{kind} content that is not valid base64]")
