"""Where votes are kept: a bounded in-memory LRU (the default) or Redis (shared by replicas)."""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CacheUnavailable(Exception):
    """The backend cannot answer now; callers carry on without it (fail-open)."""


class CacheBackend(abc.ABC):
    name: str = "cache"
    shared: bool = False  # True when other processes see the same entries (leases make sense)

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    @abc.abstractmethod
    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """(key, value, ttl seconds) triples."""

    @abc.abstractmethod
    async def clear(self) -> int:
        """Delete this service's entries (never anything else); returns how many."""

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return True

    async def renew_lease(self, key: str, owner: str, ttl: float) -> None:
        return None

    async def release_lease(self, key: str, owner: str) -> None:
        return None

    async def lease_held(self, key: str) -> bool:
        return False

    async def close(self) -> None:
        return None


class MemoryBackend(CacheBackend):
    """LRU bounded by entry count, with per-entry TTL. One process only."""

    name = "memory"

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        out: list[bytes | None] = []
        for k in keys:
            item = self._data.get(k)
            if item is None or item[1] <= now:
                if item is not None:
                    del self._data[k]
                out.append(None)
            else:
                self._data.move_to_end(k)
                out.append(item[0])
        return out

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        now = self._clock()
        for k, v, ttl in items:
            self._data[k] = (v, now + ttl)
            self._data.move_to_end(k)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def clear(self) -> int:
        n = len(self._data)
        self._data.clear()
        return n


# Releases a lease only if we still own it (another replica may hold it after expiry).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
          "else return 0 end")


class RedisBackend(CacheBackend):
    """Redis through the asyncio client and its connection pool.

    Every call has a short deadline. After a failure the backend is skipped for ``cooldown``
    seconds (requests go straight to the engine instead of each paying the timeout), then tried
    again; the client reconnects by itself once Redis is back.
    """

    name = "redis"
    shared = True

    def __init__(self, url: str, prefix: str = "rrm:", timeout: float = 0.25, cooldown: float = 1.0,
                 max_connections: int = 64) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.timeout = timeout
        self.cooldown = cooldown
        self._redis = aioredis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=max_connections,
            health_check_interval=30,
        )
        self._skip_until = 0.0
        self._warned_at = 0.0

    def _k(self, key: str) -> str:
        return f"{self.prefix}vote:{key}"

    def _lease(self, key: str) -> str:
        return f"{self.prefix}lease:{key}"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if now < self._skip_until:
            raise CacheUnavailable("redis skipped after a recent failure")
        try:
            return await asyncio.wait_for(fn(), self.timeout * 4)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # redis.RedisError, OSError, TimeoutError: all mean "not now"
            self._skip_until = time.monotonic() + self.cooldown
            if now - self._warned_at > 10:
                self._warned_at = now
                logger.warning("redis cache unavailable (%s: %s); serving without it", type(e).__name__, e)
            raise CacheUnavailable(f"{type(e).__name__}: {e}") from e

    async def ping(self) -> bool:
        return bool(await self._call(self._redis.ping))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._call(lambda: self._redis.mget([self._k(k) for k in keys]))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return

        async def run() -> Any:
            async with self._redis.pipeline(transaction=False) as pipe:
                for k, v, ttl in items:
                    pipe.set(self._k(k), v, px=max(1, int(ttl * 1000)))
                return await pipe.execute()

        await self._call(run)

    async def clear(self) -> int:
        async def run() -> int:
            deleted = 0
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self._redis.unlink(*batch)
            return deleted

        # SCAN over a large keyspace takes longer than one call's deadline: no wait_for here.
        try:
            return await run()
        except Exception as e:
            raise CacheUnavailable(f"{type(e).__name__}: {e}") from e

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return bool(await self._call(lambda: self._redis.set(self._lease(key), owner, nx=True,
                                                             px=int(ttl * 1000))))

    async def renew_lease(self, key: str, owner: str, ttl: float) -> None:
        await self._call(lambda: self._redis.eval(_RENEW, 1, self._lease(key), owner, int(ttl * 1000)))

    async def release_lease(self, key: str, owner: str) -> None:
        await self._call(lambda: self._redis.eval(_RELEASE, 1, self._lease(key), owner))

    async def lease_held(self, key: str) -> bool:
        return bool(await self._call(lambda: self._redis.exists(self._lease(key))))

    async def close(self) -> None:
        await self._redis.aclose()
