"""The A2A task store (`gateway/a2a_face.py` CoalescingTaskStore) under the store-light relay, on
SQLite and PostgreSQL: a task canceled while relayed stays canceled (its staged state, later events
and the progress flush cannot undo it, and the relay is told to stop), and a stored final state is
never overwritten, by another replica either (two stores on one database are two replicas)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from a2a.server.cluster.task_store import ConcurrentTaskModificationError
from a2a.server.context import ServerCallContext
from a2a.types import Task, TaskState, TaskStatus
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.a2a_face import CoalescingTaskStore, task_store
from tests.gateway.test_store import postgres_url

WORKING, COMPLETED, CANCELED = (
    TaskState.TASK_STATE_WORKING,
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_CANCELED,
)


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}" if request.param == "sqlite" else postgres_url()


@pytest.fixture
async def engines(url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database: one per replica."""
    a, b = create_async_engine(url), create_async_engine(url)
    try:
        yield a, b
    finally:
        await a.dispose()
        await b.dispose()


async def replica(engine: AsyncEngine) -> CoalescingTaskStore:
    store = task_store(engine, "helpdesk")
    await store.initialize()
    return store


def state(task_id: str, value: TaskState) -> Task:
    return Task(id=task_id, context_id="c", status=TaskStatus(state=value))


def canceled(task: Task) -> Task:
    """What the SDK's CancelTask saves (`_cancel_remote`): the task as read, CANCELED."""
    copy = Task()
    copy.CopyFrom(task)
    copy.status.state = CANCELED
    return copy


async def stored_state(store: CoalescingTaskStore, task_id: str) -> TaskState:
    """The state in the database (not the store's staged one)."""
    found = await task_store(store.engine, "helpdesk").get(task_id, ServerCallContext())
    assert found is not None
    return found.status.state


async def test_a_task_canceled_while_relayed_stays_canceled(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """CancelTask during a relay: later events are ignored, the relay is stopped, `finish` answers
    CANCELED, and no flush writes the staged state over it."""
    store, call, task_id = await replica(engines[0]), ServerCallContext(), str(uuid.uuid4())
    stops: list[str] = []
    store.begin(task_id, call, lambda: stops.append("stop"))
    store.stage(state(task_id, WORKING), call)
    await store.flush_all()  # the progress flush: other replicas see it WORKING
    assert store.relaying(task_id, call)

    await store.save(canceled(state(task_id, WORKING)), call)  # CancelTask
    assert stops == ["stop"] and not store.relaying(task_id, call)
    store.stage(state(task_id, COMPLETED), call)  # the agent ignored the cancel
    assert (await store.get(task_id, call) or Task()).status.state == CANCELED
    assert (await store.finish(state(task_id, COMPLETED), call)).status.state == CANCELED
    await asyncio.sleep(0.7)  # past the coalescing delay: nothing was left to flush
    await store.flush_all()
    assert await stored_state(store, task_id) == CANCELED


async def test_another_replicas_cancel_is_never_overwritten(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Replica B cancels a task relayed on A: A's progress flush and final write lose (its relay is
    stopped and answers CANCELED), and a plain `save` over the end raises the SDK's conflict."""
    a, b = await replica(engines[0]), await replica(engines[1])
    call, task_id = ServerCallContext(), str(uuid.uuid4())
    stops: list[str] = []
    a.begin(task_id, call, lambda: stops.append("stop"))
    a.stage(state(task_id, WORKING), call)
    await a.flush_all()

    seen = await b.get(task_id, call)
    assert seen is not None and seen.status.state == WORKING
    await b.save(canceled(seen), call)

    a.stage(state(task_id, WORKING), call)  # more progress on A
    await a.flush_all()
    assert stops == ["stop"]  # A learnt that the task ended elsewhere
    answered = await a.finish(state(task_id, COMPLETED), call)
    assert answered.status.state == CANCELED
    assert await stored_state(a, task_id) == CANCELED

    with pytest.raises(ConcurrentTaskModificationError):
        await a.save(state(task_id, COMPLETED), call)
    assert await stored_state(b, task_id) == CANCELED


async def test_a_relay_that_leaves_keeps_its_last_staged_state(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """A relay whose request was cancelled `leave`s: the last staged state is still written (by
    the flush, or at shutdown) and the task is no longer relayed."""
    store, call, task_id = await replica(engines[0]), ServerCallContext(), str(uuid.uuid4())
    store.begin(task_id, call, lambda: None)
    store.stage(state(task_id, WORKING), call)
    store.leave(task_id, call)
    assert not store.relaying(task_id, call)
    await store.flush_all()
    assert await stored_state(store, task_id) == WORKING
