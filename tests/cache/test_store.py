"""Read-through, coalescing, leases and fail-open of the vote cache, with a counting compute."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from rrm_server.cache.backends import CacheBackend, CacheUnavailable, MemoryBackend, RedisBackend
from rrm_server.cache.store import CacheStats, Job, VoteCache


class JsonCodec:
    def __init__(self, ttl: float | None = 60) -> None:
        self._ttl = ttl

    def dumps(self, v):  # type: ignore[no-untyped-def]
        return json.dumps(v).encode()

    def loads(self, raw):  # type: ignore[no-untyped-def]
        return json.loads(raw)

    def ttl(self, v):  # type: ignore[no-untyped-def]
        return None if v.get("error") else self._ttl

    def usable(self, v):  # type: ignore[no-untyped-def]
        return True


class Work:
    """Counts computations; each takes ``delay`` seconds; records cancellations."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[str] = []
        self.cancelled: list[str] = []

    def job(self, key: str, value: object = None) -> Job:
        async def compute():  # type: ignore[no-untyped-def]
            self.calls.append(key)
            try:
                await asyncio.sleep(self.delay)
            except asyncio.CancelledError:
                self.cancelled.append(key)
                raise
            return value if value is not None else {"v": key}

        return Job(key, compute)


async def test_read_through_and_partial_top_up():
    cache, work, codec = VoteCache(MemoryBackend()), Work(), JsonCodec()
    s1 = CacheStats()
    out = await cache.fetch([work.job("a"), work.job("b")], codec, s1)
    assert [src for _, src in out] == ["computed", "computed"] and (s1.hits, s1.misses) == (0, 2)
    s2 = CacheStats()
    out = await cache.fetch([work.job("a"), work.job("b"), work.job("c")], codec, s2)
    assert [v["v"] for v, _ in out] == ["a", "b", "c"]
    assert [src for _, src in out] == ["cache", "cache", "computed"]
    assert work.calls == ["a", "b", "c"] and (s2.hits, s2.misses) == (2, 1) and s2.status == "ok"


async def test_uncacheable_values_are_not_stored_and_cache_off_bypasses():
    cache, work, codec = VoteCache(MemoryBackend()), Work(), JsonCodec()
    await cache.fetch([work.job("e", {"error": "boom"})], codec, CacheStats())
    await cache.fetch([work.job("e", {"error": "boom"})], codec, CacheStats())
    assert work.calls == ["e", "e"]
    await cache.fetch([work.job("x")], codec, CacheStats())
    stats = CacheStats()
    out = await cache.fetch([work.job("x")], codec, stats, use_cache=False)
    assert out[0][1] == "computed" and work.calls.count("x") == 2 and stats.status == "off"


async def test_identical_jobs_in_flight_run_once():
    cache, work, codec = VoteCache(MemoryBackend()), Work(delay=0.05), JsonCodec()
    stats = [CacheStats() for _ in range(5)]
    outs = await asyncio.gather(*(cache.fetch([work.job("k")], codec, s) for s in stats))
    assert work.calls == ["k"]
    assert sorted(o[0][1] for o in outs) == ["coalesced"] * 4 + ["computed"]
    assert sum(s.coalesced for s in stats) == 4 and sum(s.misses for s in stats) == 1
    # Within one fetch too.
    work2 = Work(delay=0.01)
    out = await cache.fetch([work2.job("z"), work2.job("z")], codec, CacheStats())
    assert work2.calls == ["z"] and [v for v, _ in out] == [{"v": "z"}, {"v": "z"}]


async def test_one_waiter_leaving_does_not_cancel_the_others():
    cache, work, codec = VoteCache(MemoryBackend()), Work(delay=0.2), JsonCodec()
    leaver = asyncio.create_task(cache.fetch([work.job("k")], codec, CacheStats()))
    stayer = asyncio.create_task(cache.fetch([work.job("k")], codec, CacheStats()))
    await asyncio.sleep(0.05)
    leaver.cancel()
    out = await stayer
    assert out[0][0] == {"v": "k"} and work.cancelled == [] and work.calls == ["k"]
    with pytest.raises(asyncio.CancelledError):
        await leaver


