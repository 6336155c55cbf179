"""The Serve application on the real Ray runtime, with the scripted judge in each engine replica
(cheap: no model): every method over Serve's HTTP proxy, affinity, a replica killed under requests,
queue-full backpressure, autoscaling up and back down."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from pydantic import ValidationError

from rrm_server.engine.base import GenerationRequest
from rrm_server.errors import InvalidRequest
from rrm_server.protocol.judge import PairwiseResponse, RankResponse
from rrm_server.settings import Settings
from tests.ray_serve.conftest import engine_replicas, running, wait_until

pytestmark = pytest.mark.ray

SCRIPTED = "tests.support.ray_engines:scripted"
SLOW = "tests.support.ray_engines:slow"
HALF_CPU = {"ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0}}
RESPONSES = ["short", "a longer answer", "the longest answer of them all", "mid answer"]


def settings(tokenizer_dir, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    base = dict(model=str(tokenizer_dir), cache_enabled=False, max_model_len=4096, engine_replicas=2,
                log_format="text")
    return Settings(**{**base, **overrides})


@pytest.fixture(scope="module")
def two_replicas(ray_http, tokenizer_dir):  # type: ignore[no-untyped-def]
    with running(ray_http, settings(tokenizer_dir), str(tokenizer_dir), SCRIPTED, HALF_CPU) as url:
        yield url


def test_every_method_answers_through_serve(two_replicas):
    url = two_replicas
    pair = httpx.post(f"{url}/v1/judge/pairwise", json={"query": "q", "responses": RESPONSES[:2], "votes": 2},
                      timeout=60)
    assert pair.status_code == 200, pair.text
    assert pair.json()["winner"] == 1  # the scripted judge prefers the longer response
    for method in ("elo", "knockout"):
        r = httpx.post(f"{url}/v1/judge/rank", json={"query": "q", "responses": RESPONSES, "method": method},
                       timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["best"] == 2, body
        assert body["usage"]["failed_judgments"] == 0
    models = httpx.get(f"{url}/v1/models").json()["data"][0]
    assert models["id"] == "scripted-judge"
    wait_until(lambda: httpx.get(f"{url}/v1/models").json()["data"][0]["replicas"] == 2, 20, "two replicas")


def test_in_cluster_callers_judge_through_handles_without_http(two_replicas):
    from rrm_server.ray_serve.client import RayJudge

    judge = RayJudge()
    pair = judge.pairwise("q", RESPONSES[:2], votes=2).result(timeout_s=60)
    assert isinstance(pair, PairwiseResponse) and pair.winner == 1 and len(pair.votes) == 2

    async def knockout() -> RankResponse:
        return await judge.rank("q", RESPONSES, method="knockout")

    ranked = asyncio.run(knockout())
    assert isinstance(ranked, RankResponse) and ranked.best == 2 and ranked.usage.failed_judgments == 0
    with pytest.raises(ValidationError, match="responses"):  # in the caller, before any call
        judge.rank("q", ["only one"])
    with pytest.raises(InvalidRequest, match="at most 64"):  # the service's own checks: its error types
        judge.rank("q", [f"answer {i}" for i in range(65)]).result(timeout_s=60)


def test_bad_input_gets_our_error_shape_through_serve(two_replicas):
    r = httpx.post(f"{two_replicas}/v1/judge/rank", json={"query": "q", "responses": ["only one"]}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request"


def test_a_failed_generation_is_one_invalid_vote_with_the_engines_message(two_replicas):
    from tests.support.ray_engines import FAILING_QUERY

    r = httpx.post(f"{two_replicas}/v1/judge/pairwise", timeout=60,
                   json={"query": FAILING_QUERY, "responses": RESPONSES[:2], "votes": 2})
    assert r.status_code == 200, r.text
    votes = r.json()["votes"]
    assert votes and all(v["invalid_reason"] == "engine_error" for v in votes)
    assert {v["error"] for v in votes} == {"scripted engine error"}  # not Ray's remote traceback
    assert r.json()["winner"] is None


async def test_affinity_keeps_a_prefix_on_one_replica(two_replicas, builder):
    from ray import serve
    from ray.serve.context import _set_request_context, _unset_request_context

    from rrm_server.engine.ray_handle import RayHandleEngine
    from rrm_server.ray_serve.app import APP_NAME, ENGINE

    engine = RayHandleEngine(serve.get_deployment_handle(ENGINE, app_name=APP_NAME))
    await engine.start()
    # As inside a gateway replica: every call made for one HTTP request carries its internal id.
    _set_request_context(_internal_request_id="one-http-request")
    try:
        ids = builder.render("q", "a", "b").token_ids
        keys = [f"prefix-{i}" for i in range(8)]
        reqs = [GenerationRequest(f"{k}-{n}", ids, 8, 0.0, 1.0, affinity_key=k) for k in keys for n in range(6)]
        served = await asyncio.gather(*(engine.generate(r) for r in reqs))
        by_key: dict[str, set[str]] = {}
        for r, g in zip(reqs, served):
            by_key.setdefault(r.affinity_key, set()).add(g.served_by)
        assert all(len(replicas) == 1 for replicas in by_key.values()), by_key  # one replica per prefix
        assert len(set().union(*by_key.values())) == 2, by_key  # and the prefixes spread over both
    finally:
        _unset_request_context()
        await engine.shutdown()


def kill_one_engine_replica() -> str:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if "#JudgeEngine#" in a["name"]]
    assert names, "no engine replica actor found"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def test_a_replica_killed_mid_request_leaves_every_request_answered(ray_http, tokenizer_dir):
    # Power of two: with two replicas each comparison goes to the less loaded one, so both hold work
    # when one is killed (affinity may hash every prefix of this small request to one replica).
    with running(ray_http, settings(tokenizer_dir, engine_routing="power_of_two"), str(tokenizer_dir), SLOW,
                 HALF_CPU) as url:
        results: list[httpx.Response] = []

        def ask(method: str) -> None:
            results.append(httpx.post(f"{url}/v1/judge/rank", timeout=120,
                                      json={"query": "q", "responses": RESPONSES, "method": method}))

        threads = [threading.Thread(target=ask, args=(m,)) for m in ("elo", "knockout", "elo")]
        for t in threads:
            t.start()
        # Kill once the comparisons are on the replicas (1 s each), not before they got there.
        wait_until(lambda: httpx.get(f"{url}/v1/status").json()["queue"]["engine_calls"] >= 4, 30,
                   "comparisons on the engine replicas")
        killed = kill_one_engine_replica()
        for t in threads:
            t.join(120)
        assert len(results) == 3
        for r in results:
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["failed_judgments"] == 0  # re-run elsewhere, not lost as engine errors
            assert r.json()["best"] == 2
        reruns = httpx.get(f"{url}/ready").json()["engine"]["engine_reruns"]
        assert reruns > 0, "the killed replica held no comparison: the test proved nothing"
        wait_until(lambda: engine_replicas() == {"RUNNING": 2}, 60, f"Serve to replace {killed}")


def test_a_full_engine_queue_is_429_with_retry_after(ray_http, tokenizer_dir):
    narrow = {**HALF_CPU, "max_ongoing_requests": 1, "max_queued_requests": 1}
    with running(ray_http, settings(tokenizer_dir, engine_replicas=1), str(tokenizer_dir), SLOW, narrow) as url:
        # An ELO request over 4 responses runs 12 comparisons at once: 1 runs, 1 waits, the rest are refused.
        r = httpx.post(f"{url}/v1/judge/rank", json={"query": "q", "responses": RESPONSES, "method": "elo"},
                       timeout=60)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["type"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
        ok = httpx.post(f"{url}/v1/judge/pairwise", json={"query": "q", "responses": RESPONSES[:2], "votes": 1},
                        timeout=60)
        assert ok.status_code == 200, ok.text  # within the bounds: served


def test_autoscaling_goes_one_to_two_under_load_and_back(ray_http, tokenizer_dir):
    fast = {**HALF_CPU, "autoscaling_config": {
        "min_replicas": 1, "initial_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "metrics_interval_s": 0.5, "look_back_period_s": 1.0, "upscale_delay_s": 0.0, "downscale_delay_s": 2.0}}
    s = settings(tokenizer_dir, engine_replicas=1, engine_max_replicas=2)
    with running(ray_http, s, str(tokenizer_dir), SLOW, fast) as url:
        assert engine_replicas() == {"RUNNING": 1}
        stop = threading.Event()
        failures: list[str] = []

        def load() -> None:
            while not stop.is_set():
                r = httpx.post(f"{url}/v1/judge/rank", timeout=120,
                               json={"query": "q", "responses": RESPONSES, "method": "elo"})
                if r.status_code != 200:
                    failures.append(r.text)

        workers = [threading.Thread(target=load) for _ in range(2)]
        for w in workers:
            w.start()
        try:
            wait_until(lambda: engine_replicas().get("RUNNING", 0) == 2, 90, "a second replica under load")
        finally:
            stop.set()
            for w in workers:
                w.join(120)
        assert not failures, failures[:2]  # scaling up lost no request
        wait_until(lambda: engine_replicas() == {"RUNNING": 1}, 90, "scaling back to one replica")


THINKING = "tests.support.ray_engines:thinking"


def test_early_exit_deadlines_and_streams_through_serve(ray_http, tokenizer_dir):
    """The engine replicas stream generations through Serve's streaming handles: a vote exits
    early or at its deadline (aborted on the replica), and stream: true passes Serve's proxy."""
    with running(ray_http, settings(tokenizer_dir, engine_replicas=1), str(tokenizer_dir), THINKING,
                 HALF_CPU) as url:
        body = {"query": "q", "responses": RESPONSES[:2], "votes": 2, "early_stop": False}
        early = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "early_exit": True, "exit_confidence": 0.8,
                                                             "probe_every": 8}, timeout=60)
        assert early.status_code == 200, early.text
        votes = early.json()["votes"]
        assert [v["exit"] for v in votes] == ["early", "early"] and early.json()["winner"] == 1
        assert all(8 <= v["generated_tokens"] < 100 for v in votes), votes  # not the 300 it would think
        late = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "deadline_s": 1.5}, timeout=60)
        assert late.status_code == 200, late.text
        votes = late.json()["votes"]
        assert [v["exit"] for v in votes] == ["deadline", "deadline"] and late.json()["winner"] == 1
        assert all(v["forced"] and v["generated_tokens"] < 300 for v in votes), votes
        names = []
        with httpx.stream("POST", f"{url}/v1/judge/rank", timeout=60, json={
                "query": "q", "responses": RESPONSES, "method": "knockout", "stream": True, "early_exit": True,
                "exit_confidence": 0.8, "probe_every": 8}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            names = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
        assert names.count("match") == 3 and names[-1] == "result" and "vote" in names
