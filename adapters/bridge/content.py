"""A2A results as MCP tool results (the mapping table is in the README, "A2A agents as MCP
tools"). Pure; no I/O.

- Artifacts, then the agent's final message (or its message reply), part by part: a text part is
  `TextContent`; a data part is `structuredContent` (one object as is, several values as
  `{"data": [...]}`) and its JSON as `TextContent`; a file part with bytes is an `EmbeddedResource`
  (text for UTF-8 `text/*`, else a base64 blob); a file part with a URL is a `ResourceLink`.
- COMPLETED (or a message reply) is the result; FAILED, REJECTED and CANCELED are `isError` results
  with reason `downstream_failed`, `downstream_rejected`, `downstream_canceled` in `_meta`.
- INPUT_REQUIRED and AUTH_REQUIRED: an elicitation (a2a_tools.py) or, for a caller that cannot be
  asked, a result telling the model exactly how to answer (`waiting`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import quote

from a2a.types import Artifact, Message, Part, TaskState
from google.protobuf.json_format import MessageToDict
from mcp_types import (
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from adapters.a2a.values import whole_numbers

REASON_META: Final = "io.interlink/reason"
"""`_meta` key of a bridged tool error's stable reason (the virtual server's own key)."""
A2A_META: Final = "io.interlink/a2a"
"""`_meta` key: the A2A side of the call (agent, skill, task state, continuation)."""

ERROR_REASONS: Final[dict[int, str]] = {
    TaskState.TASK_STATE_FAILED: "downstream_failed",
    TaskState.TASK_STATE_REJECTED: "downstream_rejected",
    TaskState.TASK_STATE_CANCELED: "downstream_canceled",
}

WAITING: Final = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})


def _file(part: Part, agent: str, artifact_id: str, index: int) -> ContentBlock:
    name = part.filename or f"part-{index}"
    mime = part.media_type or None
    if part.WhichOneof("content") == "url":
        return ResourceLink(name=name, uri=part.url, mime_type=mime)
    path = "/".join(quote(p, safe="") for p in (agent, artifact_id or "message", name))
    uri = f"a2a-artifact://{path}"
    if mime is not None and mime.startswith("text/"):
        try:
            text = part.raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return EmbeddedResource(resource=TextResourceContents(uri=uri, mime_type=mime, text=text))
    blob = base64.b64encode(part.raw).decode("ascii")
    return EmbeddedResource(resource=BlobResourceContents(uri=uri, mime_type=mime, blob=blob))


def parts_content(
    parts: Iterable[Part], agent: str, artifact_id: str = ""
) -> tuple[list[ContentBlock], list[Any]]:
    """MCP content for A2A parts, and the values of the data parts among them."""
    content: list[ContentBlock] = []
    data: list[Any] = []
    for index, part in enumerate(parts):
        kind = part.WhichOneof("content")
        if kind == "text":
            if part.text:
                content.append(TextContent(text=part.text))
        elif kind == "data":
            value = whole_numbers(MessageToDict(part.data))
            data.append(value)
            content.append(TextContent(text=json.dumps(value, ensure_ascii=False)))
        elif kind in ("raw", "url"):
            content.append(_file(part, agent, artifact_id, index))
    return content, data


def reply_content(
    artifacts: Sequence[Artifact], message: Message | None, agent: str
) -> tuple[list[ContentBlock], dict[str, Any] | None]:
    """The content of a reply (artifacts, then the agent's message) and its structured content."""
    content: list[ContentBlock] = []
    data: list[Any] = []
    for artifact in artifacts:
        blocks, values = parts_content(artifact.parts, agent, artifact.artifact_id)
        content += blocks
        data += values
    if message is not None:
        blocks, values = parts_content(message.parts, agent)
        content += blocks
        data += values
    if not data:
        return content, None
    if len(data) == 1 and isinstance(data[0], dict):
        return content, data[0]
    return content, {"data": data}


def message_text(message: Message | None) -> str:
    """The text parts of a message, joined."""
    if message is None:
        return ""
    return "\n".join(p.text for p in message.parts if p.WhichOneof("content") == "text" and p.text)


def state_name(state: int) -> str:
    return str(TaskState.Name(state))


def finished(
    state: int | None,
    artifacts: Sequence[Artifact],
    message: Message | None,
    *,
    agent: str,
    skill: str,
    continue_with: str | None,
    tool: str,
) -> CallToolResult:
    """The result of an exchange that ended (completed, failed, rejected, canceled; or a message
    reply, `state` None). `continue_with`: the sealed continuation of its conversation."""
    content, structured = reply_content(artifacts, message, agent)
    reason = ERROR_REASONS.get(state) if state is not None else None
    a2a: dict[str, Any] = {"agent": agent, "skill": skill}
    if state is not None:
        a2a["state"] = state_name(state)
    meta: dict[str, Any] = {A2A_META: a2a}
    if reason is not None:
        meta[REASON_META] = reason
        if not content:
            content = [TextContent(text=f"the agent {agent!r} ended the task: {state_name(state or 0)}")]
    elif continue_with is not None:
        a2a["context_id"] = continue_with
        content.append(
            TextContent(
                text=f"(To go on in this conversation with {agent!r}, call {tool!r} again with "
                f'context_id="{continue_with}".)'
            )
        )
    return CallToolResult(
        content=content, structured_content=structured, is_error=reason is not None, _meta=meta
    )


def waiting(
    state: int,
    artifacts: Sequence[Artifact],
    message: Message | None,
    *,
    agent: str,
    skill: str,
    continue_with: str,
    tool: str,
) -> CallToolResult:
    """A task waiting for the caller (input or authorization), for a caller that cannot be asked:
    what the agent said, and exactly how to answer."""
    content, structured = reply_content(artifacts, message, agent)
    need = "authorization" if state == TaskState.TASK_STATE_AUTH_REQUIRED else "more input"
    content.append(
        TextContent(
            text=f"The agent {agent!r} needs {need} to go on (task {state_name(state)}). To answer, "
            f'call {tool!r} again with your answer as text and context_id="{continue_with}".'
        )
    )
    meta = {
        A2A_META: {"agent": agent, "skill": skill, "state": state_name(state), "context_id": continue_with}
    }
    return CallToolResult(content=content, structured_content=structured, is_error=False, _meta=meta)
