"""Push-notification delivery off the task's event path: one bounded queue per gateway, drained by a
few workers, so a slow or dead webhook never delays a task's events (A2A 1.0 §4.3: the agent POSTs
each update of a task to the caller's webhook).

* **Order and fairness.** Updates of one task are delivered in order, one at a time (a chain per
  task); different tasks' chains run side by side on `workers` workers, so a hanging webhook holds
  one worker, and only its own task's later updates wait behind it.
* **Bounds.** Each POST is bounded by `timeout_s`; a failure (no connection, a timeout, HTTP 5xx
  or 429) is retried `attempts` times in all, after 0.5 s, then 2 s; other statuses are the
  receiver's answer and not retried. At most `max_queued` updates wait in all; beyond that new ones
  are dropped (`a2a_webhook_dropped` in the log): delivery is best effort, the task's state is
  always in the task store (GetTask).
* **Which webhooks.** The task's configs are read when its update is delivered, from the config
  store shared by replicas, cached for `CONFIG_TTL_S` (a config created or deleted on this replica
  takes effect at once; on another replica within that time). Each URL is re-checked before each
  delivery and each connection against the address connected to (`gateway/fetch.py`); logs name
  the task, never the URL or the token.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Final

import httpx
import structlog
from a2a.server.context import ServerCallContext
from a2a.server.tasks import DatabasePushNotificationConfigStore, PushNotificationSender
from a2a.server.tasks.push_notification_sender import PushNotificationEvent
from a2a.types import TaskPushNotificationConfig
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.json_format import MessageToDict
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from gateway.fetch import FetchError, check_webhook_url

log = structlog.get_logger(__name__)

CONFIG_TTL_S: Final = 1.0
"""How long a task's webhook configs read from the store are reused."""
RETRY_DELAYS_S: Final = (0.5, 2.0)
"""Pauses before the second and third attempts of a failed delivery."""
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def one_at_a_time(engine: AsyncEngine) -> AbstractAsyncContextManager[Any]:
    """A lock around each task- or config-store operation when the database is one shared connection
    (in-memory SQLite, `StaticPool`): there, a reader closing its session rolls back whatever a
    concurrent writer has not committed yet. Other databases: no lock."""
    if not isinstance(engine.pool, StaticPool):
        return nullcontext()
    lock = _LOCKS.get(engine.sync_engine)
    if lock is None:
        lock = _LOCKS[engine.sync_engine] = asyncio.Lock()
    return lock


class CachedConfigStore(DatabasePushNotificationConfigStore):
    """The SDK's database config store, whose dispatch lookups (one per update) are reused for
    `CONFIG_TTL_S`, and forgotten when this replica creates or deletes a config of that task."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._cache: dict[str, tuple[float, list[TaskPushNotificationConfig]]] = {}

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        now = time.monotonic()
        cached = self._cache.get(task_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with one_at_a_time(self.engine):
            configs = await super().get_info_for_dispatch(task_id)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[task_id] = (now + CONFIG_TTL_S, configs)
        return configs

    async def get_info(self, task_id: str, context: ServerCallContext) -> list[TaskPushNotificationConfig]:
        async with one_at_a_time(self.engine):
            configs: list[TaskPushNotificationConfig] = await super().get_info(task_id, context)
        return configs

    async def set_info(
        self, task_id: str, notification_config: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        self._cache.pop(task_id, None)
        async with one_at_a_time(self.engine):
            stored: TaskPushNotificationConfig = await super().set_info(task_id, notification_config, context)
        self._cache.pop(task_id, None)
        return stored

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        self._cache.pop(task_id, None)
        async with one_at_a_time(self.engine):
            await super().delete_info(task_id, context, config_id)
        self._cache.pop(task_id, None)


@dataclass(frozen=True)
class _Update:
    sender: QueuedSender
    task_id: str
    event: PushNotificationEvent


class WebhookDispatcher:
    """The gateway's delivery queue and its workers (`start()`/`stop()`)."""

    def __init__(
        self, *, workers: int = 8, max_queued: int = 10_000, timeout_s: float = 5.0, attempts: int = 3
    ) -> None:
        self._workers = workers
        self._max_queued = max_queued
        self.timeout_s = timeout_s
        self._attempts = attempts
        self._chains: dict[str, deque[_Update]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._queued = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

    def submit(self, update: _Update) -> None:
        if self._queued >= self._max_queued:
            self.dropped += 1
            log.warning("a2a_webhook_dropped", task_id=update.task_id, queued=self._queued)
            return
        self._queued += 1
        chain = self._chains.get(update.task_id)
        if chain is None:
            self._chains[update.task_id] = deque([update])
            self._ready.put_nowait(update.task_id)
        else:  # waiting or being delivered: the worker serving the chain takes it in turn
            chain.append(update)

    async def _work(self) -> None:
        while True:
            task_id = await self._ready.get()
            chain = self._chains[task_id]
            while chain:
                update = chain[0]
                try:
                    await self._deliver(update)
                except Exception as exc:  # noqa: BLE001 - best effort: the next update still goes
                    log.warning("a2a_webhook_failed", task_id=task_id, error=type(exc).__name__)
                chain.popleft()
                self._queued -= 1
            del self._chains[task_id]

    async def _deliver(self, update: _Update) -> None:
        configs = await update.sender.configs.get_info_for_dispatch(update.task_id)
        if not configs:
            return
        body = MessageToDict(to_stream_response(update.event))
        for config in configs:
            if await self._post(update.sender, config, body, update.task_id):
                self.delivered += 1
            else:
                self.failed += 1

    async def _post(
        self, sender: QueuedSender, config: TaskPushNotificationConfig, body: object, task_id: str
    ) -> bool:
        try:
            await check_webhook_url(config.url, allow_private=sender.allow_private)
        except FetchError as exc:
            log.warning("a2a_webhook_refused", task_id=task_id, problem=str(exc))
            return False
        headers = {"X-A2A-Notification-Token": config.token} if config.token else {}
        auth = config.authentication
        if config.HasField("authentication") and auth.scheme and auth.credentials:
            headers["Authorization"] = f"{auth.scheme} {auth.credentials}"
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S)) - 1])
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await sender.http.post(config.url, json=body, headers=headers)
            except (TimeoutError, httpx.HTTPError) as exc:
                problem = type(exc).__name__
                continue
            if response.status_code in RETRY_STATUSES:
                problem = f"HTTP {response.status_code}"
                continue
            if response.is_success:
                return True
            log.warning("a2a_webhook_rejected", task_id=task_id, status=response.status_code)
            return False
        log.warning("a2a_webhook_undelivered", task_id=task_id, attempts=self._attempts, problem=problem)
        return False


class QueuedSender(PushNotificationSender):
    """One endpoint's push sender (the SDK calls it on every update of a task): hands the update
    to the gateway's dispatcher and returns at once."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        http: httpx.AsyncClient,
        configs: DatabasePushNotificationConfigStore,
        *,
        allow_private: bool,
    ) -> None:
        self._dispatcher = dispatcher
        self.http = http
        self.configs = configs
        self.allow_private = allow_private

    async def send_notification(self, task_id: str, event: PushNotificationEvent) -> None:
        self._dispatcher.submit(_Update(self, task_id, event))
