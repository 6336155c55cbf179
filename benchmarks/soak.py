"""Soak: mixed traffic on the real CPU engine for a long while (default 16 minutes), sampling the
server's memory and latency per window. Passes when no request failed unexpectedly, memory growth
after warm-up stays under a bound, and latency does not drift; docs/reliability.md quotes it.

    .venv/bin/python -m benchmarks.soak [--minutes 16] [--clients 6]

Traffic per closed-loop client, drawn at random: pairwise (1-3 votes, both orders, repeats that hit
the cache), ELO and knockout ranks, /v1/rewards groups, OpenRLHF /get_reward, /v1/judge/render,
requests that must fail with 400, and clients that leave mid-request. PandaLM items give real
prompt lengths. The server uses the machine's Redis under a prefix of its own (removed after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import PANDALM, machine, missing_data, percentile, server_process, write_result
from benchmarks.reliability import memory_mib

# Latency drift is judged on a canary (the same uncached 8-token pairwise judgment every few seconds,
# amid the mixed load): its median over the last third of the run vs the first third after warm-up.
# Memory growth on the API process after warm-up (the engine's RSS grows as its preallocated KV cache
# is first touched, up to its fixed size).
WARMUP_S = 120
MAX_API_GROWTH_MIB = 100
MAX_P50_DRIFT = 1.5


def items() -> list[dict]:
    raw = json.loads(PANDALM.read_text())[:60]
    return [{"query": it["instruction"] + ("\n\n" + it["input"] if it["input"] else ""),
             "responses": [it["response1"] or "(empty)", it["response2"] or "(empty)"]} for it in raw]


class Soak:
    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.items = items()
        self.ok: dict[str, int] = {}
        self.expected_errors = 0
        self.unexpected: list[str] = []
        self.left = 0
        self.windows: list[dict[str, Any]] = []
        self._lat: list[float] = []  # pairwise latencies of the current window
        self._canary: list[float] = []  # canary latencies of the current window
        self.canary_seconds: list[tuple[float, float]] = []  # (time, latency) of every canary

    def pick(self) -> dict:
        return self.items[int(self.rng.paretovariate(1.2)) % len(self.items)]  # skewed: repeats hit the cache

    async def call(self, c: httpx.AsyncClient, kind: str, path: str, body: dict, expect: int = 200) -> None:
        t0 = time.perf_counter()
        try:
            r = await c.post(path, json=body)
        except httpx.HTTPError as e:
            self.unexpected.append(f"{kind}: {type(e).__name__}: {e}")
            return
        if r.status_code != expect:
            self.unexpected.append(f"{kind}: HTTP {r.status_code}: {r.text[:200]}")
            return
        if expect != 200:
            ok_shape = set(r.json().get("error", {})) == {"type", "message", "param", "code"}
            if not ok_shape:
                self.unexpected.append(f"{kind}: error not in the error shape: {r.text[:200]}")
            self.expected_errors += 1
            return
        self.ok[kind] = self.ok.get(kind, 0) + 1
        if kind == "pairwise":
            self._lat.append(time.perf_counter() - t0)

    async def step(self, c: httpx.AsyncClient) -> None:
        it = self.pick()
        x = self.rng.random()
        short = {"max_tokens": self.rng.choice((8, 16, 24)), "verdict_probs": self.rng.random() < 0.5}
        if x < 0.35:
            await self.call(c, "pairwise", "/v1/judge/pairwise", {**it, **short, "votes": self.rng.randint(1, 3),
                                                                  "order": self.rng.choice(("random", "both"))})
        elif x < 0.50:
            others = [o["responses"][0] for o in self.rng.sample(self.items, 2)]
            await self.call(c, "elo", "/v1/judge/rank", {"query": it["query"], "responses": it["responses"] + others,
                                                        "method": "elo", **short})
        elif x < 0.58:
            others = [o["responses"][1] for o in self.rng.sample(self.items, 3)]
            await self.call(c, "knockout", "/v1/judge/rank", {"query": it["query"], "method": "knockout",
                                                             "responses": it["responses"] + others, **short})
        elif x < 0.66:
            await self.call(c, "rewards", "/v1/rewards", {"groups": [{"query": it["query"], "responses": [
                *it["responses"], "I do not know."]}], "votes": 1, "max_tokens": 8})
        elif x < 0.72:
            await self.call(c, "get_reward", "/get_reward", {
                "query": [it["query"] + "\n" + it["responses"][0]], "prompts": [it["query"]],
                "labels": [it["responses"][1]], "max_tokens": 8})
        elif x < 0.82:
            await self.call(c, "render", "/v1/judge/render", it)
        elif x < 0.92:
            bad = self.rng.choice([{**it, "votes": 0}, {"query": it["query"], "responses": it["responses"][:1]},
                                   {**it, "votes": 10_000}, {**it, "temperature": -1}, {**it, "order": "sideways"}])
            await self.call(c, "bad", "/v1/judge/pairwise", bad, expect=400)
        else:  # a client that gives up mid-request
            task = asyncio.create_task(c.post("/v1/judge/pairwise", json={
                **it, "votes": 2, "max_tokens": 64, "seed": self.rng.randrange(1 << 30), "cache": False}))
            await asyncio.sleep(self.rng.uniform(0.2, 2.0))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
            self.left += 1

    async def client(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=600) as c:
            while not stop.is_set():
                await self.step(c)

    async def canary(self, stop: asyncio.Event, every: float, started: float) -> None:
        body = {**self.items[0], "votes": 1, "max_tokens": 8, "cache": False, "verdict_probs": False}
        async with httpx.AsyncClient(base_url=self.url, timeout=600) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = await c.post("/v1/judge/pairwise", json=body)
                if r.status_code != 200:
                    self.unexpected.append(f"canary: HTTP {r.status_code}: {r.text[:200]}")
                else:
                    lat = time.perf_counter() - t0
                    self._canary.append(lat)
                    self.canary_seconds.append((time.monotonic() - started, lat))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)

    def close_window(self, t: float, memory: dict[str, float]) -> None:
        lat, self._lat = self._lat, []
        canary, self._canary = self._canary, []
        self.windows.append({"t_s": round(t), **memory, "pairwise": len(lat),
                             "p50_s": round(percentile(lat, 0.5), 3) if lat else None,
                             "canary_p50_s": round(percentile(canary, 0.5), 3) if canary else None,
                             "unexpected_so_far": len(self.unexpected)})


async def run(url: str, proc: Any, minutes: float, clients: int, window: float, seed: int,
              warmup: float = WARMUP_S) -> dict:
    soak = Soak(url, seed)
    stop = asyncio.Event()
    started = time.monotonic()
    start_memory = memory_mib(proc)
    tasks = [asyncio.create_task(soak.client(stop)) for _ in range(clients)]
    tasks.append(asyncio.create_task(soak.canary(stop, 5.0, started)))
    while time.monotonic() - started < minutes * 60:
        await asyncio.sleep(window)
        soak.close_window(time.monotonic() - started, await asyncio.to_thread(memory_mib, proc))
        w = soak.windows[-1]
        print(f"[soak] {w['t_s']:>5}s api {w['api_mib']} MiB engine {w['engine_mib']} MiB, pairwise p50 "
              f"{w['p50_s']} s over {w['pairwise']}, canary p50 {w['canary_p50_s']} s, "
              f"unexpected {w['unexpected_so_far']}", flush=True)
    stop.set()
    await asyncio.gather(*tasks)
    warm = [w for w in soak.windows if w["t_s"] >= warmup] or soak.windows
    growth = warm[-1]["api_mib"] - warm[0]["api_mib"]
    canaries = [lat for t, lat in soak.canary_seconds if t >= warmup] or [lat for _, lat in soak.canary_seconds]
    third = max(1, len(canaries) // 3)
    first, last = percentile(canaries[:third], 0.5), percentile(canaries[-third:], 0.5)
    drift = last / first
    requests = (sum(soak.ok.values()) + soak.expected_errors + len(soak.unexpected) + soak.left
                + len(soak.canary_seconds))
    return {
        "minutes": minutes, "clients": clients, "requests": requests, "answered_ok": soak.ok,
        "expected_400s": soak.expected_errors, "clients_left_mid_request": soak.left,
        "unexpected": len(soak.unexpected), "unexpected_examples": soak.unexpected[:10],
        "memory_start": start_memory, "memory_end": memory_mib(proc),
        "api_growth_after_warmup_mib": round(growth, 1), "canaries": len(soak.canary_seconds),
        "canary_p50_first_third_s": round(first, 3), "canary_p50_last_third_s": round(last, 3),
        "canary_p50_last_third_over_first_third": round(drift, 3),
        "passed": not soak.unexpected and growth < MAX_API_GROWTH_MIB and drift < MAX_P50_DRIFT,
        "windows": soak.windows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=16)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--window", type=float, default=30, help="seconds per sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds before memory and latency count")
    args = ap.parse_args(argv)
    if why := missing_data(PANDALM):  # before starting a server for nothing
        print(why, file=sys.stderr)
        return 2
    prefix = f"rrm-soak-{uuid.uuid4().hex[:6]}:"
    log = Path(tempfile.mkdtemp(prefix="rrm-soak-")) / "server.log"
    env = {"RRM_CACHE_URL": "redis://127.0.0.1:6379/0", "RRM_CACHE_PREFIX": prefix}
    try:
        with server_process("--max-votes", "8", env=env, log=log) as (url, proc):
            result = asyncio.run(run(url, proc, args.minutes, args.clients, args.window, args.seed, args.warmup))
    finally:
        import redis

        client = redis.Redis()
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    result = {"machine": machine(), "command": "python -m benchmarks.soak " + " ".join(
        sys.argv[1:] if argv is None else argv), **result}
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    print(f"wrote {write_result('soak', result)}; server log {log}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
