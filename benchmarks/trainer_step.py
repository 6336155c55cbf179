"""A simulated RL trainer step: 64 prompts x 8 samples scored by rrm-server, sent the OpenRLHF way
(one sample per request to /get_reward in group mode, as each finishes generating) vs the same groups
through one /v1/rewards call once all are generated. Real gateway over real HTTP, real tokenizer;
the judge answers each judgment after a fixed latency (benchmarks/simulated_judge.py), so the
figures isolate scheduling and waiting.

    .venv/bin/python -m benchmarks.trainer_step [--prompts 64] [--samples 8] [--spread 5] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time

import httpx
import uvicorn

from benchmarks._common import free_port, machine, percentile, write_result
from benchmarks.simulated_judge import LatencyJudge
from rrm_server import bundled_model
from rrm_server.api.app import build_app
from rrm_server.settings import Settings


def run_server(port: int, samples: int, latency: float, group_wait: float) -> None:
    """The gateway in its own process (the load generator must not share its GIL)."""
    from transformers import AutoTokenizer

    model = bundled_model.ensure_bundled_model()
    engine = LatencyJudge(latency=latency)
    settings = Settings(model=str(model), model_fingerprint="bench", reward_mode="group",
                        reward_group_size=samples, reward_group_wait=group_wait, reward_votes=1,
                        cache_enabled=False, max_responses=64)
    app = build_app(settings, engine=engine, tokenizer=AutoTokenizer.from_pretrained(str(model)))

    @app.get("/bench/calls")
    async def calls() -> dict:
        return {"calls": engine.calls}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_server(args) -> tuple[str, subprocess.Popen]:  # type: ignore[no-untyped-def]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.trainer_step", "--serve", str(port),
                             "--samples", str(args.samples), "--latency", str(args.latency),
                             "--group-wait", str(args.group_wait)])
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def workload(prompts: int, samples: int, spread: float, seed: int = 0):  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    out = []
    for p in range(prompts):
        prompt = f"<|im_start|>user\nProblem {p}: compute {p} * 7 + 3.<|im_end|>\n<|im_start|>assistant\n"
        for s in range(samples):
            text = f"Attempt {s}: {p} * 7 = {7 * p}, plus 3 -> {7 * p + 3 + s % 3}."
            out.append((rnd.uniform(0, spread), p, prompt, text))
    return out


async def via_get_reward(url: str, work) -> dict:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    latencies, arrivals = [], {}

    async def one(c: httpx.AsyncClient, at: float, p: int, prompt: str, text: str) -> None:
        await asyncio.sleep(at)
        arrivals.setdefault(p, []).append(time.perf_counter() - t0)
        sent = time.perf_counter()
        r = await c.post("/get_reward", json={"query": [prompt + text + "<|im_end|>"], "prompts": [prompt]})
        r.raise_for_status()
        latencies.append(time.perf_counter() - sent)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=1024)) as c:
        await asyncio.gather(*(one(c, *w) for w in work))
    wall = time.perf_counter() - t0
    spans = [max(a) - min(a) for a in arrivals.values()]
    return {"wall_s": round(wall, 2), "sample_latency_p50_s": round(percentile(latencies, 0.5), 2),
            "sample_latency_p99_s": round(percentile(latencies, 0.99), 2),
            "group_fill_wait_mean_s": round(sum(spans) / len(spans), 2)}


async def via_v1_rewards(url: str, work) -> dict:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    await asyncio.sleep(max(w[0] for w in work))  # the batch API waits for the whole step's samples
    groups: dict[int, dict] = {}
    for _, p, _prompt, text in work:
        groups.setdefault(p, {"query": f"Problem {p}: compute {p} * 7 + 3.", "responses": []})["responses"].append(text)
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        sent = time.perf_counter()
        r = await c.post("/v1/rewards", json={"groups": list(groups.values()), "votes": 1})
        r.raise_for_status()
    return {"wall_s": round(time.perf_counter() - t0, 2), "call_s": round(time.perf_counter() - sent, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--spread", type=float, default=5.0, help="samples finish generating over this many seconds")
    ap.add_argument("--latency", type=float, default=0.3, help="seconds per judgment")
    ap.add_argument("--group-wait", type=float, default=10.0)
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return run_server(args.serve, args.samples, args.latency, args.group_wait)
    work = workload(args.prompts, args.samples, args.spread)
    results = {}
    for name, runner in (("get_reward_group_mode", via_get_reward), ("v1_rewards_batch", via_v1_rewards)):
        url, proc = start_server(args)
        try:
            out = asyncio.run(runner(url, work))
            out["engine_calls"] = httpx.get(f"{url}/bench/calls").json()["calls"]
        finally:
            proc.terminate()
            proc.wait()
        results[name] = out
        print(name, json.dumps(out))
    result = {"machine": machine(), "command": "python -m benchmarks.trainer_step", "args": vars(args),
              "results": results}
    write_result("trainer_step", result)


if __name__ == "__main__":
    main()
