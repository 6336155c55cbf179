"""The real gateway (real HTTP, real tokenizer and prompt building, real strategies and voting) in its
own process, on a simulated engine that answers each judgment after ``--latency`` seconds (0: at once).
Used by the gateway-overhead and load-curve benchmarks; the load generator must not share its GIL.

    python -m benchmarks.simulated_server --port 8000 [--latency 0] [--settings '{"max_votes": 32}']
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from benchmarks._common import free_port


@contextlib.contextmanager
def simulated_gateway(latency: float = 0.0, profile: str | None = None, **settings: object) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.simulated_server", "--port", str(port), "--latency", str(latency),
           "--settings", json.dumps(settings)]
    if profile:
        cmd += ["--profile", profile]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("simulated gateway exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("simulated gateway not ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down, a profiler writes its report
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    import uvicorn
    from transformers import AutoTokenizer

    from benchmarks.simulated_judge import LatencyJudge
    from rrm_server import bundled_model
    from rrm_server.api.app import build_app
    from rrm_server.ops.logging import configure_logging
    from rrm_server.settings import Settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--settings", default="{}")
    ap.add_argument("--profile", help="write a pyinstrument HTML profile of the server here on exit")
    args = ap.parse_args()
    model = bundled_model.ensure_bundled_model()
    fields = {"model": str(model), "model_fingerprint": "bench", "cache_enabled": False, "max_responses": 64,
              "log_level": "warning", **json.loads(args.settings)}
    settings = Settings(**fields)
    configure_logging(settings.log_level, "json")
    app = build_app(settings, engine=LatencyJudge(latency=args.latency),
                    tokenizer=AutoTokenizer.from_pretrained(str(model)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning",
                                           access_log=False, log_config=None))
    if not args.profile:
        server.run()
        return
    import signal

    from pyinstrument import Profiler

    # uvicorn re-raises the SIGTERM it caught once it has shut down; let that return here so the
    # profile gets written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = Profiler(async_mode="disabled")
    profiler.start()
    try:
        server.run()
    finally:
        profiler.stop()
        with open(args.profile, "w") as f:
            f.write(profiler.output_html())
        with open(args.profile + ".txt", "w") as f:
            f.write(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
