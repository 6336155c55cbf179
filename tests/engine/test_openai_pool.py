"""Routing of the remote engine pool: prefix affinity, spreading, bounded load; response parsing;
against fake replicas on loopback: the read timeout, and what is served read from the replicas."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rrm_server.engine.base import EngineError, EngineUnavailable, GenerationRequest
from rrm_server.engine.openai_pool import OpenAIPoolEngine, Replica, _generation
from rrm_server.engine.routing import rendezvous
from rrm_server.settings import Settings
from tests.support.fake_replica import CARD, FakeReplica
from tests.support.server import serve_in_thread


def pool(n: int, routing: str = "prefix_affinity") -> OpenAIPoolEngine:
    e = OpenAIPoolEngine(Settings(engine="openai", engine_url=",".join(f"http://r{i}" for i in range(n)),
                                  engine_routing=routing))
    for r in e.replicas:
        r.healthy = True
    return e


def test_affinity_is_stable_and_spreads():
    e = pool(3)
    keys = [f"query{i}:first{i % 7}" for i in range(300)]
    chosen = {k: e.pick(k, set()).url for k in keys}
    assert all(e.pick(k, set()).url == chosen[k] for k in keys)  # same prefix, same replica
    share = [sum(v == r.url for v in chosen.values()) for r in e.replicas]
    assert min(share) > 50  # spread over all three
    e.replicas[2].healthy = False  # a replica leaves: only its keys move
    for k in keys:
        if chosen[k] != "http://r2":
            assert e.pick(k, set()).url == chosen[k]
        else:
            assert e.pick(k, set()).url != "http://r2"


def test_bounded_load_spills_to_the_least_busy():
    e = pool(2)
    key = "hot-prefix"
    first = e.pick(key, set())
    first.in_flight = 20
    other = next(r for r in e.replicas if r is not first)
    assert e.pick(key, set()) is other
    assert e.pick(key, {other.url}) is first  # excluded after a failed try: the other one
    assert e.pick(key, {first.url, other.url}) is None


def test_round_robin_ignores_prefixes_and_skips_unhealthy_replicas():
    e = pool(3, "round_robin")
    picks = [e.pick("same-prefix", set()).url for _ in range(9)]
    assert sorted(picks) == sorted(["http://r0", "http://r1", "http://r2"] * 3)
    e.replicas[1].healthy = False
    assert {e.pick("same-prefix", set()).url for _ in range(6)} == {"http://r0", "http://r2"}


def test_rendezvous_orders_every_replica():
    rs = [Replica(f"http://r{i}") for i in range(4)]
    assert sorted(r.url for r in rendezvous("k", rs, name=lambda r: r.url)) == sorted(r.url for r in rs)


def test_completion_response_parsing():
    data = {"choices": [{"text": "\\boxed{Assistant 1}", "finish_reason": "stop", "token_ids": [5, 6, 7],
                         "logprobs": {"top_logprobs": [{"token_id:33": -0.1, "token_id:34": -2.5}]}}],
            "usage": {"prompt_tokens": 600, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 512}}}
    g = _generation(data, GenerationRequest("r", [1] * 600, 1, 0.0, 1.0, logprobs=20))
    assert (g.text, g.finish_reason, g.prompt_tokens, g.generated_tokens, g.cached_prompt_tokens) == (
        "\\boxed{Assistant 1}", "stop", 600, 3, 512)
    assert g.token_ids == [5, 6, 7] and g.logprobs == [{33: -0.1, 34: -2.5}]
    plain = _generation(data, GenerationRequest("r", [1], 8, 0.6, 1.0))
    assert plain.logprobs is None


# --- fake replicas: real HTTP on loopback ---------------------------------------------------------

@pytest.fixture
def replicas() -> Iterator[list[FakeReplica]]:
    made: list[FakeReplica] = []
    yield made
    for r in made:
        r.close()


def remote_pool(reps: list[FakeReplica], **settings: Any) -> OpenAIPoolEngine:
    e = OpenAIPoolEngine(Settings(engine="openai", engine_url=",".join(r.url for r in reps),
                                  engine_start_timeout=5, **settings))
    e.health_interval = 3600  # the tests drive the health checks
    return e


def req(key: str = "k") -> GenerationRequest:
    return GenerationRequest("r1", [1, 2, 3], 16, 0.0, 1.0, affinity_key=key)


def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.02)


# --- a replica that accepts and never answers --------------------------------------------------


async def test_a_replica_that_never_answers_fails_over_to_another(replicas):
    hung, good = FakeReplica(hang=True), FakeReplica()
    replicas += [hung, good]
    e = remote_pool(replicas)
    e.read_timeout = 0.5
    await e.start()
    try:
        key = next(k for k in (f"k{i}" for i in range(100)) if e.pick(k, set()).url == hung.url)
        started = time.monotonic()
        g = await asyncio.wait_for(e.generate(req(key)), 10)  # before the fix: held forever
        assert g.text == "\\boxed{Assistant 1}" and time.monotonic() - started < 5
        assert len(hung.bodies) == 1 and len(good.bodies) == 1
        wait_for(lambda: hung.closed_by_client == 1)  # the timed-out request was closed (vLLM aborts it)
        h = e.replicas[[r.url for r in e.replicas].index(hung.url)]
        assert h.failures == 1 and h.healthy  # only slow, maybe: the health checks decide
    finally:
        await e.shutdown()


async def test_a_lone_replica_that_never_answers_is_an_engine_error_not_a_hang(replicas):
    hung = FakeReplica(hang=True)
    replicas.append(hung)
    e = remote_pool(replicas)
    e.read_timeout = 0.5
    await e.start()
    try:
        started = time.monotonic()
        with pytest.raises(EngineError, match="ReadTimeout after 0.5 s") as err:
            await asyncio.wait_for(e.generate(req()), 10)
        # An invalid vote (engine_error), not a pool outage: the replica still answers its checks.
        assert not isinstance(err.value, EngineUnavailable)
        assert time.monotonic() - started < 5 and e.ready
    finally:
        await e.shutdown()


async def test_the_default_read_timeout_is_generous_but_finite(replicas):
    replicas.append(FakeReplica())
    e = remote_pool(replicas)
    await e.start()
    try:
        t = e._http.timeout
        assert t.read is not None and 300 <= t.read <= 3600 and t.connect == 5.0
    finally:
        await e.shutdown()


# --- what is served comes from the replicas -------------------------------------------------------


def remote_fingerprint(root: str, model_id: str) -> str:
    return "remote:" + hashlib.sha256(f"{root}\n{model_id}".encode()).hexdigest()[:16]


async def test_model_info_is_what_the_replicas_serve_not_local_settings(replicas):
    replicas += [FakeReplica(), FakeReplica()]
    e = remote_pool(replicas, model="/local/checkout/rrm", max_model_len=32768)
    info = await e.start("/local/checkout/rrm")
    try:
        assert (info.name, info.path, info.max_model_len) == ("rrm-7b", "/models/RRM-7B", 8192)
        assert info.fingerprint == remote_fingerprint("/models/RRM-7B", "rrm-7b")
        assert "/local/checkout" not in info.fingerprint
        await e.generate(req())
        assert [b["model"] for r in replicas for b in r.bodies] == ["rrm-7b"]  # the replicas' own id
    finally:
        await e.shutdown()


async def test_served_model_name_still_renames_what_is_reported(replicas):
    replicas.append(FakeReplica())
    e = remote_pool(replicas, served_model_name="judge")
    info = await e.start()
    try:
        assert (info.name, info.path) == ("judge", "/models/RRM-7B")
        assert info.fingerprint == remote_fingerprint("/models/RRM-7B", "rrm-7b")  # not the alias
        await e.generate(req())
        assert replicas[0].bodies[0]["model"] == "rrm-7b"  # the replica still gets its own name
    finally:
        await e.shutdown()


async def test_the_card_asked_for_is_picked_and_an_unserved_engine_model_refused(replicas):
    lora = {"id": "rrm-lora", "object": "model", "root": "/adapters/x", "parent": "rrm-7b",
            "max_model_len": 8192}
    replicas.append(FakeReplica([dict(CARD), lora]))
    e = remote_pool(replicas, engine_model="rrm-lora")
    try:
        assert (await e.start()).path == "/adapters/x"
    finally:
        await e.shutdown()
    e = remote_pool(replicas, engine_model="other")
    try:
        with pytest.raises(EngineUnavailable, match="does not serve --engine-model 'other'"):
            await e.start()
    finally:
        await e.shutdown()


async def test_replicas_serving_different_weights_refuse_to_start(replicas):
    replicas += [FakeReplica(), FakeReplica([{**CARD, "root": "/models/RRM-32B"}])]
    e = remote_pool(replicas)
    try:
        with pytest.raises(EngineUnavailable, match="different models"):
            await e.start()
    finally:
        await e.shutdown()


async def test_replicas_with_different_context_lengths_use_the_smallest(replicas, caplog):
    replicas += [FakeReplica(), FakeReplica([{**CARD, "max_model_len": 4096}])]
    e = remote_pool(replicas)
    try:
        with caplog.at_level(logging.WARNING, "rrm_server.engine.openai_pool"):
            info = await e.start()
        assert info.max_model_len == 4096
        assert "different max_model_len" in caplog.text
    finally:
        await e.shutdown()


async def test_a_late_replica_serving_other_weights_is_kept_out(replicas, caplog):
    a, b = FakeReplica(), FakeReplica([{**CARD, "root": "/models/other"}])
    b.healthy = False  # down while the pool starts
    replicas += [a, b]
    e = remote_pool(replicas)
    await e.start()
    try:
        rb = e.replicas[1]
        b.healthy = True
        with caplog.at_level(logging.ERROR, "rrm_server.engine.openai_pool"):
            await e._check_all()
            await e._check_all()
        assert not rb.healthy and "kept out of the pool" in caplog.text
        assert caplog.text.count("kept out") == 1  # logged once, not at every check
        b.cards = [{**CARD, "max_model_len": 2048}]  # right weights, too little context for the pool
        await e._check_all()
        assert not rb.healthy
        b.cards = [dict(CARD)]
        await e._check_all()
        assert rb.healthy and rb.mismatch is None
    finally:
        await e.shutdown()


def test_the_gateway_reports_and_accepts_the_replicas_model(replicas, model_dir, tokenizer):
    replicas.append(FakeReplica())
    settings = Settings(engine="openai", engine_url=replicas[0].url, model=str(model_dir),
                        cache_enabled=False, max_model_len=4096)
    from rrm_server.api.app import build_app

    with serve_in_thread(build_app(settings, tokenizer=tokenizer)) as url:
        m = httpx.get(f"{url}/v1/models").json()["data"][0]
        assert (m["id"], m["root"], m["max_model_len"]) == ("rrm-7b", "/models/RRM-7B", 8192)
        assert m["fingerprint"] == remote_fingerprint("/models/RRM-7B", "rrm-7b")
        assert m["replicas"] == 1  # healthy replicas in the pool
        body = {"query": "q", "responses": ["a", "b"], "votes": 1, "verdict_probs": False}
        ok = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "model": "rrm-7b"}, timeout=30)
        assert ok.status_code == 200, ok.text
        wrong = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "model": str(model_dir)}, timeout=30)
        assert wrong.status_code == 400 and "rrm-7b" in wrong.text
