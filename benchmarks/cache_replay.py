"""Replay of an 8-response ELO request with 3 votes: uncached vs fully cached, on the real vLLM CPU
engine and the real Redis server, in one run. Also: the cost of a cache lookup per comparison.

    .venv/bin/python -m benchmarks.cache_replay [--redis redis://127.0.0.1:6379/0] [--uncached-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
import uuid

import httpx
import redis

from benchmarks._common import DATA, machine, percentile, real_server, write_result


def eight_responses() -> tuple[str, list[str]]:
    """The PandaLM instruction with the most distinct responses (real model outputs)."""
    items = json.loads((DATA / "pandalm" / "testset-v1.json").read_text())
    groups: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for it in items:
        for r in (it["response1"], it["response2"]):
            key = (it["instruction"], it["input"])
            if isinstance(r, str) and r.strip() and r not in groups[key]:
                groups[key].append(r)
    (instruction, inp), responses = max(groups.items(), key=lambda kv: len(kv[1]))
    return instruction + ("\n\n" + inp if inp else ""), responses[:8]


async def lookup_cost(url: str, prefix: str, keys: int = 84, rounds: int = 200) -> dict:
    """Per-comparison cost of VoteCache.fetch on all-hit keys, memory and Redis, in this process."""
    from rrm_server.cache import MemoryBackend, RedisBackend
    from rrm_server.cache.store import CacheStats, Job, VoteCache
    from rrm_server.judging.votes import Judgment
    from rrm_server.serving.matches import JudgmentCodec

    codec = JudgmentCodec(valid_ttl=600, invalid_ttl=60, store_output=True, need_output=False)
    value = Judgment(1, None, "stop", 600, 128, "x" * 600)
    out = {}
    for name, backend in (("memory", MemoryBackend()), ("redis", RedisBackend(url, prefix=prefix))):
        cache = VoteCache(backend)
        ks = [f"k{i}" for i in range(keys)]
        await backend.set_many([(k, codec.dumps(value), 600) for k in ks])

        async def never() -> Judgment:
            raise AssertionError("all keys are cached")

        # One fetch per match of 3 votes, all matches concurrently: what an ELO request does.
        t0 = time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*(cache.fetch([Job(k, never) for k in ks[i:i + 3]], codec, CacheStats())
                                   for i in range(0, keys, 3)))
        per = (time.perf_counter() - t0) / (rounds * keys)
        out[name] = {"us_per_vote": round(per * 1e6, 1)}
        await cache.clear()
        await cache.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--uncached-runs", type=int, default=3)
    ap.add_argument("--cached-runs", type=int, default=50)
    args = ap.parse_args()

    query, responses = eight_responses()
    prefix = f"rrm-bench-{uuid.uuid4().hex[:6]}:"
    uncached, cached = [], []
    with real_server(env={"RRM_CACHE_URL": args.redis, "RRM_CACHE_PREFIX": prefix}) as url:
        with httpx.Client(base_url=url, timeout=3600) as c:
            body = {"query": query, "responses": responses, "method": "elo", "votes": 3}
            for i in range(args.uncached_runs):  # each seed is a fresh set of 84 votes
                t0 = time.perf_counter()
                r = c.post("/v1/judge/rank", json={**body, "seed": 1000 + i})
                uncached.append(time.perf_counter() - t0)
                usage = r.json()["usage"]
                assert usage["engine_calls"] == 84, usage
            replay = {**body, "seed": 1000}
            for _ in range(args.cached_runs):
                t0 = time.perf_counter()
                r = c.post("/v1/judge/rank", json=replay)
                cached.append(time.perf_counter() - t0)
                assert r.json()["usage"]["cache"]["hits"] == 84 and r.json()["usage"]["engine_calls"] == 0
            tokens = usage["generated_tokens"]
    lookups = asyncio.run(lookup_cost(args.redis, prefix + "lookup:"))
    keys = list(redis.Redis.from_url(args.redis).scan_iter(match=f"{prefix}*"))
    if keys:
        redis.Redis.from_url(args.redis).delete(*keys)

    p50_uncached = percentile(uncached, 0.5)
    result = {
        "machine": machine(),
        "command": "python -m benchmarks.cache_replay",
        "request": {"method": "elo", "responses": 8, "votes": 3, "comparisons": 28, "votes_total": 84,
                    "max_tokens": 128, "generated_tokens_uncached": tokens},
        "uncached_s": {"runs": len(uncached), "p50": round(p50_uncached, 2), "min": round(min(uncached), 2)},
        "cached_ms": {"runs": len(cached), "p50": round(percentile(cached, 0.5) * 1e3, 2),
                      "p99": round(percentile(cached, 0.99) * 1e3, 2)},
        "speedup_p50": round(p50_uncached / percentile(cached, 0.5), 1),
        "lookup_per_vote": lookups,
    }
    print(json.dumps(result, indent=2))
    write_result("cache_replay", result)


if __name__ == "__main__":
    main()
