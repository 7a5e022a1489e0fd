"""An OpenAPI 3.0/3.1 document's operations as MCP tools. Pure: no I/O; imports nothing of the gateway.

One tool per operation (OpenAPI 3.1 §4.8.10): its name is the `operationId` in the character set
LLM tool-calling APIs accept (`[A-Za-z0-9_-]`, at most `MAX_NAME` characters; a longer one keeps a
hash of the original), or `<method>_<path>` when there is none; its input schema has one property per
path, query, header and cookie parameter plus `body` for the request body; its output schema is the
2xx JSON response's when that is the only 2xx response and an object. Operations are selected by
tag and operation id (globs); an operation matching any exclusion is left out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final, Literal

from mcp_types import Tool, ToolAnnotations

from adapters.openapi.schema import OpenApiError, SchemaConverter, is_object_schema

HTTP_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_NAME: Final = 64
"""Longest tool name (OpenAI's function-name limit; the namespaced name stays within MCP's 128)."""
MAX_DESCRIPTION: Final = 1024
MAX_OUTPUT_SCHEMA_BYTES: Final = 64 * 1024
"""An output schema larger than this is left out (structured content is still returned), so one
huge response type does not bloat every `tools/list`."""
IGNORED_HEADERS: Final = frozenset({"accept", "content-type", "authorization"})
"""Header parameters OpenAPI says to ignore (§4.8.12.1): Interlink sets these itself."""
UNSETTABLE_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "via",
        "cookie",
        "forwarded",
        "x-real-ip",
        "http2-settings",
    }
)
"""Header parameters never taken from a tool's arguments, so a caller cannot pick the virtual host,
frame the message (RFC 9112 §6: request smuggling), steer a proxy (RFC 9110 §7.6.1 hop-by-hop
fields) or pose as another client; cookies come only from `in: cookie` parameters."""
UNSETTABLE_PREFIXES: Final = ("proxy-", "x-forwarded-")
MALFORMED: Final = (TypeError, AttributeError, KeyError, IndexError, ValueError)
"""What a value of the wrong type in a parsed document raises while it is converted (`tags: 5`,
`required: 5`, an integer media type): a malformed document, reported as an OpenApiError."""
HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
PATH: Final = re.compile(r"^/[^?#]*$")
TEMPLATE: Final = re.compile(r"\{([^{}/]+)\}")

Location = Literal["path", "query", "header", "cookie"]
BodyKind = Literal["json", "form", "multipart", "text", "binary"]


@dataclass(frozen=True)
class Parameter:
    """One parameter of an operation: `name` on the wire, `argument` in the tool's input."""

    name: str
    location: Location
    argument: str
    style: str
    explode: bool
    as_json: bool = False
    """Described by `content` (a JSON media type) instead of `schema`: sent as JSON text."""


@dataclass(frozen=True)
class RequestBody:
    media_type: str
    kind: BodyKind


@dataclass(frozen=True)
class Operation:
    """How to turn one tool call into an HTTP request."""

    tool: str
    method: str
    path: str
    operation_id: str | None
    tags: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    body: RequestBody | None


@dataclass(frozen=True)
class Selection:
    """Which operations become tools: globs over tags and operation ids. With no inclusions, every
    operation; otherwise those matching an included tag or an included operation id. Exclusions win."""

    include_tags: Sequence[str] = ()
    exclude_tags: Sequence[str] = ()
    include_operations: Sequence[str] = ()
    exclude_operations: Sequence[str] = ()

    def selects(self, names: Sequence[str], tags: Sequence[str]) -> bool:
        """`names`: the operation id and the tool name (either may match an operation glob)."""

        def hit(patterns: Sequence[str], values: Sequence[str]) -> bool:
            return any(fnmatchcase(v, p) for p in patterns for v in values)

        if hit(self.exclude_tags, tags) or hit(self.exclude_operations, names):
            return False
        if not self.include_tags and not self.include_operations:
            return True
        return hit(self.include_tags, tags) or hit(self.include_operations, names)


@dataclass(frozen=True)
class Conversion:
    """The tools of one document, how to call each, and what was left out and why."""

    version: str
    title: str
    tools: dict[str, Tool]
    operations: dict[str, Operation]
    skipped: tuple[str, ...] = field(default=())
    """`METHOD /path: reason` for each operation that could not be converted."""


