"""Graceful drain on SIGTERM, through the real serving loop in its own process."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import drain_server
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]


# the real serving loop in its own process: ~15-20 s
@pytest.mark.slow
def test_sigterm_drains_in_flight_work_and_turns_ready_off_first(model_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = drain_server.start(model_dir, port, 3)
    try:
        result: dict[str, httpx.Response] = {}
        body = {"query": "Pick one.", "responses": ["A long answer.", "Short."], "votes": 1}
        worker = threading.Thread(target=lambda: result.setdefault(
            "r", httpx.post(f"{url}/v1/judge/pairwise", json=body, timeout=60)))
        worker.start()
        time.sleep(0.8)  # the vote is now in the engine (3 s)
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.3)
        # Phase 1 (drain delay): still serving, but load balancers are told to go away.
        ready = httpx.get(f"{url}/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["error"]["type"] == "draining"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        # Phase 2: the listener closes; the in-flight request still finishes.
        worker.join(timeout=30)
        assert result["r"].status_code == 200 and result["r"].json()["winner"] == 0
        # uvicorn re-raises the signal it caught once it has shut down cleanly.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert b"Traceback" not in proc.stdout.read()  # type: ignore[union-attr]
        try:
            httpx.get(f"{url}/health", timeout=2)
            raise AssertionError("the server still accepts after shutdown")
        except httpx.ConnectError:
            pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
