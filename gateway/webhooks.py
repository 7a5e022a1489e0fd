"""Push-notification delivery off the task's event path (A2A 1.0 §4.3: the agent POSTs each update of
a task to the caller's webhook): one bounded queue per gateway, drained by a few workers. It owns
delivery only; the task store (GetTask) stays the record of each task.

What is guaranteed, and what is not:

* **Snapshot and order.** Each update is copied when the SDK hands it over (the SDK passes its live
  task, which later events change in place), so a webhook sees the task as it was at that event.
  Updates of one task reach each of its webhooks in order, one update at a time; the webhooks of
  one task are POSTed concurrently (at most `CONFIGS_IN_FLIGHT` at once).
* **Fairness.** Tasks take turns: a worker delivers one update of a task and puts the task back at
  the end of the line, so a chatty task cannot hold a worker while others wait. A webhook that
  hangs still holds a worker for up to `attempts` × `timeout_s` plus the pauses between attempts
  per update (each POST, its URL check and DNS lookup included, within `timeout_s`), until its
  breaker opens: after `breaker_failures` undelivered updates in a row a URL is skipped for
  `breaker_cooldown_s` (`a2a_webhook_suspended`), then one delivery probes it again. With every
  worker held by such webhooks, the other tasks' deliveries wait; they are not lost.
* **Bounds.** Each task keeps at most `max_per_task` updates waiting; beyond that its waiting
  progress updates (working states, artifact chunks, the first task snapshot) are superseded by the
  latest one, while terminal and interrupted states (input or auth required) are kept, in order
  (an interrupted state only while the task has fewer than `max_per_task` such states waiting).
  At most `max_queued` updates wait in all; beyond that a task's waiting progress is superseded the
  same way, or a new progress or interrupted update is dropped. A terminal state is never dropped
  for lack of room (it may exceed `max_queued`; each task ends once). Superseded and dropped updates
  are logged (`a2a_webhook_superseded`, `a2a_webhook_dropped`); a receiver that sees a gap re-reads
  the task (GetTask). A failure (no connection, a timeout, HTTP 5xx or 429) is retried `attempts`
  times in all, after 0.5 s, then 2 s; other statuses are the receiver's answer and not retried.
* **Which webhooks.** The task's configs are read when its update is delivered, from the config
  store shared by replicas, cached for `CONFIG_TTL_S` (a config created or deleted on this replica
  takes effect at once, even for a lookup already running; on another replica within that time).
  Each URL is re-checked before each attempt and each connection against the address connected to
  (`gateway/fetch.py`); logs name the task (and a URL only by a short hash), never the URL or token.
* **Shutdown.** `stop()` waits up to `drain_s` (`a2a_push.drain_s`) for the queue to empty, then
  cancels what is left (`a2a_webhook_undrained`).
"""

from __future__ import annotations