async def test_last_waiter_leaving_cancels_the_work():
    cache, work, codec = VoteCache(MemoryBackend()), Work(delay=5), JsonCodec()
    t1 = asyncio.create_task(cache.fetch([work.job("k")], codec, CacheStats()))
    t2 = asyncio.create_task(cache.fetch([work.job("k")], codec, CacheStats()))
    await asyncio.sleep(0.05)
    t1.cancel()
    t2.cancel()
    await asyncio.gather(t1, t2, return_exceptions=True)
    await asyncio.sleep(0)
    assert work.cancelled == ["k"]
    assert cache._inflight == {}


async def test_failure_reaches_every_waiter_and_is_not_cached():
    cache, codec = VoteCache(MemoryBackend()), JsonCodec()
    calls = []

    async def boom():  # type: ignore[no-untyped-def]
        calls.append(1)
        await asyncio.sleep(0.02)
        raise RuntimeError("engine died")

    results = await asyncio.gather(*(cache.fetch([Job("k", boom)], codec, CacheStats()) for _ in range(3)),
                                   return_exceptions=True)
    assert len(calls) == 1
    assert all(isinstance(r, ExceptionGroup) or isinstance(r, RuntimeError) for r in results)
    assert await cache.backend.get_many(["k"]) == [None]  # type: ignore[union-attr]


class BrokenBackend(CacheBackend):
    shared = True

    async def get_many(self, keys):  # type: ignore[no-untyped-def]
        raise CacheUnavailable("down")

    async def set_many(self, items):  # type: ignore[no-untyped-def]
        raise CacheUnavailable("down")

    async def clear(self):  # type: ignore[no-untyped-def]
        raise CacheUnavailable("down")

    async def acquire_lease(self, key, owner, ttl):  # type: ignore[no-untyped-def]
        raise CacheUnavailable("down")


async def test_fail_open_when_the_backend_is_down():
    cache, work, codec = VoteCache(BrokenBackend()), Work(), JsonCodec()
    stats = CacheStats()
    out = await cache.fetch([work.job("a"), work.job("b")], codec, stats)
    assert [v["v"] for v, _ in out] == ["a", "b"]
    assert stats.status == "degraded" and stats.errors >= 1


@pytest.mark.redis
async def test_replicas_sharing_redis_compute_a_key_once(redis_prefix):
    url = "redis://127.0.0.1:6379/0"
    replicas = [VoteCache(RedisBackend(url, prefix=redis_prefix), lease_ttl=2.0) for _ in range(2)]
    works = [Work(delay=0.3), Work(delay=0.3)]
    codec = JsonCodec()
    try:
        stats = [CacheStats(), CacheStats()]
        outs = await asyncio.gather(*(r.fetch([w.job("k")], codec, s) for r, w, s in zip(replicas, works, stats)))
        assert len(works[0].calls) + len(works[1].calls) == 1
        assert sorted(o[0][1] for o in outs) == ["coalesced", "computed"]
        assert all(o[0][0] == {"v": "k"} for o in outs)
        assert sum(s.coalesced for s in stats) == 1
    finally:
        for r in replicas:
            await r.close()


@pytest.mark.redis
async def test_waiters_compute_themselves_when_a_lease_expires(redis_prefix):
    """A replica that took the lease and died: the others wait for the lease to lapse, then compute."""
    url = "redis://127.0.0.1:6379/0"
    dead_holder = RedisBackend(url, prefix=redis_prefix)
    assert await dead_holder.acquire_lease("k", uuid.uuid4().hex, 0.4)
    cache, work = VoteCache(RedisBackend(url, prefix=redis_prefix), lease_ttl=2.0), Work()
    try:
        out = await cache.fetch([work.job("k")], JsonCodec(), CacheStats())
        assert out[0] == ({"v": "k"}, "computed") and work.calls == ["k"]
    finally:
        await cache.close()
        await dead_holder.close()
