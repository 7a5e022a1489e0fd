"""The A2A-to-MCP bridge's pure parts: skill ids as tool names, A2A parts as MCP content, sealed
continuations, and the bounds of what an exchange holds (adapters/bridge, adapters/a2a/values.py)."""

from __future__ import annotations

import pytest
from a2a.types import AgentCard, AgentSkill, Artifact, Message, Part, TaskState
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from mcp_types import EmbeddedResource, ResourceLink, TextContent

from adapters.a2a.values import SAFE_INTEGER, whole_numbers
from adapters.bridge.content import finished, reply_content
from adapters.bridge.continuation import Continuation, ContinuationError, Sealer, derive_key
from adapters.bridge.exchange import MAX_RESPONSE_BYTES, MAX_RESPONSE_PARTS, Exchange, ResponseTooLarge
from adapters.bridge.skills import MAX_TOOL_NAME, skill_tools, tool_name


@pytest.mark.parametrize(
    ("skill_id", "expected"),
    [
        ("echo", "echo"),
        ("get-invoice", "get-invoice"),
        ("billing/refund v2", "billing_refund_v2"),
        ("a__b", "a_b"),  # `__` separates the upstream in exposed names
        ("üñí", "skill"),
        ("x" * 100, "x" * MAX_TOOL_NAME),
    ],
)
def test_tool_name(skill_id: str, expected: str) -> None:
    """Skill ids become names in `[A-Za-z0-9_-]`, without `__`, at most MAX_TOOL_NAME long."""
    assert tool_name(skill_id) == expected


def test_colliding_skill_ids_get_distinct_names() -> None:
    """Two ids that sanitise alike both become tools; the second gets a hash suffix."""
    card = AgentCard(name="a", skills=[AgentSkill(id="a b", name="A"), AgentSkill(id="a/b", name="B")])
    tools = skill_tools(card, ["*"], "agent")
    assert [t.skill_id for t in tools.values()] == ["a b", "a/b"]
    assert list(tools)[0] == "a_b" and list(tools)[1].startswith("a_b_")


def test_parts_become_content() -> None:
    """Text, data (structured, integers kept), bytes (embedded) and URLs (links), then the message."""
    data = ParseDict({"n": 3, "xs": [1, 2.5]}, struct_pb2.Value())
    artifact = Artifact(
        artifact_id="r",
        parts=[
            Part(text="hello"),
            Part(data=data),
            Part(raw=b"\x00\x01", filename="b.bin", media_type="application/octet-stream"),
            Part(url="https://example.com/f.pdf", filename="f.pdf"),
        ],
    )
    content, structured = reply_content([artifact], Message(parts=[Part(text="done")]), "agent")
    assert structured == {"n": 3, "xs": [1, 2.5]}
    assert isinstance(content[0], TextContent) and content[0].text == "hello"
    assert isinstance(content[2], EmbeddedResource) and getattr(content[2].resource, "blob", "") == "AAE="
    assert isinstance(content[3], ResourceLink) and content[3].name == "f.pdf"
    assert isinstance(content[4], TextContent) and content[4].text == "done"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (TaskState.TASK_STATE_FAILED, "downstream_failed"),
        (TaskState.TASK_STATE_REJECTED, "downstream_rejected"),
        (TaskState.TASK_STATE_CANCELED, "downstream_canceled"),
    ],
)
def test_unsuccessful_states_are_tool_errors(state: int, reason: str) -> None:
    """FAILED, REJECTED and CANCELED are `isError` results with a stable reason."""
    result = finished(state, [], None, agent="a", skill="s", continue_with=None, tool="t")
    assert result.is_error and (result.meta or {})["io.interlink/reason"] == reason


def test_continuations_are_sealed_and_bound() -> None:
    """A continuation opens for its caller and agent only; altered or foreign ones are refused."""
    sealer = Sealer(derive_key(b"shared secret"))
    held = Continuation("task", "caller", "billing", "refund", "ctx-1", "task-1")
    token = sealer.seal(held)
    assert "task-1" not in token and "ctx-1" not in token
    assert sealer.open(token, caller="caller", agent="billing") == held
    for caller, agent, presented in [
        ("other", "billing", token),
        ("caller", "helpdesk", token),
        ("caller", "billing", token[:-4] + "AAAA"),
        ("caller", "billing", "ctx-1"),
    ]:
        with pytest.raises(ContinuationError):
            sealer.open(presented, caller=caller, agent=agent)
    with pytest.raises(ContinuationError):
        Sealer(derive_key(b"another secret")).open(token, caller="caller", agent="billing")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.0, 3),
        (2.5, 2.5),
        (-0.0, 0),
        (float(SAFE_INTEGER), float(SAFE_INTEGER)),  # may not be the integer that was sent
        ({"a": [1.0, {"b": 2.0}], "c": "3"}, {"a": [1, {"b": 2}], "c": "3"}),
        (True, True),
    ],
)
def test_whole_numbers(value: object, expected: object) -> None:
    """Whole doubles below 2**53 become integers, at any depth; nothing else changes."""
    result = whole_numbers(value)
    assert result == expected and type(result) is type(expected)


def test_an_exchange_holds_at_most_its_bounds() -> None:
    """Appended chunks count towards MAX_RESPONSE_BYTES and MAX_RESPONSE_PARTS; a replaced artifact
    counts once; past a bound `ResponseTooLarge`."""
    ex = Exchange()
    chunk = "x" * (MAX_RESPONSE_BYTES // 4)
    for _ in range(3):
        ex.hold(Artifact(artifact_id="a", parts=[Part(text=chunk)]), append=False)  # replaced each time
    ex.hold(Artifact(artifact_id="a", parts=[Part(text=chunk)]), append=True)
    ex.hold(Artifact(artifact_id="a", parts=[Part(text=chunk)]), append=True)
    assert len(ex.artifacts["a"].parts) == 3
    with pytest.raises(ResponseTooLarge):
        ex.say(Message(parts=[Part(text=chunk + chunk)]))
    parts = Exchange()
    for _ in range(MAX_RESPONSE_PARTS):
        parts.hold(Artifact(artifact_id="p", parts=[Part(text="y")]), append=True)
    with pytest.raises(ResponseTooLarge):
        parts.hold(Artifact(artifact_id="p", parts=[Part(text="y")]), append=True)
