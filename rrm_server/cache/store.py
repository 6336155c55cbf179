"""Read-through vote cache with in-flight coalescing, cross-replica leases, and fail-open.

``fetch`` takes jobs (a key and a way to compute the value). Cached values come back at once with
one batched lookup; identical jobs in flight anywhere in this process run once and every waiter
gets the result; with a shared backend (Redis) a short, renewed lease keeps two replicas from
computing the same key at once. A waiter that goes away does not cancel work others still wait
for; when the last one goes, the work is cancelled (and its engine request aborted). A backend
that fails is bypassed: the caller gets its answer, and the stats say the cache was degraded.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from rrm_server.cache.backends import CacheBackend, CacheUnavailable
from rrm_server.concurrency import gather_all

logger = logging.getLogger(__name__)
T = TypeVar("T")
Source = Literal["cache", "computed", "coalesced"]


class Codec(Protocol[T]):
    def dumps(self, value: T) -> bytes: ...
    def loads(self, raw: bytes) -> T: ...
    def ttl(self, value: T) -> float | None:
        """Seconds to keep ``value``; None: do not store it."""
    def usable(self, value: T) -> bool:
        """Whether a stored value answers this request (e.g. it kept the reasoning asked for)."""


@dataclass
class Job(Generic[T]):
    key: str
    compute: Callable[[], Awaitable[T]]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    errors: int = 0
    enabled: bool = True

    @property
    def status(self) -> str:
        if not self.enabled:
            return "off"
        return "degraded" if self.errors else "ok"


@dataclass
class _Flight:
    task: asyncio.Task
    waiters: int = 0


@dataclass
class VoteCache:
    backend: CacheBackend | None
    lease_ttl: float = 10.0
    _inflight: dict[str, _Flight] = field(default_factory=dict)

    async def fetch(self, jobs: Sequence[Job[T]], codec: Codec[T], stats: CacheStats,
                    use_cache: bool = True) -> list[tuple[T, Source]]:
        if not use_cache or self.backend is None:
            stats.enabled = False
            return [(await_value, "computed") for await_value in await gather_all(j.compute() for j in jobs)]

        found: list[bytes | None] = [None] * len(jobs)
        try:
            found = await self.backend.get_many([j.key for j in jobs])
        except CacheUnavailable:
            stats.errors += 1
        out: list[tuple[T, Source] | None] = [None] * len(jobs)
        pending: list[int] = []
        for i, raw in enumerate(found):
            value = _decode(codec, raw)
            if value is not None:
                stats.hits += 1
                out[i] = (value, "cache")
            else:
                pending.append(i)
        if pending:
            results = await gather_all(self._join(jobs[i], codec, stats) for i in pending)
            for i, r in zip(pending, results):
                out[i] = r
        return out  # type: ignore[return-value]

    async def _join(self, job: Job[T], codec: Codec[T], stats: CacheStats) -> tuple[T, Source]:
        flight = self._inflight.get(job.key)
        mine = flight is None
        if flight is None:
            stats.misses += 1
            task = asyncio.ensure_future(self._produce(job, codec, stats))
            flight = _Flight(task)
            self._inflight[job.key] = flight
            task.add_done_callback(lambda t, k=job.key, f=flight: self._forget(k, f))
        else:
            stats.coalesced += 1
        flight.waiters += 1
        try:
            value, source = await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody wants it any more: stop the engine work
        if not mine and not codec.usable(value):
            # The flight we joined answers a request that wanted less (no verdict probability, no
            # reasoning kept): this one computes its own.
            stats.coalesced -= 1
            stats.misses += 1
            return await self._produce(job, codec, stats)
        return value, source if mine else "coalesced"

    def _forget(self, key: str, flight: _Flight) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved: waiters got it; keep asyncio from logging it again

    async def _produce(self, job: Job[T], codec: Codec[T], stats: CacheStats) -> tuple[T, Source]:
        backend = self.backend
        assert backend is not None
        owner = uuid.uuid4().hex
        leased = False
        if backend.shared:
            value = await self._lease_or_value(job.key, owner, codec, stats)
            if value is not None:  # another replica computed it meanwhile
                stats.misses -= 1
                stats.coalesced += 1
                return value, "coalesced"
            leased = True
        renew = asyncio.ensure_future(self._renew(job.key, owner)) if leased else None
        try:
            value = await job.compute()
        finally:
            if renew is not None:
                renew.cancel()
        ttl = codec.ttl(value)
        try:
            if ttl:
                await backend.set_many([(job.key, codec.dumps(value), ttl)])
            if leased:
                await backend.release_lease(job.key, owner)
        except CacheUnavailable:
            stats.errors += 1
        return value, "computed"

    async def _lease_or_value(self, key: str, owner: str, codec: Codec[T], stats: CacheStats) -> T | None:
        """None once we hold the lease (or Redis is unusable); the value if another replica made it."""
        assert self.backend is not None
        delay = 0.02
        while True:
            try:
                if await self.backend.acquire_lease(key, owner, self.lease_ttl):
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                (raw,) = await self.backend.get_many([key])
            except CacheUnavailable:
                stats.errors += 1
                return None  # fail-open: compute it ourselves
            value = _decode(codec, raw)
            if value is not None:
                return value

    async def _renew(self, key: str, owner: str) -> None:
        assert self.backend is not None
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                await self.backend.renew_lease(key, owner, self.lease_ttl)
            except CacheUnavailable:
                pass

    async def clear(self) -> int:
        return 0 if self.backend is None else await self.backend.clear()

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()


def _decode(codec: Codec[T], raw: bytes | None) -> T | None:
    if raw is None:
        return None
    try:
        value = codec.loads(raw)
    except Exception:  # an entry from another version or a corrupted value: a miss, not an error
        return None
    return value if codec.usable(value) else None
