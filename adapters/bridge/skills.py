"""An A2A agent card's skills as MCP tool definitions. Pure; no I/O.

Each selected skill (A2A 1.0 §4.4.5 `AgentSkill`) becomes one tool: its name is the skill id in the
character set LLM tool-calling APIs accept (`[A-Za-z0-9_-]`, at most `MAX_TOOL_NAME` characters, a
short hash suffix when two ids would collide), its title and description come from the skill and the
agent, and its input is one A2A message: `text` (required: every agent reads a text part), optional
`data` (a JSON object sent as a data part) and optional `context_id` (a continuation Interlink
returned earlier: answering a question the agent asked, or continuing the conversation).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final

from a2a.types import AgentCard, AgentSkill
from mcp_types import Tool, ToolAnnotations

MAX_TOOL_NAME: Final = 48
"""Longest tool name we generate: with `<upstream>__` in front it stays within the 64 characters
common LLM tool-calling APIs allow."""

MAX_TEXT_CHARS: Final = 1_000_000
"""Longest `text` a tool call may send (the body limit applies first in practice)."""

INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TEXT_CHARS,
            "description": "The message to the agent (its text part): the request, or your answer "
            "to a question the agent asked.",
        },
        "data": {
            "type": "object",
            "description": "Optional structured input, sent as a data part beside the text.",
        },
        "context_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 4096,
            "description": "Only to continue: the context_id an earlier result of this agent "
            "returned (to answer its question, or to go on in the same conversation). Omit it to "
            "start a new conversation.",
        },
    },
    "required": ["text"],
    "additionalProperties": False,
}
"""Every bridged tool's input: one A2A message."""

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class SkillTool:
    """A tool and the skill it calls."""

    skill_id: str
    tool: Tool


def selected(card: AgentCard, patterns: Sequence[str]) -> list[AgentSkill]:
    """The card's skills whose id matches one of the glob `patterns`, in card order."""
    return [s for s in card.skills if any(fnmatchcase(s.id, p) for p in patterns)]


def tool_name(skill_id: str) -> str:
    """The skill id in the tool-name character set; `__` is squeezed (it separates the upstream)."""
    name = _UNSAFE.sub("_", skill_id).strip("_")
    while "__" in name:
        name = name.replace("__", "_")
    return name[:MAX_TOOL_NAME] or "skill"


def _suffixed(name: str, skill_id: str) -> str:
    tag = hashlib.sha256(skill_id.encode()).hexdigest()[:6]
    return f"{name[: MAX_TOOL_NAME - 7]}_{tag}"


def skill_tools(card: AgentCard, patterns: Sequence[str], agent: str) -> dict[str, SkillTool]:
    """One tool per selected skill, by tool name (unique; collisions get a hash suffix)."""
    out: dict[str, SkillTool] = {}
    for skill in selected(card, patterns):
        name = tool_name(skill.id)
        if name in out:
            name = _suffixed(name, skill.id)
        if name in out:  # two ids that sanitise and hash alike: keep the first
            continue
        out[name] = SkillTool(skill.id, _tool(name, card, skill, agent))
    return out


def _tool(name: str, card: AgentCard, skill: AgentSkill, agent: str) -> Tool:
    agent_name = card.name or agent
    title = f"{skill.name or skill.id} ({agent_name})"
    lines = [skill.description.strip() or f"The skill {skill.id!r} of the A2A agent {agent_name!r}."]
    if skill.examples:
        lines.append("Examples: " + "; ".join(repr(e) for e in skill.examples[:5]))
    lines.append(
        f"Sends one A2A message to the agent {agent_name!r} (skill {skill.id!r}). If it asks a "
        "question, the result says so and gives a context_id: call this tool again with your answer "
        "as text and that context_id."
    )
    return Tool(
        name=name,
        title=title,
        description="\n\n".join(lines),
        input_schema=INPUT_SCHEMA,
        annotations=ToolAnnotations(title=title, read_only_hint=False, open_world_hint=True),
    )
