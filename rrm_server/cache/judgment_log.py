"""Where recorded judgments are kept (``--record-judgments N``): the last N, each for a TTL, in memory
or in Redis (shared by replicas). Records are opaque bytes here: a summary for the listing and the
whole record for a look-up by id."""

from __future__ import annotations

import abc
import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rrm_server.cache.backends import CacheUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class LogEntry:
    id: str
    summary: bytes
    record: bytes

    @property
    def size(self) -> int:
        return len(self.summary) + len(self.record)


class JudgmentLog(abc.ABC):
    name: str = "log"

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity, self.ttl = capacity, ttl

    @abc.abstractmethod
    async def add(self, entry: LogEntry) -> None:
        """Keep ``entry`` as the newest; forget whatever falls past the capacity."""

    @abc.abstractmethod
    async def recent(self, limit: int) -> list[bytes]:
        """Summaries of the newest ``limit`` entries still kept, newest first."""

    @abc.abstractmethod
    async def get(self, id_: str) -> bytes | None: ...

    async def close(self) -> None:
        return None


class MemoryJudgmentLog(JudgmentLog):
    """The newest ``capacity`` entries within ``max_bytes``, each for ``ttl`` seconds. One process only."""

    name = "memory"

    def __init__(self, capacity: int, ttl: float, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity, ttl)
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[LogEntry, float]] = OrderedDict()  # oldest first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, id_: str) -> None:
        entry, _ = self._entries.pop(id_)
        self._bytes -= entry.size

    def _expire(self) -> None:
        now = self._clock()
        while self._entries and next(iter(self._entries.values()))[1] <= now:
            self._drop(next(iter(self._entries)))

    async def add(self, entry: LogEntry) -> None:
        if entry.id in self._entries:
            self._drop(entry.id)
        self._entries[entry.id] = (entry, self._clock() + self.ttl)
        self._bytes += entry.size
        while len(self._entries) > self.capacity or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._expire()

    async def recent(self, limit: int) -> list[bytes]:
        self._expire()
        out = []
        for entry, _ in reversed(self._entries.values()):
            if len(out) >= limit:
                break
            out.append(entry.summary)
        return out

    async def get(self, id_: str) -> bytes | None:
        self._expire()
        item = self._entries.get(id_)
        return None if item is None else item[0].record


# One atomic step: store the record (with its TTL), put its id first in the list (once), and delete
# the records that fall off the end, so Redis never holds more than N of them.
_ADD = """
redis.call('hset', KEYS[2], 'summary', ARGV[2], 'record', ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[5])
redis.call('lrem', KEYS[1], 0, ARGV[1])
redis.call('lpush', KEYS[1], ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[5])
local dropped = 0
while redis.call('llen', KEYS[1]) > tonumber(ARGV[4]) do
  redis.call('del', ARGV[6] .. redis.call('rpop', KEYS[1]))
  dropped = dropped + 1
end
return dropped
"""


class RedisJudgmentLog(JudgmentLog):
    """A list of ids (newest first, trimmed to N) and one hash per record, all under the cache's
    key prefix, all expiring. Every call has a deadline; a failure is ``CacheUnavailable``."""

    name = "redis"

    def __init__(self, url: str, capacity: int, ttl: float, prefix: str = "rrm:", timeout: float = 0.25) -> None:
        import redis.asyncio as aioredis

        super().__init__(capacity, ttl)
        self.prefix, self.timeout = prefix, timeout
        self._redis = aioredis.from_url(url, socket_timeout=timeout * 4, socket_connect_timeout=timeout * 4,
                                        max_connections=8)
        self._add = self._redis.register_script(_ADD)

    @property
    def ids_key(self) -> str:
        return f"{self.prefix}judgments"

    def record_key(self, id_: str) -> str:
        return f"{self.prefix}judgment:{id_}"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(fn(), self.timeout * 4)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # redis.RedisError, OSError, TimeoutError: all mean "not now"
            raise CacheUnavailable(f"{type(e).__name__}: {e}") from e

    async def add(self, entry: LogEntry) -> None:
        ttl_ms = max(1, int(self.ttl * 1000))
        await self._call(lambda: self._add(
            keys=[self.ids_key, self.record_key(entry.id)],
            args=[entry.id, entry.summary, entry.record, self.capacity, ttl_ms, self.record_key("")]))

    async def recent(self, limit: int) -> list[bytes]:
        async def run() -> list[Any]:
            ids = await self._redis.lrange(self.ids_key, 0, limit - 1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hget(self.record_key(id_.decode()), "summary")
                return await pipe.execute()

        return [s for s in await self._call(run) if s is not None]  # None: expired

    async def get(self, id_: str) -> bytes | None:
        return await self._call(lambda: self._redis.hget(self.record_key(id_), "record"))

    async def close(self) -> None:
        await self._redis.aclose()


def open_log(capacity: int, ttl: float, max_bytes: int, redis_url: str | None = None, prefix: str = "rrm:",
             timeout: float = 0.25) -> JudgmentLog | None:
    """None when recording is off (capacity 0)."""
    if capacity <= 0:
        return None
    if redis_url:
        return RedisJudgmentLog(redis_url, capacity, ttl, prefix=prefix, timeout=timeout)
    return MemoryJudgmentLog(capacity, ttl, max_bytes)

