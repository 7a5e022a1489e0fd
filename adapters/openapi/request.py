"""A tool call as an HTTP request, and an HTTP response as a tool result. Pure: no I/O.

Request: path parameters are percent-encoded whole (a value can neither add a segment, `/..`, a
query nor change the host), serialised per OpenAPI 3.1 §4.8.12.4 (`simple`, `form`,
`spaceDelimited`, `pipeDelimited`, `deepObject`); header and cookie values must be one line.
Response: a 2xx JSON object becomes `structured_content` plus its JSON text; other text stays text;
binary content becomes an image, audio or embedded resource; anything else is a tool error carrying
the status and a short excerpt from which URLs and Interlink's credentials are removed (a 2xx
contradicting the output schema: a longer one, `MISMATCH_EXCERPT_CHARS`, so the caller sees what
came back). JSON nested too deeply to handle is `upstream_response_invalid`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from jsonschema import Draft202012Validator
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    TextContent,
)

from adapters.openapi.convert import Operation, Parameter

EXCERPT_CHARS: Final = 300
"""How much of an error response a caller sees."""
MISMATCH_EXCERPT_CHARS: Final = 2000
"""How much of a 2xx response that contradicts the output schema a caller sees."""
REASON: Final = "io.interlink/reason"
STATUS: Final = "io.interlink/status"
URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
TEXTUAL: Final = re.compile(
    r"^(text/.*|application/(json|xml|yaml|x-yaml|javascript|x-www-form-urlencoded|[^;]*\+(json|xml|yaml)))$"
)


class ArgumentError(ValueError):
    """The arguments cannot be put on the wire (the schema allowed what HTTP cannot carry)."""


@dataclass(frozen=True)
class HttpCall:
    """Everything an HTTP client needs; `url` is absolute, under the configured base URL."""

    method: str
    url: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    files: list[tuple[str, tuple[None, str]]] | None = None
    """Multipart form fields (httpx's `files`: no file name, so each is a plain field)."""


def build(operation: Operation, arguments: Mapping[str, Any], base_url: str) -> HttpCall:
    """The HTTP request for a call of `operation` with validated `arguments`."""
    path = re.sub(r"\{([^{}/]+)\}", lambda m: _path_value(operation, m.group(1), arguments), operation.path)
    url = base_url.rstrip("/") + path
    base, built = urlsplit(base_url), urlsplit(url)
    if (built.scheme, built.netloc) != (base.scheme, base.netloc) or built.query or built.fragment:
        raise ArgumentError("the path parameters would leave the REST system's base URL")
    call = HttpCall(operation.method, url, headers={"accept": "application/json, */*;q=0.5"})
    cookies: list[str] = []
    for param in operation.parameters:
        value = arguments.get(param.argument)
        if value is None or param.location == "path":
            continue
        if param.location == "query":
            call.params.extend(_query(param, value))
        elif param.location == "header":
            call.headers[param.name.lower()] = _one_line(param, _simple(param, value))
        else:
            cookies.append(f"{param.name}={quote(_one_line(param, _simple(param, value)), safe='')}")
    if cookies:
        call.headers["cookie"] = "; ".join(cookies)
    if operation.body is not None and arguments.get("body") is not None:
        return _with_body(call, operation, arguments["body"])
    return call


def _path_value(operation: Operation, name: str, arguments: Mapping[str, Any]) -> str:
    param = next((p for p in operation.parameters if p.location == "path" and p.name == name), None)
    value = arguments.get(param.argument) if param is not None else None
    if param is None or value is None:
        raise ArgumentError(f"path parameter {name!r} is missing")
    text = _simple(param, value)
    if text in ("", ".", ".."):
        raise ArgumentError(f"path parameter {name!r} must not be empty, '.' or '..'")
    return quote(text, safe="")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def _simple(param: Parameter, value: Any) -> str:
    """`simple` style (path and header), or JSON for a `content` parameter."""
    if param.as_json:
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, Mapping):
        pairs = [(str(k), _scalar(v)) for k, v in value.items()]
        return ",".join(f"{k}={v}" if param.explode else f"{k},{v}" for k, v in pairs)
    return _scalar(value)


def _query(param: Parameter, value: Any) -> list[tuple[str, str]]:
    name = param.name
    if param.as_json:
        return [(name, json.dumps(value, separators=(",", ":")))]
    if isinstance(value, list):
        if param.explode:
            return [(name, _scalar(v)) for v in value]
        joiner = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(param.style, ",")
        return [(name, joiner.join(_scalar(v) for v in value))]
    if isinstance(value, Mapping):
        if param.style == "deepObject":
            return [(f"{name}[{k}]", _scalar(v)) for k, v in value.items()]
        if param.explode:
            return [(str(k), _scalar(v)) for k, v in value.items()]
        return [(name, ",".join(f"{k},{_scalar(v)}" for k, v in value.items()))]
    return [(name, _scalar(value))]


def _one_line(param: Parameter, text: str) -> str:
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in text):
        raise ArgumentError(f"{param.location} parameter {param.name!r} must be one line of printable text")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ArgumentError(f"{param.location} parameter {param.name!r} must be Latin-1 text") from None
    return text


