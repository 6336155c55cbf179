"""Scale-out on Ray Serve (``rrm-server serve --ray``), side by side in one run, on ELO requests over
real GSM8K best-of-4 candidates (the workload of benchmarks/replicas.py):

* the in-process engine vs Ray with one engine replica, both engines on core 0 (the cost of the Ray
  hop: the proxy, the gateway replica, the handle call per comparison);
* Ray with one replica vs two, each pinned to a core of its own;
* two replicas with our prefix-affinity router vs Ray's default power-of-two router (prefix-cache hit
  rate from the replicas' own vLLM per-request counters, as the responses' usage reports them);
* time from start to ready, for each Ray arm.

Each Ray arm is its own local Ray instance (cold prefix caches), started as a user would.

    .venv/bin/python -m benchmarks.ray_scaleout [--questions 4] [--concurrency 4] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks._common import RESULTS, free_port, machine, percentile, write_result
from benchmarks.strategy_study import load_questions
from rrm_server import bundled_model

ARMS = {  # name: (ray?, engine replicas, routing)
    "in-process": (False, 1, "prefix_affinity"),
    "ray, 1 replica": (True, 1, "prefix_affinity"),
    "ray, 2 replicas, prefix affinity": (True, 2, "prefix_affinity"),
    "ray, 2 replicas, power of two": (True, 2, "power_of_two"),
}


@contextlib.contextmanager
def service(name: str, ray: bool, replicas: int, routing: str, logs: Path) -> Iterator[tuple[str, float]]:
    """The service as a user starts it; yields its URL and the seconds it took to be ready."""
    port = free_port()
    env = {**os.environ, "RRM_CACHE_ENABLED": "false", "RRM_LOG_LEVEL": "warning", "RRM_LOG_FORMAT": "text",
           "RRM_KV_CACHE_GIB": "1", "RRM_ENGINE_ROUTING": routing}
    env.pop("RAY_ADDRESS", None)
    flags = ["--port", str(port)]
    if ray:
        flags += ["--ray", "--engine-replicas", str(replicas), "--engine-cpus", "1"]
    else:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "0"  # the same one core as a single Ray replica's
    log = (logs / f"{name.replace(' ', '_').replace(',', '')}.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "rrm_server", "serve", *flags], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name}: exited with {proc.returncode}; see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            if time.monotonic() - started > 900:
                raise RuntimeError(f"{name}: not ready after 900 s")
            time.sleep(0.5)
        yield url, time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def drive(url: str, bodies: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []
    totals = {"engine_calls": 0, "prompt_tokens": 0, "cached_prompt_tokens": 0, "failed": 0, "failed_judgments": 0}
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
            totals["failed_judgments"] += usage["failed_judgments"]
            for k in ("engine_calls", "prompt_tokens", "cached_prompt_tokens"):
                totals[k] += usage[k]

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=3600) as c:
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"requests": len(bodies), "failed": totals["failed"], "engine_calls": totals["engine_calls"],
            "failed_judgments": totals["failed_judgments"], "seconds": round(wall, 1),
            "comparisons_per_s": round(totals["engine_calls"] / wall, 3),
            "prefix_cache_hit_rate": round(totals["cached_prompt_tokens"] / max(1, totals["prompt_tokens"]), 3),
            "p50_s": round(percentile(latencies, 0.5), 2)}


def run(questions: int = 4, concurrency: int = 4, max_tokens: int = 16, arms: tuple[str, ...] = tuple(ARMS)) -> dict:
    bundled_model.ensure_bundled_model()  # converted once, before any replica looks for it
    logs = RESULTS / "ray_scaleout-logs"
    logs.mkdir(parents=True, exist_ok=True)
    bodies = [{"query": q, "responses": texts, "method": "elo", "votes": 2, "order": "both", "early_stop": False,
               "seed": i, "max_tokens": max_tokens, "cache": False, "verdict_probs": False}
              for i, (q, texts, _) in enumerate(load_questions(4)[:questions])]
    rows = []
    for name in arms:
        ray, replicas, routing = ARMS[name]
        with service(name, ray, replicas, routing, logs) as (url, ready_s):
            result = asyncio.run(drive(url, bodies, concurrency))
        row = {"arm": name, "replicas": replicas, "routing": routing, "ready_s": round(ready_s, 1), **result}
        print(row, flush=True)
        rows.append(row)
    by = {r["arm"]: r for r in rows}

    def ratio(a: str, b: str) -> float | None:
        if a in by and b in by and by[b]["comparisons_per_s"]:
            return round(by[a]["comparisons_per_s"] / by[b]["comparisons_per_s"], 3)
        return None

    summary = {"ray_hop_ratio": ratio("ray, 1 replica", "in-process"),
               "two_vs_one_replica": ratio("ray, 2 replicas, prefix affinity", "ray, 1 replica"),
               "affinity_vs_power_of_two": ratio("ray, 2 replicas, prefix affinity", "ray, 2 replicas, power of two"),
               "hit_rate_affinity": by.get("ray, 2 replicas, prefix affinity", {}).get("prefix_cache_hit_rate"),
               "hit_rate_power_of_two": by.get("ray, 2 replicas, power of two", {}).get("prefix_cache_hit_rate")}
    return {"rows": rows, "summary": summary,
            "workload": {"questions": questions, "concurrency": concurrency, "max_tokens": max_tokens}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = ap.parse_args()
    result = run(args.questions, args.concurrency, args.max_tokens, tuple(args.arms))
    out = write_result("ray_scaleout", {"machine": machine(), **result,
                                        "command": "python -m benchmarks.ray_scaleout " + " ".join(sys.argv[1:])})
    print(result["summary"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
