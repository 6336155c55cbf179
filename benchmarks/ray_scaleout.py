"""Scale-out on Ray Serve, side by side in one run, on the ELO workload of benchmarks/replicas.py
(benchmarks/_rank_load.py), sent in ``--waves`` waves (a later wave re-judges the same comparisons
with new seeds, as a trainer re-judging a group does):

* the in-process engine vs Ray with one engine replica, both engines on core 0 (the cost of the Ray
  hop: the proxy, the gateway replica, the handle call per comparison);
* Ray with one replica vs two, each pinned to a core of its own;
* two replicas with our prefix-affinity router vs Ray's default power-of-two router (prefix-cache hit
  rate from the replicas' own vLLM per-request counters, as the responses' usage reports them; the
  later waves are where affinity can differ);
* time from start to ready for each arm, and for `serve run deploy/ray/serve.cpu.yaml` (the
  cluster path: a Serve config file, two replicas).

Each Ray arm is its own local Ray instance (cold prefix caches), started as a user would.

    .venv/bin/python -m benchmarks.ray_scaleout [--questions 4] [--concurrency 4] [--max-tokens 16] [--waves 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._common import RESULTS, ROOT, free_port, machine, server_process, stop_group, wait_ready, write_result
from benchmarks._rank_load import add_workload_args, drive, elo_bodies
from rrm_server import bundled_model

ARMS = {  # name: (ray?, engine replicas, routing)
    "in-process": (False, 1, "prefix_affinity"),
    "ray, 1 replica": (True, 1, "prefix_affinity"),
    "ray, 2 replicas, prefix affinity": (True, 2, "prefix_affinity"),
    "ray, 2 replicas, power of two": (True, 2, "power_of_two"),
}
SERVE_RUN = "serve run deploy/ray/serve.cpu.yaml"


def arm_flags(ray: bool, replicas: int, routing: str) -> tuple[list[str], dict[str, str]]:
    env = {"RRM_CACHE_ENABLED": "false", "RRM_LOG_LEVEL": "warning", "RRM_LOG_FORMAT": "text",
           "RRM_KV_CACHE_GIB": "1", "RRM_ENGINE_ROUTING": routing}
    if not ray:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "0"  # the same one core as a single Ray replica's
        return [], env
    return ["--ray", "--engine-replicas", str(replicas), "--engine-cpus", "1"], env


def run_arm(name: str, bodies: list[list[dict]], concurrency: int, logs: Path) -> dict:
    ray, replicas, routing = ARMS[name]
    flags, env = arm_flags(ray, replicas, routing)
    log = logs / f"{name.replace(' ', '_').replace(',', '')}.log"
    started = time.monotonic()
    with server_process(*flags, env=env, log=log) as (url, _):
        ready_s = time.monotonic() - started
        waves = [asyncio.run(drive(url, wave, concurrency)) for wave in bodies]
    calls, seconds = sum(w["engine_calls"] for w in waves), sum(w["seconds"] for w in waves)
    prompt, cached = sum(w["prompt_tokens"] for w in waves), sum(w["cached_prompt_tokens"] for w in waves)
    return {"arm": name, "replicas": replicas, "routing": routing, "ready_s": round(ready_s, 1),
            "requests": sum(w["requests"] for w in waves), "failed": sum(w["failed"] for w in waves),
            "failed_judgments": sum(w["failed_judgments"] for w in waves), "engine_calls": calls,
            "seconds": round(seconds, 1), "comparisons_per_s": round(calls / seconds, 3),
            "prefix_cache_hit_rate": round(cached / max(1, prompt), 3),
            "hit_rate_by_wave": [w["prefix_cache_hit_rate"] for w in waves],
            "p50_s_by_wave": [w["p50_s"] for w in waves]}


def serve_run_ready(logs: Path) -> float:
    """Seconds from `serve run` on the CPU config (its port moved to a free one) to /ready 200."""
    config = yaml.safe_load((ROOT / "deploy/ray/serve.cpu.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"][0]["args"].update(cache_enabled=False, log_level="warning")
    serve = Path(sys.executable).with_name("serve")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
    log = logs / "serve_run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(serve), "run", f.name], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        return wait_ready(f"http://127.0.0.1:{port}", proc, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # serve run's Ctrl-C: delete the app, stop its Ray instance
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        stop_group(proc, grace=30)  # whatever Ray left in the group
        os.unlink(f.name)


def ratio(by: dict[str, dict], a: str, b: str) -> float | None:
    if a in by and b in by and by[b]["comparisons_per_s"]:
        return round(by[a]["comparisons_per_s"] / by[b]["comparisons_per_s"], 3)
    return None


def run(questions: int = 4, concurrency: int = 4, max_tokens: int = 16, waves: int = 2,
        arms: tuple[str, ...] = tuple(ARMS), serve_run: bool = True) -> dict:
    bundled_model.ensure_bundled_model()  # converted once, before any replica looks for it
    os.environ.pop("RAY_ADDRESS", None)  # every Ray arm is a new local instance
    logs = RESULTS / "ray_scaleout-logs"
    logs.mkdir(parents=True, exist_ok=True)
    bodies = [elo_bodies(questions, max_tokens, wave) for wave in range(waves)]
    rows = []
    for name in arms:
        rows.append(run_arm(name, bodies, concurrency, logs))
        print(rows[-1], flush=True)
    by = {r["arm"]: r for r in rows}
    affinity, p2 = "ray, 2 replicas, prefix affinity", "ray, 2 replicas, power of two"
    summary = {"ray_hop_ratio": ratio(by, "ray, 1 replica", "in-process"),
               "two_vs_one_replica": ratio(by, affinity, "ray, 1 replica"),
               "affinity_vs_power_of_two": ratio(by, affinity, p2),
               "hit_rate_by_wave_affinity": by.get(affinity, {}).get("hit_rate_by_wave"),
               "hit_rate_by_wave_power_of_two": by.get(p2, {}).get("hit_rate_by_wave")}
    if serve_run:
        summary["serve_run_ready_s"] = round(serve_run_ready(logs), 1)
        print({"serve_run_ready_s": summary["serve_run_ready_s"]}, flush=True)
    return {"rows": rows, "summary": summary, "workload": {"questions": questions, "concurrency": concurrency,
                                                           "max_tokens": max_tokens, "waves": waves}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_args(ap)
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--no-serve-run", dest="serve_run", action="store_false", help=f"skip timing `{SERVE_RUN}`")
    args = ap.parse_args()
    result = run(args.questions, args.concurrency, args.max_tokens, args.waves, tuple(args.arms), args.serve_run)
    out = write_result("ray_scaleout", {"machine": machine(), **result,
                                        "command": "python -m benchmarks.ray_scaleout " + " ".join(sys.argv[1:])})
    print(result["summary"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