import asyncio
import hashlib
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
from a2a.types import Task, TaskPushNotificationConfig, TaskState, TaskStatusUpdateEvent
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
CONFIGS_IN_FLIGHT: Final = 16
"""Webhooks of one task POSTed at once, per update."""
BREAKER_FAILURES: Final = 5
"""Undelivered updates in a row after which a webhook URL is skipped for a while."""
BREAKER_COOLDOWN_S: Final = 30.0
"""How long a URL whose breaker opened is skipped before one delivery probes it again."""
DRAIN_S: Final = 5.0
"""Longest `stop()` waits for queued updates to be delivered."""
TERMINAL: Final = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
"""States that end a task: never dropped or superseded."""
INTERRUPTED: Final = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
"""States that wait for the caller: never superseded."""


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
    `CONFIG_TTL_S`, and forgotten when this replica creates or deletes a config of that task. A
    lookup is cached only if no create or delete of its task ran meanwhile (a per-task generation,
    kept while lookups run), so a lookup that read before a delete cannot bring the config back."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._cache: dict[str, tuple[float, list[TaskPushNotificationConfig]]] = {}
        self._generation: dict[str, int] = {}
        self._lookups = 0

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        now = time.monotonic()
        cached = self._cache.get(task_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._generation.get(task_id, 0)
        self._lookups += 1
        try:
            async with one_at_a_time(self.engine):
                configs = await super().get_info_for_dispatch(task_id)
            if self._generation.get(task_id, 0) == generation:
                if len(self._cache) > 10_000:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                self._cache[task_id] = (now + CONFIG_TTL_S, configs)
        finally:
            self._lookups -= 1
            if not self._lookups:  # nobody holds an older generation: start afresh
                self._generation.clear()
        return configs

    def _changed(self, task_id: str) -> None:
        self._cache.pop(task_id, None)
        self._generation[task_id] = self._generation.get(task_id, 0) + 1

    async def get_info(self, task_id: str, context: ServerCallContext) -> list[TaskPushNotificationConfig]:
        async with one_at_a_time(self.engine):
            configs: list[TaskPushNotificationConfig] = await super().get_info(task_id, context)
        return configs

    async def set_info(
        self, task_id: str, notification_config: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        self._changed(task_id)
        try:
            async with one_at_a_time(self.engine):
                stored: TaskPushNotificationConfig = await super().set_info(
                    task_id, notification_config, context
                )
        finally:
            self._changed(task_id)
        return stored

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        self._changed(task_id)
        try:
            async with one_at_a_time(self.engine):
                await super().delete_info(task_id, context, config_id)
        finally:
            self._changed(task_id)


def _state(event: PushNotificationEvent) -> int:
    if isinstance(event, Task | TaskStatusUpdateEvent):
        return event.status.state
    return TaskState.TASK_STATE_UNSPECIFIED


@dataclass(frozen=True)
class _Update:
    sender: QueuedSender
    task_id: str
    event: PushNotificationEvent
    """A copy taken when the update was submitted."""
    terminal: bool
    kept: bool
    """A terminal or interrupted state: never superseded by a later update."""


def _update(sender: QueuedSender, task_id: str, event: PushNotificationEvent) -> _Update:
    snapshot = type(event)()
    snapshot.CopyFrom(event)
    state = _state(snapshot)
    return _Update(sender, task_id, snapshot, state in TERMINAL, state in TERMINAL | INTERRUPTED)


class _Breaker:
    """Per webhook URL: undelivered updates in a row, and until when the URL is skipped."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self._failures = failures
        self._cooldown_s = cooldown_s
        self._state: dict[str, tuple[int, float]] = {}

    def allows(self, url: str) -> bool:
        failures, until = self._state.get(url, (0, 0.0))
        if failures < self._failures:
            return True
        now = time.monotonic()
        if now < until:
            return False
        self._state[url] = (failures, now + self._cooldown_s)  # this delivery probes; others wait
        return True

    def record(self, url: str, delivered: bool) -> bool:
        """Note the outcome; True when it opens the breaker."""
        if delivered:
            self._state.pop(url, None)
            return False
        failures = self._state.get(url, (0, 0.0))[0] + 1
        if len(self._state) > 10_000:
            now = time.monotonic()
            self._state = {k: v for k, v in self._state.items() if v[1] > now}
        self._state[url] = (failures, time.monotonic() + self._cooldown_s)
        return failures >= self._failures


class WebhookDispatcher:
    """The gateway's delivery queue and its workers (`start()`/`stop()`)."""

    def __init__(
        self,
        *,
        workers: int = 8,
        max_queued: int = 10_000,
        max_per_task: int = 16,
        timeout_s: float = 5.0,
        attempts: int = 3,
        breaker_failures: int = BREAKER_FAILURES,
        breaker_cooldown_s: float = BREAKER_COOLDOWN_S,
        drain_s: float = DRAIN_S,
    ) -> None:
        self._workers = workers
        self._max_queued = max_queued
        self._max_per_task = max_per_task
        self.timeout_s = timeout_s
        self._attempts = attempts
        self._breaker = _Breaker(breaker_failures, breaker_cooldown_s)
        self._cooldown_s = breaker_cooldown_s
        self._drain_s = drain_s
        self._chains: dict[str, deque[_Update]] = {}
        """Per task with updates waiting or in flight: those waiting, in order."""
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        """Tasks whose turn is coming, each at most once (none while one of its updates is in flight)."""
        self._queued = 0
        """Updates waiting or in flight."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, int] = {}
        """Updates waiting or in flight, by `id()` of their sender's HTTP client (`drained`)."""
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        """Updates dropped or superseded for lack of room."""
        self.skipped = 0
        """Deliveries skipped because the URL's breaker is open."""

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def join(self) -> None:
        """Wait until nothing is queued or in flight."""
        await self._idle.wait()

    async def stop(self) -> None:
        if self._tasks and self._queued:
            try:
                async with asyncio.timeout(self._drain_s):
                    await self.join()
            except TimeoutError:
                log.warning("a2a_webhook_undrained", queued=self._queued, drain_s=self._drain_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

    def submit(self, update: _Update) -> None:
        chain = self._chains.get(update.task_id)
        full = self._queued >= self._max_queued or (chain is not None and len(chain) >= self._max_per_task)
        if full and chain is not None and self._supersede(update.task_id, chain):
            full = False  # it takes the place of those it superseded (so no chain is left empty)
        if full and not update.terminal:
            self.dropped += 1
            log.warning("a2a_webhook_dropped", task_id=update.task_id, queued=self._queued)
            return
        self._queued += 1
        self._pending[id(update.sender.http)] = self._pending.get(id(update.sender.http), 0) + 1
        self._idle.clear()
        if chain is None:
            self._chains[update.task_id] = deque([update])
            self._ready.put_nowait(update.task_id)
        else:  # waiting or in flight: the task's turn comes again after this
            chain.append(update)

    def _supersede(self, task_id: str, chain: deque[_Update]) -> int:
        """Drop the task's waiting progress updates (the one being submitted takes their place);
        how many."""
        kept = [u for u in chain if u.kept]
        superseded = len(chain) - len(kept)
        if superseded:
            for update in chain:
                if not update.kept:
                    self._done(update)
            chain.clear()
            chain.extend(kept)
            self._queued -= superseded
            self.dropped += superseded
            log.info("a2a_webhook_superseded", task_id=task_id, updates=superseded)
        return superseded

    async def _work(self) -> None:
        while True:
            task_id = await self._ready.get()
            chain = self._chains[task_id]
            update = chain.popleft()
            try:
                await self._deliver(update)
            except Exception as exc:  # noqa: BLE001 - best effort: the next update still goes
                log.warning("a2a_webhook_failed", task_id=task_id, error=type(exc).__name__)
            finally:
                self._queued -= 1
                self._done(update)
                if chain:
                    self._ready.put_nowait(task_id)  # back of the line: the other tasks go first
                else:
                    del self._chains[task_id]
                if not self._queued:
                    self._idle.set()

    def _done(self, update: _Update) -> None:
        key = id(update.sender.http)
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    async def drained(self, http: httpx.AsyncClient) -> None:
        """Wait (at most the drain time) until no update sent through `http` is waiting or in
        flight, so an endpoint removed at run time closes its client only after its deliveries."""
        try:
            async with asyncio.timeout(self._drain_s):
                while self._tasks and self._pending.get(id(http)):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("a2a_webhook_undrained", queued=self._pending.get(id(http)), drain_s=self._drain_s)

    async def _deliver(self, update: _Update) -> None:
        configs = await update.sender.configs.get_info_for_dispatch(update.task_id)
        if not configs:
            return
        body = MessageToDict(to_stream_response(update.event))
        room = asyncio.Semaphore(CONFIGS_IN_FLIGHT)

        async def post(config: TaskPushNotificationConfig) -> None:
            async with room:
                delivered = await self._post(update.sender, config, body, update.task_id)
            if delivered:
                self.delivered += 1
            elif delivered is False:
                self.failed += 1

        results = await asyncio.gather(*(post(c) for c in configs), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("a2a_webhook_failed", task_id=update.task_id, error=type(result).__name__)

    async def _post(
        self, sender: QueuedSender, config: TaskPushNotificationConfig, body: object, task_id: str
    ) -> bool | None:
        """True if delivered, False if not, None if skipped (breaker open)."""
        if not self._breaker.allows(config.url):
            self.skipped += 1
            log.info("a2a_webhook_skipped", task_id=task_id, webhook=_fingerprint(config.url))
            return None
        problem = await self._attempt(sender, config, body, task_id)
        if self._breaker.record(config.url, delivered=problem is None or problem == "rejected"):
            log.warning(
                "a2a_webhook_suspended",
                task_id=task_id,
                webhook=_fingerprint(config.url),
                cooldown_s=self._cooldown_s,
            )
        return problem is None

    async def _attempt(
        self, sender: QueuedSender, config: TaskPushNotificationConfig, body: object, task_id: str
    ) -> str | None:
        """POST `body` to the config's URL, retrying failures; None if delivered, else the problem
        ("rejected" when the receiver answered with a status not retried)."""
        headers = {"X-A2A-Notification-Token": config.token} if config.token else {}
        auth = config.authentication
        if config.HasField("authentication") and auth.scheme and auth.credentials:
            headers["Authorization"] = f"{auth.scheme} {auth.credentials}"
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S)) - 1])
            try:
                async with asyncio.timeout(self.timeout_s):  # the URL check's DNS lookup included
                    await check_webhook_url(config.url, allow_private=sender.allow_private)
                    response = await sender.http.post(config.url, json=body, headers=headers)
            except FetchError as exc:
                log.warning("a2a_webhook_refused", task_id=task_id, problem=str(exc))
                return "refused"
            except (TimeoutError, httpx.HTTPError) as exc:
                problem = type(exc).__name__
                continue
            except RuntimeError:  # its endpoint was removed and the client closed: undeliverable
                return "closed"
            if response.status_code in RETRY_STATUSES:
                problem = f"HTTP {response.status_code}"
                continue
            if response.is_success:
                return None
            log.warning("a2a_webhook_rejected", task_id=task_id, status=response.status_code)
            return "rejected"
        log.warning("a2a_webhook_undelivered", task_id=task_id, attempts=self._attempts, problem=problem)
        return problem


def _fingerprint(url: str) -> str:
    """A URL named in logs without revealing it (tokens sometimes ride in paths)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


class QueuedSender(PushNotificationSender):
    """One endpoint's push sender (the SDK calls it on every update of a task): copies the update
    and hands it to the gateway's dispatcher, and returns at once."""

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
        self._dispatcher.submit(_update(self, task_id, event))
