"""Engine supervision: a crashed engine fails in-flight work with 503 at once, /ready turns false,
and the runtime restarts it within its budget, or gives up so a supervisor restarts the process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.engine import EngineUnavailable
from rrm_server.settings import Settings
from tests.support import drain_server
from tests.support.engines import ScriptedEngine, Shown, prefer
from tests.support.server import free_port, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
PAIR = {"query": "q", "responses": ["a", "bb"], "cache": False}


def crash_on(engine: ScriptedEngine, query: str = "crash"):  # type: ignore[no-untyped-def]
    """A judge that dies (as if its process was killed) when it is shown ``query``."""
    judge = prefer(lambda a, b: len(a) >= len(b))

    def script(s: Shown) -> str:
        if s.query == query:
            engine.crashed = True
            raise EngineUnavailable("engine core process exited")
        return judge(s)

    return script


@contextmanager
def service(model_dir, tokenizer, **overrides) -> Iterator[tuple[str, ScriptedEngine, object]]:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer)
    engine.script = crash_on(engine)
    settings = Settings(model=str(model_dir), engine_watch_interval=0.05, **overrides)
    app = build_app(settings, engine=engine, tokenizer=tokenizer)
    with serve_in_thread(app) as url:
        yield url, engine, app.state.runtime


def wait_status(url: str, path: str, status: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}{path}")
        if r.status_code == status:
            return r
        assert time.monotonic() < deadline, (path, r.status_code, r.text)
        time.sleep(0.02)


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_crash_fails_in_flight_requests_fast_then_the_engine_is_restarted(model_dir, tokenizer):
    with service(model_dir, tokenizer) as (url, engine, runtime):
        engine.delay = 0.3
        restarts_before = metric(url, "rrm_engine_restarts_total")

        async def go():  # type: ignore[no-untyped-def]
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                slow = [c.post("/v1/judge/pairwise", json={**PAIR, "query": f"q{i}", "votes": 3}) for i in range(4)]
                crash = c.post("/v1/judge/pairwise", json={**PAIR, "query": "crash"})
                return await asyncio.gather(crash, *slow)

        engine.start_delay = 1.0  # the restart takes a while: /ready must say so meanwhile
        started = time.monotonic()
        rs = asyncio.run(go())
        # Requests in flight when the engine died fail at once with a clear 503, none hangs.
        assert time.monotonic() - started < 5
        for r in rs:
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["type"] == "engine_unavailable", err
        assert "engine core process exited" in rs[0].json()["error"]["message"]
        ready = wait_status(url, "/ready", 503)
        assert ready.json()["error"]["type"] == "engine_unavailable"
        during = httpx.post(f"{url}/v1/judge/pairwise", json=PAIR)
        assert during.status_code == 503 and "GET /ready" in during.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200  # alive: no supervisor action needed
        wait_status(url, "/ready", 200)
        assert engine.starts == 2 and len(runtime.restarts) == 1  # type: ignore[attr-defined]
        assert metric(url, "rrm_engine_restarts_total") == restarts_before + 1
        after = httpx.post(f"{url}/v1/judge/pairwise", json=PAIR, timeout=30)
        assert after.status_code == 200 and after.json()["winner"] == 1


def test_restart_budget_spent_turns_health_red(model_dir, tokenizer):
    with service(model_dir, tokenizer, engine_max_restarts=1) as (url, engine, runtime):
        fatal: list[str] = []
        runtime.on_fatal = fatal.append  # type: ignore[attr-defined]
        assert httpx.post(f"{url}/v1/judge/pairwise", json={**PAIR, "query": "crash"}).status_code == 503
        wait_status(url, "/ready", 200)
        assert httpx.post(f"{url}/v1/judge/pairwise", json={**PAIR, "query": "crash"}).status_code == 503
        health = wait_status(url, "/health", 503)
        err = health.json()["error"]
        assert err["type"] == "engine_failed" and "1 restarts in the last 600 s" in err["message"]
        assert fatal and "supervisor" in fatal[0]
        assert engine.starts == 2  # no second restart
        r = httpx.post(f"{url}/v1/judge/pairwise", json=PAIR)
        assert r.status_code == 503 and r.json()["error"]["type"] == "engine_failed"
        assert httpx.get(f"{url}/ready").json()["error"]["type"] == "engine_failed"


# the real serving loop in its own process: ~15-20 s
@pytest.mark.slow
def test_exit_policy_stops_the_server_with_a_failure_status(model_dir):
    """The real serving loop: --engine-on-failure exit ends the process with status 3."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = drain_server.start(model_dir, port, 0, "exit")
    try:
        r = httpx.post(f"{url}/v1/judge/pairwise", json={**PAIR, "query": "crash"}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["type"] == "engine_unavailable"
        assert proc.wait(timeout=60) == 3
        out = proc.stdout.read().decode()  # type: ignore[union-attr]
        assert "exiting so a supervisor restarts the server" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