def _with_body(call: HttpCall, operation: Operation, body: Any) -> HttpCall:
    assert operation.body is not None
    media, kind = operation.body.media_type, operation.body.kind
    headers = {**call.headers, "content-type": media}
    if kind == "json":
        if media == "*/*":
            headers["content-type"] = "application/json"
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    elif kind == "form":
        fields = body.items() if isinstance(body, Mapping) else []
        content = urlencode([(str(k), _scalar(v)) for k, v in fields]).encode()
    elif kind == "multipart":
        del headers["content-type"]  # the client sets it, with the boundary
        fields = body.items() if isinstance(body, Mapping) else []
        files = [(str(k), (None, _scalar(v))) for k, v in fields]
        return HttpCall(call.method, call.url, call.params, headers, None, files)
    elif kind == "text":
        content = _scalar(body).encode()
    else:
        try:
            content = base64.b64decode(str(body), validate=True)
        except binascii.Error:
            raise ArgumentError("body must be base64 (the operation takes binary content)") from None
    return HttpCall(call.method, call.url, call.params, headers, content)


# -- responses -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes
    oversized: int | None = None
    """Set (to the limit) when the body was larger than allowed and was not read."""


def render(
    answer: HttpAnswer,
    *,
    validator: Draft202012Validator | None,
    resource_uri: str,
    redact: Sequence[str] = (),
) -> CallToolResult:
    """The tool result of an HTTP response (see the module docstring)."""
    if answer.oversized is not None:
        text = f"HTTP {answer.status}: the response is larger than {answer.oversized} bytes"
        return _error(text, "upstream_response_too_large", answer.status)
    if not 200 <= answer.status < 300:
        return http_error(answer, redact)
    media = answer.content_type.split(";")[0].strip().lower()
    try:
        value, is_json = _json(answer.body, media)
        problem = _mismatch(value, is_json, validator) if validator is not None else None
        text = json.dumps(value, ensure_ascii=False) if is_json and problem is None else ""
    except RecursionError:
        text = f"HTTP {answer.status}: the JSON response is nested too deeply"
        return _error(text, "upstream_response_invalid", answer.status)
    if problem is not None:
        text = f"HTTP {answer.status}: the response does not match the documented schema ({problem})"
        excerpt = TextContent(type="text", text=safe_excerpt(answer, redact, MISMATCH_EXCERPT_CHARS))
        return _error(text, "upstream_response_invalid", answer.status, [excerpt])
    if is_json:
        structured = value if isinstance(value, dict) else None
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
    if not answer.body:
        return CallToolResult(content=[TextContent(type="text", text=f"HTTP {answer.status} (no content)")])
    if not media or TEXTUAL.match(media):
        return CallToolResult(content=[_text_of(answer, media)])
    return CallToolResult(content=[_binary(answer.body, media, resource_uri)])


def http_error(answer: HttpAnswer, redact: Sequence[str] = ()) -> CallToolResult:
    """A non-2xx answer: the status, its phrase and a short safe excerpt (none for a redirect,
    whose body would name where it points)."""
    try:
        phrase = HTTPStatus(answer.status).phrase
    except ValueError:
        phrase = ""
    head = f"HTTP {answer.status}{' ' + phrase if phrase else ''}"
    if 300 <= answer.status < 400:
        text = f"{head} (redirects are not followed)"
    else:
        excerpt = safe_excerpt(answer, redact)
        text = f"{head}: {excerpt}" if excerpt else head
    return _error(text, "upstream_http_error", answer.status)


def safe_excerpt(answer: HttpAnswer, redact: Sequence[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """The start of a response body on one line, without URLs, credentials or control characters."""
    media = answer.content_type.split(";")[0].strip().lower()
    if not answer.body:
        return ""
    if media and not TEXTUAL.match(media):
        return f"<{len(answer.body)} bytes of {media}>"
    text = answer.body[: limit * 8].decode(_charset(answer.content_type), errors="replace")
    for secret in sorted((s for s in redact if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    text = URL.sub("[url]", text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error(text: str, reason: str, status: int, extra: list[ContentBlock] | None = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text), *(extra or [])],
        is_error=True,
        _meta={REASON: reason, STATUS: status},
    )


def _json(body: bytes, media: str) -> tuple[Any, bool]:
    if not body or not (media in ("", "application/json") or media.endswith("+json")):
        return None, False
    try:
        return json.loads(body), True
    except ValueError:
        return None, False


def _mismatch(value: Any, is_json: bool, validator: Draft202012Validator) -> str | None:
    if not is_json or not isinstance(value, dict):
        return "not a JSON object"
    error = next(iter(validator.iter_errors(value)), None)
    return None if error is None else f"{error.json_path}: {error.message[:200]}"


def _charset(content_type: str) -> str:
    found = re.search(r"charset=\"?([A-Za-z0-9_.:-]+)", content_type)
    charset = found.group(1) if found else "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def _text_of(answer: HttpAnswer, media: str) -> TextContent:
    if media and not TEXTUAL.match(media):
        return TextContent(type="text", text=f"<{len(answer.body)} bytes of {media}>")
    return TextContent(type="text", text=answer.body.decode(_charset(answer.content_type), errors="replace"))


def _binary(body: bytes, media: str, uri: str) -> ContentBlock:
    data = base64.b64encode(body).decode("ascii")
    if media.startswith("image/"):
        return ImageContent(type="image", data=data, mime_type=media)
    if media.startswith("audio/"):
        return AudioContent(type="audio", data=data, mime_type=media)
    return EmbeddedResource(
        type="resource", resource=BlobResourceContents(uri=uri, mime_type=media, blob=data)
    )
