"""Reliability: faults tried on the real service (vLLM CPU engine, bundled model, a redis-server of
our own), with the figures docs/reliability.md quotes: requests sent, answered, failed, lost, and
the server's memory before and after each case.

    .venv/bin/python -m benchmarks.reliability                 # all cases, ~6 minutes on 2 cores
    .venv/bin/python -m benchmarks.reliability --only overload

Cases: ``engine_kill`` (the engine core process killed under load), ``redis_restart`` (Redis
stopped and restarted under load), ``disconnects`` (clients leaving mid-request, some sharing work
with clients that stay), ``overload`` (a flood far beyond the admission limits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks._common import RESULTS, machine, percentile, server_process, wait_ready, write_result

# The tests' own redis-server launcher (free port, no persistence, stop and restart at will).
from tests.support.redis_server import RedisProcess

CASES = ("engine_kill", "redis_restart", "disconnects", "overload")
# Every generation runs to max_tokens, so work is surely in flight when a fault hits.
FAULT_ENV = {"RRM_ENGINE_IGNORE_EOS": "true", "RRM_ENGINE_WATCH_INTERVAL": "0.2"}


def memory_mib(proc: subprocess.Popen) -> dict[str, float]:
    """RSS of the API process and of the engine processes under it."""
    api = psutil.Process(proc.pid)
    engine = 0
    for child in api.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            engine += child.memory_info().rss
    return {"api_mib": round(api.memory_info().rss / 2**20, 1), "engine_mib": round(engine / 2**20, 1)}


def scrape(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def unfinished(url: str) -> int:
    r = httpx.get(f"{url}/ready", timeout=30)
    return r.json()["engine"]["unfinished_requests"] if r.status_code == 200 else -1


def long_body(seed: int, votes: int, max_tokens: int) -> dict:
    return {"query": f"Tell me a story, number {seed}.", "responses": ["Once upon a time", "It was a dark night"],
            "votes": votes, "max_tokens": max_tokens, "seed": seed, "early_stop": False, "verdict_probs": False}


def small_body(i: int, distinct: int = 1 << 30) -> dict:
    return {"query": f"Which is a fruit? ({i % distinct})", "responses": ["apple", "brick"], "votes": 2,
            "max_tokens": 2, "verdict_probs": False}


class Tally:
    """Requests sent and what became of them."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.lost = 0  # no HTTP answer at all (connection error, client timeout)
        self.latencies: list[float] = []
        self.answered_at: list[float] = []

    def answered_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.answered_at)

    async def post(self, c: httpx.AsyncClient, path: str, body: dict) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await c.post(path, json=body)
        except httpx.HTTPError:
            self.lost += 1
            return None
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        self.answered_at.append(time.monotonic())
        if r.status_code == 200:
            self.latencies.append(time.perf_counter() - t0)
        return r

    def summary(self, expected: tuple[int, ...] = (200,)) -> dict[str, Any]:
        sent = sum(self.statuses.values()) + self.lost
        return {"sent": sent, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "failed": sum(v for k, v in self.statuses.items() if k not in expected), "lost": self.lost,
                "p50_s": round(percentile(self.latencies, 0.5), 3) if self.latencies else None,
                "p99_s": round(percentile(self.latencies, 0.99), 3) if self.latencies else None}


