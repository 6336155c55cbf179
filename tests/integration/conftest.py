"""The real service: `rrm-server serve` on the bundled model and the vLLM CPU engine, started once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.server import free_port

START_TIMEOUT = 600  # torch-free cold start is ~30-60 s here; leave room for a slow, busy machine


class RealServer:
    def __init__(self, url: str, log: Path, proc: subprocess.Popen) -> None:
        self.url = url
        self.log = log
        self.proc = proc
        self.prefix = ""

    def post(self, path: str, body: object, timeout: float = 300) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def launch(log: Path, env: dict[str, str], args: list[str]) -> RealServer:
    """Start `rrm-server serve` (real engine) in its own process group and wait for /ready."""
    port = free_port()
    env = {**os.environ, "RRM_PORT": str(port), "RRM_LOG_LEVEL": "info", **env}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rrm_server", "serve", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = RealServer(f"http://127.0.0.1:{port}", log, proc)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rrm-server exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
            try:
                if httpx.get(f"{server.url}/ready", timeout=5).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rrm-server not ready after {START_TIMEOUT}s:\n{server.log_text()[-4000:]}")
            time.sleep(1)
    except BaseException:
        stop(server)
        raise


def stop(server: RealServer) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:  # anything vLLM left behind in the server's process group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def real_server(tmp_path_factory, model_dir) -> RealServer:  # type: ignore[no-untyped-def]
    log = tmp_path_factory.mktemp("real-server") / "server.log"
    # The real Redis server, under a key prefix of this run's own (removed afterwards).
    prefix = f"rrm-test-{uuid.uuid4().hex[:8]}:"
    server = launch(log, {"RRM_CACHE_URL": "redis://127.0.0.1:6379/0", "RRM_CACHE_PREFIX": prefix},
                    ["--max-votes", "16"])
    server.prefix = prefix
    try:
        yield server
    finally:
        keys = list(redis.Redis().scan_iter(match=f"{prefix}*"))
        if keys:
            redis.Redis().delete(*keys)
        stop(server)
