"""The push-notification delivery queue (gateway/webhooks.py) against real webhook receivers on
loopback and a real config store: tasks take turns and keep a bounded backlog (never losing a final
state), a task's webhooks are POSTed concurrently, a failing URL is suspended, every wait (DNS
included) is bounded, updates are copied when submitted, a deleted config stays deleted, and
shutdown delivers what is queued."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import DatabasePushNotificationConfigStore, InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.fetch import webhook_client
from gateway.webhooks import CachedConfigStore, QueuedSender, WebhookDispatcher
from tests.support import serve

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
SLOW_DNS = "slow-dns.interlink.test"


@dataclass
class Receiver:
    """Webhooks on loopback: `/ok/<name>` answers at once, `/hang/<name>` once `gate` is set,
    `/down/<name>` with 503 while `down` holds the name. Records each body on arrival."""

    base: str = ""
    hits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    down: set[str] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        self.hits.setdefault(name, []).append(await request.json())
        self.arrived.set()
        if kind == "hang":
            async with asyncio.timeout(10):
                await self.gate.wait()
        return Response(status_code=503 if kind == "down" and name in self.down else 204)

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.arrived.clear()
            await self.arrived.wait()

    def states(self, name: str) -> list[tuple[str, int]]:
        """(state, n) of each update that arrived at `name`, in order of arrival."""
        out = []
        for body in self.hits.get(name, []):
            update = body["statusUpdate"]
            out.append((update["status"]["state"], int(update.get("metadata", {}).get("n", -1))))
        return out


@dataclass
class Env:
    receiver: Receiver
    store: CachedConfigStore
    http: httpx.AsyncClient

    async def register(self, task_id: str, kind: str, name: str) -> None:
        config = TaskPushNotificationConfig(
            task_id=task_id, id=f"{kind}-{name}", url=f"{self.receiver.base}/{kind}/{name}", token="t"
        )
        await self.store.set_info(task_id, config, ServerCallContext())

    def sender(self, dispatcher: WebhookDispatcher, *, allow_private: bool = True) -> QueuedSender:
        return QueuedSender(dispatcher, self.http, self.store, allow_private=allow_private)


class GatedStore(DatabasePushNotificationConfigStore):
    """The SDK's store, whose dispatch lookup (once `gate` is given) pauses after reading."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate: asyncio.Event | None = None
        self.read = asyncio.Event()

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        configs = await super().get_info_for_dispatch(task_id)
        if self.gate is not None:
            self.read.set()
            await self.gate.wait()
        return configs


class SlowReadStore(CachedConfigStore, GatedStore):
    """Our cached store over the gated SDK store (a lookup that read, then is slow to finish)."""


def _owner(context: ServerCallContext) -> str:
    return "caller"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    receiver = Receiver()
    routes = [Route("/{kind}/{name}", receiver.receive, methods=["POST"])]
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'configs.db'}")
    store = CachedConfigStore(engine, owner_resolver=_owner)
    await store.initialize()
    try:
        async with serve(Starlette(routes=routes)) as base, webhook_client(allow_private=True) as http:
            receiver.base = base
            try:
                yield Env(receiver, store, http)
            finally:
                receiver.gate.set()  # let hanging requests end so the server can stop
    finally:
        await engine.dispose()


def status(task_id: str, state: TaskState, n: int) -> TaskStatusUpdateEvent:
    metadata = Struct()
    metadata.update({"n": n})
    return TaskStatusUpdateEvent(
        task_id=task_id, context_id="c", status=TaskStatus(state=state), metadata=metadata
    )