def convert(document: Any, selection: Selection = Selection()) -> Conversion:
    """The selected operations of `document` (a parsed OpenAPI 3.0/3.1 document) as tools.

    Raises OpenApiError (never anything else) when the document itself is unusable; an operation
    that cannot be converted, whatever the reason, is skipped and named in `Conversion.skipped`."""
    try:
        return _convert(document, selection)
    except RecursionError:
        raise OpenApiError("the document is nested too deeply") from None
    except OpenApiError:
        raise
    except MALFORMED as exc:
        raise OpenApiError(f"the document is malformed ({type(exc).__name__})") from exc


def _convert(document: Any, selection: Selection) -> Conversion:
    version = _version(document)
    schemas = SchemaConverter(document, openapi_30=version.startswith("3.0"))
    paths = document.get("paths")
    paths = {} if paths is None else paths
    if not isinstance(paths, Mapping):
        raise OpenApiError("'paths' must be an object")
    tools: dict[str, Tool] = {}
    operations: dict[str, Operation] = {}
    skipped: list[str] = []
    named: set[str] = set()
    """Every operation's name, selected or not: a filter never renames a tool."""
    for path, item in paths.items():
        try:
            item = schemas.deref(item)
        except OpenApiError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        if not isinstance(item, Mapping):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            operation_id = op["operationId"] if isinstance(op.get("operationId"), str) else None
            name = tool_name(operation_id, method, str(path), named)
            named.add(name)
            if not selection.selects([n for n in (operation_id, name) if n], _tags(op)):
                continue
            try:
                tool, operation = _operation(schemas, name, str(path), method, item, op)
            except OpenApiError as exc:
                skipped.append(f"{method.upper()} {path}: {exc}")
                continue
            except RecursionError:
                skipped.append(f"{method.upper()} {path}: schemas nested too deeply")
                continue
            except MALFORMED as exc:  # a value of the wrong type somewhere in the operation
                skipped.append(f"{method.upper()} {path}: malformed ({type(exc).__name__})")
                continue
            tools[name] = tool
            operations[name] = operation
    info = document.get("info")
    title = info.get("title") if isinstance(info, Mapping) else None
    return Conversion(version, str(title or ""), tools, operations, tuple(skipped))


def _tags(op: Mapping[str, Any]) -> tuple[str, ...]:
    tags = op.get("tags")
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()


def _version(document: Any) -> str:
    if not isinstance(document, Mapping):
        raise OpenApiError("an OpenAPI document must be an object")
    if "swagger" in document:
        raise OpenApiError("Swagger 2.0 documents are not supported; convert the document to OpenAPI 3")
    version = document.get("openapi")
    if not isinstance(version, str) or not re.match(r"^3\.[0-9]+(\.|$)", version):
        raise OpenApiError("not an OpenAPI 3.x document (its 'openapi' field must be 3.0.x or 3.1.x)")
    return version


def _operation(
    schemas: SchemaConverter,
    name: str,
    path: str,
    method: str,
    item: Mapping[str, Any],
    op: Mapping[str, Any],
) -> tuple[Tool, Operation]:
    if not PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise OpenApiError("the path must start with '/' and hold no '.', '..', '?' or '#' segment")
    operation_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
    properties: dict[str, Any] = {}
    required: list[str] = []
    needed: set[str] = set()
    params = _parameters(schemas, path, item, op)
    bound: list[Parameter] = []
    for raw, schema, more in params:
        needed |= more
        argument = _argument(raw["name"], raw["in"], properties)
        bound.append(_parameter(raw, argument))
        properties[argument] = schema
        if raw.get("required") is True or raw["in"] == "path":
            required.append(argument)
    body = _body(schemas, op)
    if body is not None:
        _spec, schema, body_required, more = body
        needed |= more
        properties["body"] = schema
        if body_required:
            required.append("body")
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    input_schema["additionalProperties"] = False
    if needed:
        input_schema["$defs"] = schemas.definitions(frozenset(needed), "request")
    tags = _tags(op)
    tool = Tool(
        name=name,
        title=_text(op.get("summary"), 200),
        description=_description(op, method, path),
        input_schema=input_schema,
        output_schema=_output_schema(schemas, op),
        annotations=_annotations(method),
        _meta={"io.interlink/openapi": {"method": method.upper(), "path": path, "operationId": operation_id}},
    )
    operation = Operation(
        name, method.upper(), path, operation_id, tags, tuple(bound), body[0] if body is not None else None
    )
    return tool, operation


