"""Routing of the remote engine pool: prefix affinity, spreading, bounded load; response parsing."""

from __future__ import annotations

from rrm_server.engine.base import GenerationRequest
from rrm_server.engine.openai_pool import OpenAIPoolEngine, Replica, _generation, rendezvous
from rrm_server.settings import Settings


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
    assert sorted(r.url for r in rendezvous("k", rs)) == sorted(r.url for r in rs)


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
