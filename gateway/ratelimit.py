"""Rate limits from the policy (`rate_limits`): a token bucket per limit and key, as GCRA.

A limit of N calls per W seconds lets a burst of N through and then one call every W/N seconds. The
key is the agent, the resource, or both (`per`). State lives in this process by default; with
`rate_limit_store: redis://...` it lives in Redis, shared by every replica, updated atomically by a
script that reads Redis's own clock (replicas' clocks never disagree about a bucket). If Redis
cannot be reached the limited call is refused (`rate_limit_unavailable`): a limit that cannot be
counted is not enforced by letting everything through.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from gateway.errors import GatewayError
from identity.policy import RateLimit

MAX_LOCAL_KEYS: Final = 100_000
"""Most buckets one process keeps (least recently used forgotten first: a forgotten bucket is full)."""


class RateLimited(GatewayError):
    reason = "rate_limited"
    http_status = 429


class RateLimitUnavailable(GatewayError):
    reason = "rate_limit_unavailable"
    http_status = 503


class Limiter(Protocol):
    async def hit(self, limit: RateLimit, key: str) -> float:
        """Count one call; 0 when allowed, else the seconds until one would be."""
        ...


def bucket_key(limit: RateLimit, agent: str, resource: str) -> str:
    parts = {"agent": (agent,), "resource": (resource,), "agent_resource": (agent, resource)}[limit.per]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class LocalLimiter:
    """Buckets in this process (each replica counts on its own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: OrderedDict[tuple[str, str], float] = OrderedDict()

    async def hit(self, limit: RateLimit, key: str) -> float:
        now = self._clock()
        interval = limit.window_s / limit.limit
        slot = (limit.id, key)
        tat = max(self._tat.get(slot, now), now)
        new = tat + interval
        if new - now > limit.window_s + 1e-9:
            return new - now - limit.window_s
        self._tat[slot] = new
        self._tat.move_to_end(slot)
        if len(self._tat) > MAX_LOCAL_KEYS:
            self._tat.popitem(last=False)
        return 0.0


GCRA_SCRIPT: Final = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + interval
if new - now > window + 0.000000001 then
  return tostring(new - now - window)
end
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil((new - now) * 1000) + 1)
return '0'
"""


class RedisLimiter:
    """Buckets in Redis, shared by every replica."""

    def __init__(self, url: str, prefix: str = "interlink:ratelimit:") -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self._prefix = prefix

    async def hit(self, limit: RateLimit, key: str) -> float:
        try:
            answer = await self._script(
                keys=[f"{self._prefix}{limit.id}:{key}"], args=[limit.window_s / limit.limit, limit.window_s]
            )
        except Exception as exc:  # noqa: BLE001 - any failure to count means: refuse
            raise RateLimitUnavailable(
                "rate limits cannot be counted right now; try again shortly", cause=type(exc).__name__
            ) from None
        return float(answer)

    async def close(self) -> None:
        await self._redis.aclose()
