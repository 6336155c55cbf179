"""Scale-out through the gateway: one `vllm serve` replica vs two, and prefix-affinity vs
round-robin routing, on ELO requests over real GSM8K best-of-4 candidates.

Replicas are real vLLM CPU servers (bundled model) pinned to one core each, so "two replicas" is
one more engine box, as in production (here they share the machine's memory bandwidth). Arms run
side by side in one run; every replica's prefix cache is reset between arms (vLLM dev endpoint).
The prefix-cache hit rate comes from the replicas' own `vllm:prefix_cache_*` counters.

    .venv/bin/python -m benchmarks.replicas [--questions 8] [--concurrency 4] [--max-tokens 24]

Writes benchmarks/results/replicas.json; the table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._common import RESULTS, free_port, machine, stop_group, write_result
from benchmarks._rank_load import add_workload_args, drive, elo_bodies
from rrm_server import bundled_model


def wait_ok(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not up after {timeout}s")
        time.sleep(1)


@contextlib.contextmanager
def replicas(model: Path, cores: list[str], logs: Path) -> Iterator[list[str]]:
    """Real `vllm serve` replicas (CPU build, bundled model), one per entry of ``cores``
    (VLLM_CPU_OMP_THREADS_BIND values), with vLLM's dev endpoints for prefix-cache resets."""
    procs, urls = [], []
    try:
        for core in cores:
            port = free_port()
            env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": core, "VLLM_SERVER_DEV_MODE": "1"}
            out = (logs / f"replica-core{core}.log").open("wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--port",
                 str(port), "--enforce-eager", "--no-enable-chunked-prefill", "--enable-prefix-caching",
                 "--max-model-len", "4096", "--gpu-memory-utilization", "0.25", "--max-logprobs", "20",
                 # AVX2 CPUs emulate bf16 (~5x slower); rrm-server's in-process engine picks float32 too.
                 "--dtype", "float32"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        for u, p in zip(urls, procs):
            wait_ok(f"{u}/health", p)
        yield urls
    finally:
        for p in procs:
            stop_group(p)


@contextlib.contextmanager
def gateway(model: Path, urls: list[str], routing: str, logs: Path, name: str,
            extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **(extra_env or {}), "RRM_ENGINE": "openai", "RRM_ENGINE_URL": ",".join(urls),
           "RRM_ENGINE_ROUTING": routing,
           "RRM_MODEL": str(model), "RRM_ENGINE_MODEL": str(model), "RRM_PORT": str(port),
           "RRM_MAX_MODEL_LEN": "4096", "RRM_CACHE_ENABLED": "false", "RRM_LOG_LEVEL": "warning"}
    out = (logs / f"gateway-{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rrm_server", "serve"], stdout=out, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ok(f"{url}/ready", proc)
        yield url
    finally:
        stop_group(proc)


def prefix_counters(url: str) -> tuple[float, float]:
    """(queried prompt tokens, hit tokens) from a replica's vLLM metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    got = {"vllm:prefix_cache_queries": 0.0, "vllm:prefix_cache_hits": 0.0}
    for fam in text_string_to_metric_families(text):
        if fam.name in got:
            got[fam.name] += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    return got["vllm:prefix_cache_queries"], got["vllm:prefix_cache_hits"]


def run(questions: int = 4, concurrency: int = 4, max_tokens: int = 16) -> dict:
    model = bundled_model.ensure_bundled_model()
    logs = RESULTS / "replicas-logs"
    logs.mkdir(parents=True, exist_ok=True)
    bodies = elo_bodies(questions, max_tokens)
    arms = [("1 replica", 1, "prefix_affinity"), ("2 replicas, prefix affinity", 2, "prefix_affinity"),
            ("2 replicas, round robin", 2, "round_robin")]
    rows = []
    with replicas(model, ["0", "1"], logs) as urls:
        for name, n, routing in arms:
            used = urls[:n]
            for u in urls:  # every arm starts with cold prefix caches
                httpx.post(f"{u}/reset_prefix_cache", timeout=30).raise_for_status()
            before = [prefix_counters(u) for u in used]
            with gateway(model, used, routing, logs, name.replace(" ", "_").replace(",", "")) as gw:
                result = asyncio.run(drive(gw, bodies, concurrency))
                split = httpx.get(f"{gw}/ready", timeout=10).json()["engine"]
            after = [prefix_counters(u) for u in used]
            queried = sum(a[0] - b[0] for a, b in zip(after, before))
            hits = sum(a[1] - b[1] for a, b in zip(after, before))
            for k in ("prompt_tokens", "cached_prompt_tokens"):  # the pool's usage has no cached counts
                result.pop(k)
            row = {"arm": name, "replicas": n, "routing": routing, **result,
                   "prefix_cache_hit_rate": round(hits / queried, 3) if queried else None,
                   "calls_per_replica": [split.get(f"replica_{i}_requests", 0) for i in range(n)]}
            print(row, flush=True)
            rows.append(row)
    one, two, rr = rows
    summary = {"throughput_ratio_2_vs_1": round(two["comparisons_per_s"] / one["comparisons_per_s"], 2),
               "p50_ratio_2_vs_1": round(two["p50_s"] / one["p50_s"], 2),
               "hit_rate_affinity": two["prefix_cache_hit_rate"], "hit_rate_round_robin": rr["prefix_cache_hit_rate"]}
    return {"rows": rows, "summary": summary,
            "workload": {"questions": questions, "concurrency": concurrency, "max_tokens": max_tokens}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(ap)
    args = ap.parse_args()
    result = run(args.questions, args.concurrency, args.max_tokens)
    out = write_result("replicas", {"machine": machine(), **result,
                                    "command": "python -m benchmarks.replicas " + " ".join(sys.argv[1:])})
    print(result["summary"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
