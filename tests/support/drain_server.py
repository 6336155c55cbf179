"""``python -m tests.support.drain_server MODEL_DIR PORT DELAY [ON_FAILURE]``: the real CLI serving loop
(``rrm_server.cli.run_server``: signals, drain, exit on engine failure) around a scripted engine that
takes DELAY s per vote. A query of ``crash`` makes the scripted engine crash (as if its process died)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from transformers import AutoTokenizer

from rrm_server.api.app import build_app
from rrm_server.cli import run_server
from rrm_server.engine import EngineUnavailable
from rrm_server.ops.logging import configure_logging
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine, Shown, prefer

ROOT = Path(__file__).resolve().parents[2]


def start(model_dir: object, port: int, delay: float, on_failure: str = "restart") -> subprocess.Popen:
    """Run this module in its own process (and session) and wait until its /ready is 200."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.drain_server", str(model_dir), str(port),
                             str(delay), on_failure], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "test server never became ready"
        time.sleep(0.1)


if __name__ == "__main__":
    model_dir, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    on_failure = sys.argv[4] if len(sys.argv) > 4 else "restart"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    settings = Settings(port=port, drain_delay=1.5, drain_timeout=20, cache_enabled=False,
                        engine_on_failure=on_failure, engine_watch_interval=0.1)
    configure_logging("info", "json")
    engine = ScriptedEngine(tokenizer, delay=delay)
    judge = prefer(lambda a, b: len(a) >= len(b))

    def script(s: Shown) -> str:
        if s.query == "crash":
            engine.crashed = True
            raise EngineUnavailable("scripted engine process exited")
        return judge(s)

    engine.script = script
    run_server(build_app(settings, engine=engine, tokenizer=tokenizer), settings)
