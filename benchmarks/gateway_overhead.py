"""Gateway overhead: the real gateway (HTTP, tokenizer, prompt building, voting, strategies) on an
engine that answers at once, so every microsecond measured is ours (plus the HTTP client's).

- latency: sequential pairwise requests (1 vote) -> p50/p99 round trip, and what the gateway adds: the
  round trip minus the HTTP floor (same client and server, GET /health);
- throughput: concurrent ELO rank requests over 8 responses (28 pairs x k votes) -> comparisons/s.

    .venv/bin/python -m benchmarks.gateway_overhead [--requests 500] [--seconds 10] [--profile out.html]

Targets on the 2-core machines: >= 1,000 comparisons/s and p50 added latency < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx

from benchmarks._common import DATA, machine, percentile, write_result
from benchmarks.simulated_server import simulated_gateway


def pandalm_pairs(n: int) -> list[tuple[str, str, str]]:
    rows = json.loads((DATA / "pandalm" / "testset-v1.json").read_text())
    out = []
    for r in rows:
        q = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        if all(isinstance(r[k], str) and r[k].strip() for k in ("instruction", "response1", "response2")):
            out.append((q, r["response1"], r["response2"]))
    return (out * (n // len(out) + 1))[:n]


async def latency(url: str, n: int) -> dict:
    pairs = pandalm_pairs(n)
    times, floor = [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        for _ in range(n):  # the HTTP floor: same client, same server, an endpoint that does nothing
            t0 = time.perf_counter()
            (await c.get("/health")).raise_for_status()
            floor.append(time.perf_counter() - t0)
        for i, (q, a, b) in enumerate(pairs):
            body = {"query": q, "responses": [a, b], "votes": 1, "seed": i, "cache": False}
            t0 = time.perf_counter()
            r = await c.post("/v1/judge/pairwise", json=body)
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
    p50, floor50 = percentile(times, 0.5), percentile(floor, 0.5)
    return {"requests": n, "p50_ms": round(p50 * 1e3, 2), "p99_ms": round(percentile(times, 0.99) * 1e3, 2),
            "mean_ms": round(sum(times) / n * 1e3, 2), "http_floor_p50_ms": round(floor50 * 1e3, 2),
            "added_p50_ms": round((p50 - floor50) * 1e3, 2)}


async def throughput(url: str, seconds: float, clients: int, votes: int) -> dict:
    pairs = pandalm_pairs(64)
    done = comparisons = 0
    stop = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient, k: int) -> None:
        nonlocal done, comparisons
        i = k
        while time.perf_counter() < stop:
            q = pairs[i % len(pairs)][0]
            responses = [pairs[(i + j) % len(pairs)][j % 2 + 1] + f" ({j})" for j in range(8)]
            body = {"query": q, "responses": responses, "method": "elo", "votes": votes, "early_stop": False,
                    "seed": i, "cache": False, "verdict_probs": False}
            r = await c.post("/v1/judge/rank", json=body)
            r.raise_for_status()
            done += 1
            comparisons += r.json()["usage"]["engine_calls"]
            i += clients

    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "votes": votes, "requests": done, "comparisons": comparisons,
            "seconds": round(wall, 2), "comparisons_per_s": round(comparisons / wall, 1)}


def run(requests: int = 500, seconds: float = 10.0, profile: str | None = None) -> dict:
    with simulated_gateway(0.0, profile=profile, max_votes=32) as url:
        asyncio.run(latency(url, 20))  # warm up: tokenizer caches, first-request imports
        lat = asyncio.run(latency(url, requests))
        thr = asyncio.run(throughput(url, seconds, clients=8, votes=4))
    return {"latency": lat, "throughput": thr,
            "targets": {"comparisons_per_s": 1000, "p50_ms": 5.0},
            "meets_targets": thr["comparisons_per_s"] >= 1000 and lat["added_p50_ms"] < 5.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--profile", help="pyinstrument HTML profile of the gateway process")
    args = ap.parse_args()
    result = run(args.requests, args.seconds, args.profile)
    out = write_result("gateway_overhead", {"machine": machine(), **result,
                                            "command": "python -m benchmarks.gateway_overhead "
                                            + " ".join(sys.argv[1:])})
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