def tool_name(operation_id: str | None, method: str, path: str, taken: set[str]) -> str:
    """A deterministic name in `[A-Za-z0-9_-]{1,MAX_NAME}`, unique among `taken`."""
    base = _sanitise(operation_id or "") or _sanitise(f"{method}_{path}") or method
    if len(base) > MAX_NAME:
        base = f"{base[: MAX_NAME - 9]}_{_short_hash(operation_id or method + path)}"
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"_{_short_hash(f'{method} {path} {n}')}"
        name = base[: MAX_NAME - len(suffix)] + suffix
    return name


def _sanitise(text: str) -> str:
    return re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9_-]", "_", text)).strip("_")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _parameters(
    schemas: SchemaConverter, path: str, item: Mapping[str, Any], op: Mapping[str, Any]
) -> list[tuple[Mapping[str, Any], dict[str, Any], frozenset[str]]]:
    """The operation's parameters (path-level ones unless overridden, §4.8.9) with their schemas;
    a path template variable nobody declared becomes a required string."""
    merged: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*(item.get("parameters") or ()), *(op.get("parameters") or ())]:
        param = schemas.deref(raw)
        if not isinstance(param, Mapping) or not isinstance(param.get("name"), str):
            raise OpenApiError("a parameter without a name")
        where = param.get("in")
        if where not in ("path", "query", "header", "cookie"):
            raise OpenApiError(f"parameter {param['name']!r} has an unknown location {str(where)[:20]!r}")
        if where == "header" and not settable_header(param["name"]):
            continue
        if where in ("header", "cookie") and not HEADER_NAME.match(param["name"]):
            raise OpenApiError(f"{where} parameter {param['name'][:40]!r} is not a valid {where} name")
        merged[(param["name"], where)] = param
    for var in TEMPLATE.findall(path):
        merged.setdefault(
            (var, "path"), {"name": var, "in": "path", "required": True, "schema": {"type": "string"}}
        )
    declared = {name for name, where in merged if where == "path"}
    missing = declared - set(TEMPLATE.findall(path))
    for name in missing:
        del merged[(name, "path")]  # declared but not in the template: nowhere to put it
    out = []
    for param in merged.values():
        schema, needed = _parameter_schema(schemas, param)
        if isinstance(param.get("description"), str) and "description" not in schema:
            schema = {**schema, "description": _text(param["description"], MAX_DESCRIPTION)}
        if param.get("deprecated") is True:
            schema = {**schema, "deprecated": True}
        out.append((param, schema, needed))
    return out


def _parameter_schema(
    schemas: SchemaConverter, param: Mapping[str, Any]
) -> tuple[dict[str, Any], frozenset[str]]:
    if "schema" in param:
        return schemas.part(param["schema"], "request")
    content = param.get("content")
    if isinstance(content, Mapping) and content:
        media = next(iter(content.values()))
        if isinstance(media, Mapping) and "schema" in media:
            return schemas.part(media["schema"], "request")
    return {"type": "string"}, frozenset()


def settable_header(name: str) -> bool:
    """Whether a header parameter may be set from a tool's arguments: not one OpenAPI says to
    ignore (§4.8.12.1) and not one that frames, routes or attributes the request."""
    lowered = name.lower()
    return (
        lowered not in IGNORED_HEADERS
        and lowered not in UNSETTABLE_HEADERS
        and not lowered.startswith(UNSETTABLE_PREFIXES)
    )


def _argument(name: str, where: str, taken: Mapping[str, Any]) -> str:
    """The input property of a parameter: its name, or `<name>_<in>` when that is taken (the same
    name in two locations) or is `body`."""
    if name not in taken and name != "body":
        return name
    candidate = f"{name}_{where}"
    while candidate in taken:
        candidate += "_"
    return candidate