async def test_a_chatty_task_neither_holds_back_nor_crowds_out_another_task(env: Env) -> None:
    """Two tasks flooding a hanging webhook keep a bounded backlog, another task's update is
    delivered within about one timeout, and each flooding task's final state still arrives, in order."""
    dispatcher = WebhookDispatcher(
        workers=2, max_queued=50, max_per_task=8, timeout_s=0.5, attempts=1, breaker_failures=1000
    )
    dispatcher.start()
    try:
        sender = env.sender(dispatcher)
        for name in ("slow0", "slow1"):
            await env.register(name, "hang", name)
        await env.register("other", "ok", "other")
        for name in ("slow0", "slow1"):
            for n in range(30):
                await sender.send_notification(name, status(name, WORKING, n))
            await sender.send_notification(name, status(name, COMPLETED, 30))
        await sender.send_notification("other", status("other", WORKING, 0))
        async with asyncio.timeout(3):
            await env.receiver.until(lambda: bool(env.receiver.hits.get("other")))
        env.receiver.gate.set()
        async with asyncio.timeout(10):
            await dispatcher.join()
    finally:
        await dispatcher.stop()
    assert env.receiver.states("other") == [("TASK_STATE_WORKING", 0)]
    for name in ("slow0", "slow1"):
        arrived = env.receiver.states(name)
        assert arrived[-1] == ("TASK_STATE_COMPLETED", 30)
        numbers = [n for _, n in arrived]
        assert numbers == sorted(set(numbers))  # in order, none twice
        assert len(arrived) < 10  # the superseded progress never went out
    assert dispatcher.dropped > 0


async def test_a_full_queue_supersedes_or_drops_progress_but_never_a_final_state(env: Env) -> None:
    """At `max_queued`, a queued task's new progress update replaces its waiting ones, a new task's
    progress update is dropped, and a terminal state is still queued."""
    dispatcher = WebhookDispatcher(workers=1, max_queued=3, attempts=1)  # started once all is queued
    await env.register("a", "ok", "a")
    await env.register("b", "ok", "b")
    sender = env.sender(dispatcher)
    for n in range(3):
        await sender.send_notification("a", status("a", WORKING, n))
    await sender.send_notification("b", status("b", WORKING, 0))
    await sender.send_notification("b", status("b", COMPLETED, 1))
    await sender.send_notification("a", status("a", WORKING, 3))
    dispatcher.start()
    try:
        async with asyncio.timeout(5):
            await dispatcher.join()
    finally:
        await dispatcher.stop()
    assert env.receiver.states("a") == [("TASK_STATE_WORKING", 3)]
    assert env.receiver.states("b") == [("TASK_STATE_COMPLETED", 1)]
    assert dispatcher.dropped == 4


async def test_a_tasks_webhooks_are_posted_concurrently(env: Env) -> None:
    """A webhook that hangs does not delay the same update's delivery to the task's other webhook."""
    dispatcher = WebhookDispatcher(workers=1, timeout_s=5, attempts=1)
    dispatcher.start()
    try:
        await env.register("t", "hang", "first")
        await env.register("t", "ok", "second")
        await env.sender(dispatcher).send_notification("t", status("t", WORKING, 0))
        async with asyncio.timeout(2):
            await env.receiver.until(lambda: bool(env.receiver.hits.get("second")))
        assert not env.receiver.gate.is_set()  # the first is still hanging
    finally:
        env.receiver.gate.set()
        await dispatcher.stop()


async def test_a_failing_url_is_suspended_then_probed_again(env: Env) -> None:
    """After `breaker_failures` undelivered updates in a row a URL is skipped (its neighbour still
    served), and once its cooldown has passed one delivery tries it again."""
    dispatcher = WebhookDispatcher(workers=2, attempts=1, breaker_failures=2, breaker_cooldown_s=0.3)
    dispatcher.start()
    try:
        env.receiver.down.add("flaky")
        await env.register("t", "down", "flaky")
        await env.register("t", "ok", "fine")
        sender = env.sender(dispatcher)
        async with asyncio.timeout(5):
            for n in range(5):
                await sender.send_notification("t", status("t", WORKING, n))
                await dispatcher.join()
            assert len(env.receiver.hits["flaky"]) == 2
            assert len(env.receiver.hits["fine"]) == 5
            assert dispatcher.skipped == 3
            env.receiver.down.clear()
            n = 5
            while len(env.receiver.hits["flaky"]) == 2:  # until the cooldown ends
                await sender.send_notification("t", status("t", WORKING, n))
                await dispatcher.join()
                await asyncio.sleep(0.05)
                n += 1
    finally:
        await dispatcher.stop()
    assert env.receiver.states("flaky")[-1] == ("TASK_STATE_WORKING", n - 1)


