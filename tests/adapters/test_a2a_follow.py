"""The pure part of following a downstream task by webhook (adapters/a2a/follow.py): which
downstream events become updates of the caller's task, re-stamped, and which are duplicates."""

from __future__ import annotations

import pytest
from a2a.types import (
    Artifact,
    Message,
    Part,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.a2a.follow import Ledger, apply, newer, updates

WORKING, COMPLETED, SUBMITTED = (
    TaskState.TASK_STATE_WORKING,
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_SUBMITTED,
)


def status(state: TaskState, at: int | None = None, text: str = "") -> TaskStatus:
    out = TaskStatus(state=state)
    if at is not None:
        out.timestamp.CopyFrom(Timestamp(seconds=at))
    if text:
        out.message.CopyFrom(
            Message(message_id=text, task_id="theirs", context_id="c9", parts=[Part(text=text)])
        )
    return out


def mine(state: TaskState = WORKING, at: int | None = 100) -> Task:
    return Task(id="ours", context_id="ctx", status=status(state, at))


def status_event(state: TaskState, at: int | None, text: str = "") -> StreamResponse:
    return StreamResponse(
        status_update=TaskStatusUpdateEvent(task_id="theirs", context_id="c9", status=status(state, at, text))
    )


def chunk(text: str, append: bool = True) -> StreamResponse:
    artifact = Artifact(artifact_id="a", parts=[Part(text=text)])
    return StreamResponse(
        artifact_update=TaskArtifactUpdateEvent(
            task_id="theirs", context_id="c9", artifact=artifact, append=append
        )
    )


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (status(WORKING, 101), status(WORKING, 100), True),  # later
        (status(WORKING, 100), status(WORKING, 100), False),  # the same update again
        (status(WORKING, 99), status(WORKING, 100), False),  # an old one
        (status(COMPLETED, 100), status(WORKING, 100), True),  # same instant, another state
        (status(COMPLETED), status(WORKING), True),  # no timestamps: another state
        (status(SUBMITTED), status(WORKING), False),  # never back to SUBMITTED
        (status(WORKING), status(WORKING), False),
    ],
)
def test_a_status_is_taken_only_when_it_moves_the_task_on(
    new: TaskStatus, old: TaskStatus, expected: bool
) -> None:
    assert newer(new, old) is expected


def test_an_update_is_restamped_with_the_callers_ids() -> None:
    """Task and context ids, also on the status message, become the caller's."""
    (update,) = updates(mine(), status_event(COMPLETED, 200, "done"))
    assert isinstance(update, TaskStatusUpdateEvent)
    assert (update.task_id, update.context_id) == ("ours", "ctx")
    assert (update.status.message.task_id, update.status.message.context_id) == ("ours", "ctx")


def test_an_ended_task_takes_nothing() -> None:
    assert updates(mine(COMPLETED), chunk("late")) == []
    assert updates(mine(COMPLETED), status_event(WORKING, 500)) == []


def test_what_the_relay_relayed_is_dropped_once_per_time_relayed() -> None:
    """Same bytes, counted: two identical chunks relayed are two webhook twins dropped, a third kept."""
    ledger = Ledger()
    twin = chunk("same").artifact_update
    ledger.record("ours", twin)
    ledger.record("ours", twin)
    assert updates(mine(), chunk("same"), ledger) == []
    assert updates(mine(), chunk("same"), ledger) == []
    assert len(updates(mine(), chunk("same"), ledger)) == 1


def test_a_downstream_task_brings_what_is_new_and_nothing_when_old() -> None:
    current = mine(WORKING, 100)
    apply(current, updates(current, chunk("one", append=False))[0])
    snapshot = Task(id="theirs", context_id="c9", status=status(COMPLETED, 150, "done"))
    snapshot.artifacts.add().CopyFrom(Artifact(artifact_id="a", parts=[Part(text="one"), Part(text="two")]))
    snapshot.artifacts.add().CopyFrom(Artifact(artifact_id="b", parts=[Part(text="new")]))
    made = updates(current, StreamResponse(task=snapshot))
    assert [type(u).__name__ for u in made] == ["TaskArtifactUpdateEvent"] * 2 + ["TaskStatusUpdateEvent"]
    for update in made:
        apply(current, update)
    assert [p.text for p in current.artifacts[0].parts] == ["one", "two"]
    assert current.status.state == COMPLETED
    old = Task(id="theirs", context_id="c9", status=status(WORKING, 90))
    assert updates(mine(WORKING, 100), StreamResponse(task=old)) == []
