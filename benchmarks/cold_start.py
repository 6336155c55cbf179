"""Cold start and memory of the embedded default (`rrm-server serve`: bundled model, in-process vLLM):
seconds from the command to /health and to /ready, and resident memory of the gateway process and of
the engine processes it starts. Also the memory of a gateway without an engine (the simulated one).

    .venv/bin/python -m benchmarks.cold_start
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import psutil

from benchmarks._common import RESULTS, free_port, machine, write_result


def rss_mib(proc: psutil.Process) -> float:
    return round(proc.memory_info().rss / 2**20, 1)


def run() -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (RESULTS / "cold_start-server.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rrm_server", "serve", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "RRM_LOG_LEVEL": "warning"},
                            start_new_session=True)
    health = ready = None
    try:
        while ready is None:
            if proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if health is None and httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    health = time.perf_counter() - t0
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    ready = time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 900:
                raise RuntimeError("not ready after 900 s")
            time.sleep(0.2)
        httpx.post(f"{url}/v1/judge/pairwise", json={"query": "Hi?", "responses": ["Hello.", "Bye."],
                                                      "max_tokens": 8, "cache": False}, timeout=300)
        main = psutil.Process(proc.pid)
        children = main.children(recursive=True)
        result = {"seconds_to_health": round(health or ready, 2), "seconds_to_ready": round(ready, 2),
                  "gateway_rss_mib": rss_mib(main),
                  "engine_processes": [{"name": c.name(), "rss_mib": rss_mib(c)} for c in children],
                  "total_rss_mib": round(rss_mib(main) + sum(rss_mib(c) for c in children), 1)}
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
    from benchmarks.simulated_server import simulated_gateway

    with simulated_gateway(0.0) as url:
        httpx.post(f"{url}/v1/judge/pairwise", json={"query": "Hi?", "responses": ["Hello.", "Bye."]})
        pid = [p for p in psutil.Process().children() if "simulated_server" in " ".join(p.cmdline())][0]
        result["gateway_without_engine_rss_mib"] = rss_mib(pid)
    return result


def main() -> None:
    result = run()
    out = write_result("cold_start", {"machine": machine(), **result, "command": "python -m benchmarks.cold_start"})
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
