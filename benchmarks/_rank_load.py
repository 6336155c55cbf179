"""The scale-out workload shared by benchmarks/replicas.py and benchmarks/ray_scaleout.py: ELO
requests over real GSM8K best-of-4 candidates, driven at a fixed concurrency through the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from benchmarks._common import percentile
from benchmarks.strategy_study import load_questions

USAGE_SUMS = ("engine_calls", "prompt_tokens", "cached_prompt_tokens", "failed_judgments")


def add_workload_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)


def elo_bodies(questions: int, max_tokens: int, wave: int = 0) -> list[dict]:
    """One ELO request per question: 4 candidates, 2 votes in both orders (12 comparisons each).
    A later ``wave`` asks the same comparisons again with new seeds (no result cache), as a trainer
    re-judging a group does: only the engines' prefix caches can reuse the first wave's work."""
    return [{"query": q, "responses": texts, "method": "elo", "votes": 2, "order": "both", "early_stop": False,
             "seed": 1000 * wave + i, "max_tokens": max_tokens, "cache": False, "verdict_probs": False}
            for i, (q, texts, _) in enumerate(load_questions(4)[:questions])]


async def drive(url: str, bodies: list[dict], concurrency: int) -> dict:
    """POST every body to /v1/judge/rank, ``concurrency`` at a time; throughput, latency and the
    usage the responses report (prefix-cache hits come from the engines' own per-request counters)."""
    latencies: list[float] = []
    totals = dict.fromkeys(("failed", *USAGE_SUMS), 0)
    queue = list(bodies)

    async def worker(c: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop(0)
            t0 = time.perf_counter()
            r = await c.post("/v1/judge/rank", json=body)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                totals["failed"] += 1
                continue
            usage = r.json()["usage"]
            for k in USAGE_SUMS:
                totals[k] += usage[k]

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=3600) as c:
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"requests": len(bodies), "failed": totals["failed"], "engine_calls": totals["engine_calls"],
            "failed_judgments": totals["failed_judgments"], "seconds": round(wall, 1),
            "requests_per_s": round(len(bodies) / wall, 3),
            "comparisons_per_s": round(totals["engine_calls"] / wall, 3),
            "prompt_tokens": totals["prompt_tokens"], "cached_prompt_tokens": totals["cached_prompt_tokens"],
            "prefix_cache_hit_rate": round(totals["cached_prompt_tokens"] / max(1, totals["prompt_tokens"]), 3),
            "p50_s": round(percentile(latencies, 0.5), 2), "p99_s": round(percentile(latencies, 0.99), 2)}
