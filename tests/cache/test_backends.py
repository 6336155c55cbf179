"""Memory LRU and Redis backends: the same contract, against the real Redis server."""

from __future__ import annotations

import asyncio

import pytest
import redis

from rrm_server.cache.backends import CacheUnavailable, MemoryBackend, RedisBackend


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_memory_lru_and_ttl():
    clock = Clock()
    m = MemoryBackend(max_entries=3, clock=clock)
    await m.set_many([("a", b"1", 10), ("b", b"2", 10), ("c", b"3", 1)])
    assert await m.get_many(["a", "b", "c", "x"]) == [b"1", b"2", b"3", None]
    clock.t = 2  # c expired
    assert await m.get_many(["c"]) == [None]
    await m.get_many(["a"])  # a is now most recent
    await m.set_many([("d", b"4", 10), ("e", b"5", 10)])
    assert len(m) == 3
    assert await m.get_many(["a", "b", "d", "e"]) == [b"1", None, b"4", b"5"]  # b was least recent
    assert await m.clear() == 3 and len(m) == 0


@pytest.mark.redis
async def test_redis_on_the_machines_server(redis_prefix):
    r = RedisBackend("redis://127.0.0.1:6379/0", prefix=redis_prefix)
    other = redis.Redis()
    other.set("not-ours-" + redis_prefix, b"keep")
    try:
        await r.set_many([("a", b"1", 60), ("b", b"2", 0.2)])
        assert await r.get_many(["a", "b", "c"]) == [b"1", b"2", None]
        assert 0 < other.pttl(f"{redis_prefix}vote:a") <= 60_000
        await asyncio.sleep(0.3)
        assert await r.get_many(["b"]) == [None]  # TTL honoured by Redis
        # Leases: one owner at a time, released only by its owner.
        assert await r.acquire_lease("k", "me", 5)
        assert not await r.acquire_lease("k", "you", 5)
        await r.release_lease("k", "you")
        assert await r.lease_held("k")
        await r.release_lease("k", "me")
        assert not await r.lease_held("k")
        await r.set_many([(f"bulk{i}", b"x", 60) for i in range(2500)])
        assert await r.clear() == 2501
        assert other.get("not-ours-" + redis_prefix) == b"keep"  # never anything outside the prefix
    finally:
        other.delete("not-ours-" + redis_prefix)
        await r.close()


@pytest.mark.redis
async def test_redis_down_fails_fast_then_recovers(redis_proc):
    r = RedisBackend(redis_proc.url, prefix="t:", timeout=0.2, cooldown=0.2)
    try:
        await r.set_many([("a", b"1", 60)])
        redis_proc.stop()
        with pytest.raises(CacheUnavailable):
            await r.get_many(["a"])
        with pytest.raises(CacheUnavailable, match="skipped"):  # within the cooldown: no waiting
            await r.get_many(["a"])
        redis_proc.start()  # restarted empty (no persistence)
        await asyncio.sleep(0.25)
        assert await r.get_many(["a"]) == [None]
        await r.set_many([("a", b"2", 60)])
        assert await r.get_many(["a"]) == [b"2"]
    finally:
        if redis_proc.proc is None:
            redis_proc.start()
        await r.close()