# -- cases --------------------------------------------------------------------------------------
async def engine_kill(url: str, proc: subprocess.Popen) -> dict:
    before = memory_mib(proc)
    inflight = Tally()
    fail_after: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        async def one(i: int) -> None:
            r = await inflight.post(c, "/v1/judge/pairwise", long_body(5000 + i, votes=4, max_tokens=1500))
            if r is not None:
                fail_after.append(time.monotonic() - killed_at)

        killed_at = 0.0
        tasks = [asyncio.create_task(one(i)) for i in range(6)]
        deadline = time.monotonic() + 120
        while await asyncio.to_thread(unfinished, url) < 24:
            assert time.monotonic() < deadline, "the load never reached the engine"
            await asyncio.sleep(0.2)
        (core,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "VLLM::EngineCore"]
        killed_at = time.monotonic()
        core.kill()
        await asyncio.gather(*tasks)
        await asyncio.to_thread(wait_ready, url, proc, Path("server.log"), 600)
        recovery = time.monotonic() - killed_at
        after = Tally()
        await asyncio.gather(*(after.post(c, "/v1/judge/pairwise", small_body(i)) for i in range(20)))
    return {"in_flight_at_kill": inflight.summary(expected=(503,)),
            "slowest_failure_after_kill_s": round(max(fail_after), 3),
            "ready_again_after_s": round(recovery, 1), "after_recovery": after.summary(),
            "restarts": scrape(url).get("rrm_engine_restarts_total"),
            "memory_before": before, "memory_after": memory_mib(proc)}


async def redis_restart(url: str, proc: subprocess.Popen, redis: RedisProcess, seconds: float = 30) -> dict:
    before = memory_mib(proc)
    tally = Tally()
    degraded: list[float] = []  # when responses said the cache was degraded
    stop = asyncio.Event()

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            i = 0
            while not stop.is_set():
                r = await tally.post(c, "/v1/judge/pairwise", small_body(w * 7 + i, distinct=12))
                if r is not None and r.status_code == 200 and r.json()["usage"]["cache"]["status"] == "degraded":
                    degraded.append(time.monotonic())
                i += 1

    async with httpx.AsyncClient(base_url=url, timeout=300) as c:  # warm: every body cached once
        await asyncio.gather(*(c.post("/v1/judge/pairwise", json=small_body(i, distinct=12)) for i in range(12)))
    workers = [asyncio.create_task(worker(w)) for w in range(8)]
    await asyncio.sleep(seconds / 3)
    await asyncio.to_thread(redis.stop)
    down_at = time.monotonic()
    await asyncio.sleep(5)
    await asyncio.to_thread(redis.start)
    up_at = time.monotonic()
    await asyncio.sleep(seconds / 3)
    stop.set()
    await asyncio.gather(*workers)
    return {"load": tally.summary(), "responses_degraded": len(degraded), "redis_down_s": round(up_at - down_at, 1),
            # Degraded answers start when Redis goes and stop once the client has reconnected.
            "first_degraded_after_stop_s": round(min(degraded) - down_at, 2) if degraded else None,
            "last_degraded_after_restart_s": round(max(degraded) - up_at, 2) if degraded else None,
            "answered_while_redis_was_down": tally.answered_between(down_at, up_at),
            "memory_before": before, "memory_after": memory_mib(proc)}


async def disconnects(url: str, proc: subprocess.Popen) -> dict:
    before = memory_mib(proc)
    m0 = await asyncio.to_thread(scrape, url)
    rng = random.Random(7)
    stayers = Tally()
    leavers = 0
    sources: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        async def leave(body: dict, after: float) -> None:
            nonlocal leavers
            task = asyncio.create_task(c.post("/v1/judge/pairwise", json=body))
            await asyncio.sleep(after)
            task.cancel()
            leavers += 1
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task

        async def stay(body: dict, after: float) -> None:
            await asyncio.sleep(after)
            r = await stayers.post(c, "/v1/judge/pairwise", body)
            if r is not None and r.status_code == 200:
                sources.extend(v["source"] for v in r.json()["votes"])

        bodies = [long_body(9000 + i, votes=2, max_tokens=300) for i in range(16)]
        # Clients 0-3 share their work with a client that stays; 4-15 are alone and leave.
        await asyncio.gather(*(leave(b, rng.uniform(1.5, 4.0)) for b in bodies),
                             *(stay(b, 0.5) for b in bodies[:4]))
        left_at = time.monotonic()
        while await asyncio.to_thread(unfinished, url) > 0:
            await asyncio.sleep(0.1)
        idle_after = time.monotonic() - left_at
    m1 = await asyncio.to_thread(scrape, url)
    key = next(k for k in m1 if k.startswith("vllm:num_requests_running"))
    return {"clients_left": leavers, "stayers": stayers.summary(), "stayer_vote_sources": sorted(set(sources)),
            "engine_idle_after_last_client_s": round(idle_after, 2),
            "engine_calls_aborted": m1.get("rrm_engine_calls_aborted_total", 0)
            - m0.get("rrm_engine_calls_aborted_total", 0),
            "vllm_requests_running_after": m1[key],
            "memory_before": before, "memory_after": memory_mib(proc)}


