"""Faults on the real service (vLLM CPU engine, a real redis-server of the tests' own): Redis stopped
and restarted under load, clients leaving mid-request, and the engine's processes killed.

This module owns its server (it kills the engine on purpose) with ``ignore_eos`` on, so every
generation runs to its ``max_tokens`` and is surely still running when a fault is injected.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import psutil
import pytest

from tests.integration.conftest import RealServer, launch, stop

pytestmark = [pytest.mark.engine, pytest.mark.redis]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, redis_proc) -> RealServer:  # type: ignore[no-untyped-def]
    log = tmp_path_factory.mktemp("faulty") / "server.log"
    server = launch(log, {"RRM_CACHE_URL": redis_proc.url, "RRM_CACHE_PREFIX": "faults:",
                          "RRM_ENGINE_IGNORE_EOS": "true", "RRM_ENGINE_WATCH_INTERVAL": "0.2",
                          "RRM_CACHE_TIMEOUT": "0.1"}, ["--max-votes", "16"])
    try:
        yield server
    finally:
        stop(server)


def scrape(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def unfinished(url: str) -> int:
    r = httpx.get(f"{url}/ready", timeout=10)
    return r.json()["engine"]["unfinished_requests"] if r.status_code == 200 else -1


async def until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def engine_processes(server: RealServer, kind: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.proc.pid).children(recursive=True) if p.name() == f"VLLM::{kind}"]


def long_body(seed: int, votes: int, max_tokens: int = 1500) -> dict:
    return {"query": f"Tell a story ({seed}).", "responses": ["Once upon a time", "It was a dark night"],
            "votes": votes, "max_tokens": max_tokens, "seed": seed, "early_stop": False, "verdict_probs": False,
            # No thinking budget and no rescue: each vote is one engine request running to max_tokens.
            "max_thinking_tokens": None, "rescue_invalid": False}


def test_redis_stopped_and_restarted_under_load_fails_no_request(faulty, redis_proc):
    codes: list[int] = []
    statuses: list[str] = []

    async def load(worker: int, stop_at: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=faulty.url, timeout=120) as c:
            i = 0
            while not stop_at.is_set():
                body = {"query": f"Which is a fruit? ({(worker + i) % 6})", "responses": ["apple", "brick"],
                        "votes": 2, "max_tokens": 2, "verdict_probs": False}
                r = await c.post("/v1/judge/pairwise", json=body)
                codes.append(r.status_code)
                if r.status_code == 200:
                    statuses.append(r.json()["usage"]["cache"]["status"])
                i += 1

    async def go() -> None:
        stop_at = asyncio.Event()
        workers = [asyncio.create_task(load(w, stop_at)) for w in range(4)]
        # Under load before the fault: wait for answers (a float32 engine on an AVX2 box can take
        # longer than a fixed few seconds to answer the first ones), then stop Redis.
        for _ in range(600):
            if len(statuses) >= 4:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        await asyncio.to_thread(redis_proc.stop)
        await asyncio.sleep(4)
        await asyncio.to_thread(redis_proc.start)
        await asyncio.sleep(4)
        stop_at.set()
        await asyncio.gather(*workers)

    asyncio.run(go())
    assert len(codes) >= 8 and set(codes) == {200}, codes
    assert "degraded" in statuses and statuses[0] == "ok", statuses
    deadline = time.monotonic() + 15  # the client reconnects by itself
    while True:
        body = {"query": "Which is a fruit? (0)", "responses": ["apple", "brick"], "votes": 2, "max_tokens": 2,
                "verdict_probs": False}
        cache = faulty.post("/v1/judge/pairwise", body).json()["usage"]["cache"]
        if cache["status"] == "ok" and cache["hits"] == 2:
            break
        assert time.monotonic() < deadline, cache
        time.sleep(0.3)


def test_a_leaving_client_aborts_its_engine_work_but_not_work_shared_with_others(faulty):
    seed = random.randrange(1 << 30)
    before = scrape(faulty.url)

    async def go() -> tuple[httpx.Response, dict[str, float]]:
        async with httpx.AsyncClient(base_url=faulty.url, timeout=600) as c:
            # Shared: B asks for exactly what A is computing, then A leaves; B still gets it.
            shared = long_body(seed, votes=2, max_tokens=200)
            a = asyncio.create_task(c.post("/v1/judge/pairwise", json=shared))
            await until(lambda: unfinished(faulty.url) >= 2, 120, "A's votes never reached the engine")
            b = asyncio.create_task(c.post("/v1/judge/pairwise", json=shared))
            await asyncio.sleep(1.0)  # B has joined A's flights
            a.cancel()
            # Alone: C's work is wanted by nobody else: leaving aborts it in the engine.
            alone = asyncio.create_task(c.post("/v1/judge/pairwise", json=long_body(seed + 1, votes=4)))
            await until(lambda: unfinished(faulty.url) >= 6, 120, "C's votes never reached the engine")
            alone.cancel()
            await until(lambda: unfinished(faulty.url) <= 2, 30, "C's engine requests kept running")
            mid = await asyncio.to_thread(scrape, faulty.url)
            return await b, mid

    r, mid = asyncio.run(go())
    assert r.status_code == 200, r.text
    assert [v["source"] for v in r.json()["votes"]] == ["coalesced", "coalesced"]
    assert [v["generated_tokens"] for v in r.json()["votes"]] == [200, 200]  # ran to the end for B
    aborted = mid["rrm_engine_calls_aborted_total"] - before.get("rrm_engine_calls_aborted_total", 0)
    assert aborted == 4, aborted  # C's four votes, none of the shared ones
    after = scrape(faulty.url)
    assert after['vllm:num_requests_running{engine="0",model_name="SmolLM2-135M-Instruct"}'] == 0
    assert "client disconnected" in faulty.log_text()


def test_engine_killed_mid_request_fails_fast_and_the_engine_comes_back(faulty):
    (core,) = engine_processes(faulty, "EngineCore")

    async def go() -> list[httpx.Response]:
        # Each request would take minutes (4 votes x 1500 tokens on two cores); the timeout is
        # far below that, so a request that waited for work that died fails the test.
        async with httpx.AsyncClient(base_url=faulty.url, timeout=60) as c:
            tasks = [asyncio.create_task(c.post("/v1/judge/pairwise", json=long_body(1000 + i, votes=4,)))
                     for i in range(3)]
            await until(lambda: unfinished(faulty.url) >= 12, 120, "votes never reached the engine")
            core.kill()
            return await asyncio.gather(*tasks)

    rs = asyncio.run(go())
    for r in rs:
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["type"] == "engine_unavailable" and "engine" in err["message"], err
    ready = httpx.get(f"{faulty.url}/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["error"]["type"] == "engine_unavailable"
    assert httpx.get(f"{faulty.url}/health", timeout=10).status_code == 200
    wait_ready(faulty)
    assert scrape(faulty.url)["rrm_engine_restarts_total"] == 1
    (new_core,) = engine_processes(faulty, "EngineCore")  # the dead one is gone, one new one runs
    assert new_core.pid != core.pid
    ok = faulty.post("/v1/judge/pairwise", {**long_body(7, votes=2, max_tokens=4)})
    assert ok.status_code == 200 and len(ok.json()["votes"]) == 2

    # The model worker (a process of its own under the engine core) dying is the same failure.
    (worker,) = engine_processes(faulty, "Worker")
    worker.kill()
    deadline = time.monotonic() + 60
    while httpx.get(f"{faulty.url}/ready", timeout=10).status_code == 200:
        assert time.monotonic() < deadline, "the worker's death went unnoticed"
        time.sleep(0.2)
    wait_ready(faulty)
    assert scrape(faulty.url)["rrm_engine_restarts_total"] == 2
    assert faulty.post("/v1/judge/pairwise", long_body(8, votes=1, max_tokens=4)).status_code == 200
    log = faulty.log_text()
    assert log.count("the judge engine died; restarting it") == 2 and log.count("the judge engine is back") == 2


def wait_ready(server: RealServer, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.proc.poll() is None, server.log_text()[-3000:]
        if httpx.get(f"{server.url}/ready", timeout=10).status_code == 200:
            return
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.5)