async def test_a_hanging_dns_lookup_is_bounded_by_the_timeout(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL check's DNS lookup runs within `timeout_s`: a resolver that hangs costs one timeout."""
    real = socket.getaddrinfo
    release = threading.Event()

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (SLOW_DNS, SLOW_DNS.encode()):
            release.wait(5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    dispatcher = WebhookDispatcher(workers=1, timeout_s=0.3, attempts=1)
    dispatcher.start()
    try:
        config = TaskPushNotificationConfig(task_id="t", id="dns", url=f"https://{SLOW_DNS}/hook")
        await env.store.set_info("t", config, ServerCallContext())
        await env.sender(dispatcher, allow_private=False).send_notification("t", status("t", WORKING, 0))
        async with asyncio.timeout(2):
            await dispatcher.join()
        assert dispatcher.failed == 1
    finally:
        release.set()
        await dispatcher.stop()


class _Agent(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id and context.message
        submitted = Task(
            id=context.task_id,
            context_id=context.context_id,
            status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
            history=[context.message],
        )
        await event_queue.enqueue_event(submitted)
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


async def test_each_update_is_delivered_as_it_was_when_submitted(env: Env) -> None:
    """The SDK hands over its live task, which later events change in place: the webhook still sees
    SUBMITTED, WORKING, COMPLETED, even when delivery starts only after the task ended."""
    dispatcher = WebhookDispatcher(workers=1, attempts=1)  # started once the task has ended
    card = AgentCard(
        name="x", description="x", version="1", capabilities=AgentCapabilities(push_notifications=True)
    )
    handler = DefaultRequestHandler(
        _Agent(), InMemoryTaskStore(), card, push_config_store=env.store, push_sender=env.sender(dispatcher)
    )
    webhook = TaskPushNotificationConfig(id="w", url=f"{env.receiver.base}/ok/snap", token="t")
    message = Message(message_id="m1", role=Role.ROLE_USER, parts=[Part(text="hi")])
    request = SendMessageRequest(
        message=message, configuration=SendMessageConfiguration(task_push_notification_config=webhook)
    )
    async with asyncio.timeout(5):
        await handler.on_message_send(request, ServerCallContext())
        dispatcher.start()
        try:
            await dispatcher.join()
        finally:
            await dispatcher.stop()
    states = [
        body.get("task", body.get("statusUpdate", {})).get("status", {}).get("state")
        for body in env.receiver.hits["snap"]
    ]
    assert states == ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]


async def test_a_lookup_that_read_before_a_delete_is_not_cached(tmp_path: Path) -> None:
    """A dispatch lookup that read a config just before it was deleted returns it, but the next
    lookup (within the cache time) no longer finds it."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'configs.db'}")
    try:
        store = SlowReadStore(engine, owner_resolver=_owner)
        await store.initialize()
        config = TaskPushNotificationConfig(task_id="t", id="c1", url="https://hooks.example/h")
        await store.set_info("t", config, ServerCallContext())
        store.gate = asyncio.Event()
        async with asyncio.timeout(5):
            lookup = asyncio.create_task(store.get_info_for_dispatch("t"))
            await store.read.wait()
            await store.delete_info("t", ServerCallContext(), "c1")
            store.gate.set()
            assert [c.id for c in await lookup] == ["c1"]
            store.gate = None
            assert await store.get_info_for_dispatch("t") == []
    finally:
        await engine.dispose()


async def test_shutdown_delivers_what_is_queued_within_a_bound(env: Env) -> None:
    """`stop()` first delivers the queued updates, the final state included; a webhook that hangs
    holds it no longer than `drain_s`."""
    dispatcher = WebhookDispatcher(workers=1, attempts=1)
    dispatcher.start()
    await env.register("t", "ok", "drain")
    sender = env.sender(dispatcher)
    for n in range(10):
        await sender.send_notification("t", status("t", WORKING, n))
    await sender.send_notification("t", status("t", COMPLETED, 10))
    async with asyncio.timeout(10):
        await dispatcher.stop()
    assert [n for _, n in env.receiver.states("drain")] == list(range(11))

    hanging = WebhookDispatcher(workers=1, timeout_s=5, attempts=1, drain_s=0.3)
    hanging.start()
    await env.register("h", "hang", "stuck")
    await env.sender(hanging).send_notification("h", status("h", COMPLETED, 0))
    async with asyncio.timeout(2):
        await hanging.stop()