def _parameter(raw: Mapping[str, Any], argument: str) -> Parameter:
    where = raw["in"]
    style: str = raw["style"] if isinstance(raw.get("style"), str) else _DEFAULT_STYLE[where]
    explode: bool = raw["explode"] if isinstance(raw.get("explode"), bool) else style == "form"
    return Parameter(
        raw["name"], where, argument, style, explode, as_json="schema" not in raw and "content" in raw
    )


def _body(
    schemas: SchemaConverter, op: Mapping[str, Any]
) -> tuple[RequestBody, dict[str, Any], bool, frozenset[str]] | None:
    raw = op.get("requestBody")
    if raw is None:
        return None
    body = schemas.deref(raw)
    content = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(content, Mapping) or not content:
        return None
    media_type, kind = _pick_media(list(content))
    media = content[media_type]
    source = media.get("schema", {}) if isinstance(media, Mapping) else {}
    needed: frozenset[str] = frozenset()
    if kind == "binary":
        schema: dict[str, Any] = {"type": "string", "contentEncoding": "base64"}
    elif kind == "text" and not source:
        schema = {"type": "string"}
    else:
        schema, needed = schemas.part(source, "request")
    if isinstance(body.get("description"), str) and "description" not in schema:
        schema = {**schema, "description": _text(body["description"], MAX_DESCRIPTION)}
    return RequestBody(media_type, kind), schema, body.get("required") is True, needed


_DEFAULT_STYLE: Final[Mapping[str, str]] = {
    "path": "simple",
    "header": "simple",
    "query": "form",
    "cookie": "form",
}
"""OpenAPI 3.1 §4.8.12.4: the `style` of a parameter that names none."""

_MEDIA_PREFERENCE: Final[tuple[tuple[str, BodyKind], ...]] = (
    (r"application/json", "json"),
    (r".*[/+]json", "json"),
    (r"application/x-www-form-urlencoded", "form"),
    (r"multipart/form-data", "multipart"),
    (r"text/.*|.*[/+]xml", "text"),
    (r"\*/\*", "json"),
)


def _pick_media(types: list[str]) -> tuple[str, BodyKind]:
    """JSON first, then forms, then text, then anything else as base64 bytes."""
    lowered = [(t, t.split(";")[0].strip().lower()) for t in types]
    for pattern, kind in _MEDIA_PREFERENCE:
        for original, media in lowered:
            if re.fullmatch(pattern, media):
                return original, kind
    return types[0], "binary"


def _output_schema(schemas: SchemaConverter, op: Mapping[str, Any]) -> dict[str, Any] | None:
    responses = op.get("responses")
    if not isinstance(responses, Mapping):
        return None
    success = [k for k in responses if str(k).startswith("2") or str(k).upper() == "2XX"]
    if len(success) != 1:
        return None  # several success shapes (or none): structured content is still returned
    response = schemas.deref(responses[success[0]])
    content = response.get("content") if isinstance(response, Mapping) else None
    if not isinstance(content, Mapping):
        return None
    for media_type, media in content.items():
        media_type = media_type.split(";")[0].strip().lower()
        if (media_type == "application/json" or media_type.endswith("+json")) and isinstance(media, Mapping):
            schema = schemas.schema(media.get("schema", {}), "response")
            if not is_object_schema(schema):
                return None
            if len(json.dumps(schema, separators=(",", ":"))) > MAX_OUTPUT_SCHEMA_BYTES:
                return None
            return schema
    return None


def _description(op: Mapping[str, Any], method: str, path: str) -> str:
    parts = [
        p.strip() for p in (op.get("summary"), op.get("description")) if isinstance(p, str) and p.strip()
    ]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]
    text = "\n\n".join(parts) or f"{method.upper()} {path}"
    if op.get("deprecated") is True:
        text = f"(Deprecated) {text}"
    return _text(text, MAX_DESCRIPTION) or text[:MAX_DESCRIPTION]


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _annotations(method: str) -> ToolAnnotations:
    """HTTP method semantics (RFC 9110 §9.2) as MCP tool hints."""
    safe = method in ("get", "head", "options", "trace")
    return ToolAnnotations(
        read_only_hint=safe,
        destructive_hint=None if safe else method == "delete",
        idempotent_hint=safe or method in ("put", "delete"),
        open_world_hint=True,
    )