async def overload(url: str, proc: subprocess.Popen, flood: int, limits: tuple[int, int]) -> dict:
    import aiohttp  # httpx's pool costs more CPU than the gateway at thousands of connections

    before = memory_mib(proc)
    peak = dict(before)
    statuses: dict[int, int] = {}
    lost = 0
    wrong_shape = 0
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            m = await asyncio.to_thread(memory_mib, proc)
            for k, v in m.items():
                peak[k] = max(peak[k], v)
            await asyncio.sleep(0.2)

    async def one(s: aiohttp.ClientSession, i: int) -> None:
        nonlocal lost, wrong_shape
        try:
            async with s.post(f"{url}/v1/judge/pairwise", json=small_body(i)) as r:
                body = await r.json()
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status != 200 and set(body.get("error", {})) != {"type", "message", "param", "code"}:
                    wrong_shape += 1
        except (TimeoutError, aiohttp.ClientError):
            lost += 1

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=900)) as s:
        await asyncio.gather(*(one(s, i) for i in range(flood)))
    wall = time.monotonic() - started
    done.set()
    await sampler
    m = await asyncio.to_thread(scrape, url)
    return {"flood": flood, "max_concurrent_requests": limits[0], "max_queued_requests": limits[1],
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "lost": lost,
            "errors_not_in_the_error_shape": wrong_shape, "wall_s": round(wall, 1),
            "rejected_metric": m.get('rrm_requests_rejected_total{reason="queue_full"}'),
            "memory_before": before, "memory_peak": peak, "memory_after": memory_mib(proc)}


# -- plumbing -----------------------------------------------------------------------------------
@contextlib.contextmanager
def own_redis() -> Iterator[RedisProcess]:
    r = RedisProcess()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--flood", type=int, default=3000, help="overload: concurrent requests")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(), "command": "python -m benchmarks.reliability "
                              + " ".join(sys.argv[1:] if argv is None else argv)}
    log_dir = Path(tempfile.mkdtemp(prefix="rrm-reliability-"))
    faults = [c for c in args.only if c != "overload"]
    if faults:
        with own_redis() as redis, server_process("--max-votes", "16", log=log_dir / "faults.log",
                                                  env={**FAULT_ENV, "RRM_CACHE_URL": redis.url,
                                                       "RRM_CACHE_TIMEOUT": "0.1"}) as (url, proc):
            for case in ("redis_restart", "disconnects", "engine_kill"):  # the kill last
                if case in faults:
                    print(f"[reliability] {case} ...", flush=True)
                    fn = {"redis_restart": lambda: redis_restart(url, proc, redis),
                          "disconnects": lambda: disconnects(url, proc),
                          "engine_kill": lambda: engine_kill(url, proc)}[case]
                    result[case] = {"date": machine()["date"], **asyncio.run(fn())}
                    print(json.dumps(result[case]), flush=True)
    if "overload" in args.only:
        limits = (8, 64)
        with server_process("--max-concurrent-requests", str(limits[0]), "--max-queued-requests", str(limits[1]),
                            log=log_dir / "overload.log", env={"RRM_CACHE_ENABLED": "false"}) as (url, proc):
            print("[reliability] overload ...", flush=True)
            result["overload"] = {"date": machine()["date"], **asyncio.run(overload(url, proc, args.flood, limits))}
            print(json.dumps(result["overload"]), flush=True)
    out = RESULTS / "reliability.json"
    if out.exists() and set(args.only) != set(CASES):  # keep the cases not re-run (each has its date)
        result = {**json.loads(out.read_text()), **result}
    print(f"wrote {write_result('reliability', result)}; server logs in {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
