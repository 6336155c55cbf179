"""Adaptive compute through the API: early-stopped voting gives the full-vote winners."""

from __future__ import annotations

import httpx
import pytest

from rrm_server.judging.votes import derive_seed


def noisy(shown):  # type: ignore[no-untyped-def]
    """A judge that is 70% right (longer is better), 15% invalid, as a function of the vote's seed."""
    u = (derive_seed(shown.request.seed, "u") % 1000) / 1000
    if u < 0.15:
        return ("thinking...", "length")
    right = 1 if len(shown.first) >= len(shown.second) else 2
    slot = right if u < 0.15 + 0.85 * 0.7 else 3 - right
    return f"\\boxed{{Assistant {slot}}}"


def post(url: str, path: str, body: dict) -> dict:
    r = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def brief(vote: dict) -> tuple:
    return (vote["index"], vote["seed"], tuple(vote["shown_order"]), vote["status"])


@pytest.mark.parametrize("votes", [1, 2, 3, 5, 7, 8])
def test_early_stop_winner_equals_all_votes(base_url, engine, votes):
    engine.script = noisy
    saved = 0
    for i in range(25):
        body = {"query": f"question {i}", "responses": ["a" * (1 + i % 3), "b" * (1 + i % 4)], "votes": votes,
                "seed": i, "cache": False}
        full = post(base_url, "/v1/judge/pairwise", {**body, "early_stop": False})
        early = post(base_url, "/v1/judge/pairwise", body)
        assert early["winner"] == full["winner"]
        assert [brief(v) for v in early["votes"]] == [brief(v) for v in full["votes"]][: len(early["votes"])]
        u = early["usage"]
        assert u["votes_used"] == len(early["votes"]) == u["engine_calls"]
        assert u["votes_used"] + u["votes_saved"] == votes
        saved += u["votes_saved"]
    if votes >= 3:
        assert saved > 0


@pytest.mark.parametrize("method", ["elo", "knockout"])
def test_early_stop_ranking_equals_all_votes(base_url, engine, method):
    engine.script = noisy
    calls = {"early": 0, "full": 0}
    for seed in range(6):
        body = {"query": f"q{seed}", "responses": ["a", "bbbb", "cc", "ddd", "eeeee"], "votes": 5,
                "method": method, "seed": seed, "cache": False}
        full = post(base_url, "/v1/judge/rank", {**body, "early_stop": False})
        early = post(base_url, "/v1/judge/rank", body)
        assert (early["best"], early["ranking"]) == (full["best"], full["ranking"])
        assert [m["winner"] for m in early["matches"]] == [m["winner"] for m in full["matches"]]
        assert early["usage"]["votes_saved"] == full["usage"]["engine_calls"] - early["usage"]["engine_calls"]
        calls["early"] += early["usage"]["engine_calls"]
        calls["full"] += full["usage"]["engine_calls"]
    assert calls["early"] < calls["full"]


def test_confidence_stopping(base_url, engine):
    # Unanimous judge: 3-0 has confidence 0.9375, so min_votes=3, confidence=0.9 stops at 3 of 8.
    out = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "votes": 8,
                                                "min_votes": 3, "confidence": 0.9, "order": "random"})
    assert out["usage"]["votes_used"] == 3 and out["usage"]["votes_saved"] == 5
    assert out["confidence"] == pytest.approx(0.9375)
    # Without it, early stopping alone needs 5 of 8.
    out = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "votes": 8,
                                                "order": "random"})
    assert out["usage"]["votes_used"] == 5
    # Both orders (the default from 2 votes): votes come in swapped pairs, so 6, three in each order.
    out = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "votes": 8})
    assert out["usage"]["votes_used"] == 6
    assert sorted(v["shown_order"][0] for v in out["votes"]) == [0, 0, 0, 1, 1, 1]
    assert out["position_consistent"] is True and out["winner"] == 1


def test_confidence_needs_min_votes(base_url, engine):
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b"], "confidence": 0.9})
    assert r.status_code == 400 and r.json()["error"]["param"] == "min_votes"
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b"],
                                                          "confidence": 1.0, "min_votes": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "confidence"


def slot1_says_longer(shown):  # type: ignore[no-untyped-def]
    return 0.8 if len(shown.first) >= len(shown.second) else 0.2


def test_verdict_probabilities_per_vote(base_url, engine, builder):
    engine.probability = slot1_says_longer
    out = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "votes": 2,
                                                "order": "both", "early_stop": False})
    # p(responses[0] = "a" better) is 0.2 whichever order it was shown in.
    assert [v["p_first"] for v in out["votes"]] == [pytest.approx(0.2)] * 2
    assert out["p_first"] == pytest.approx(0.2)
    assert out["usage"]["probe_calls"] == 2
    prefix = list(builder.verdict_tokens.prefix_ids)
    for probe in engine.probes:  # the judge's own output up to its verdict digit, one greedy token
        assert list(probe.prompt_token_ids[-len(prefix):]) == prefix
        assert (probe.max_tokens, probe.temperature, probe.logprobs) == (1, 0.0, 20)
    none = post(base_url, "/v1/judge/pairwise", {"query": "q2", "responses": ["a", "bb"], "verdict_probs": False})
    assert none["votes"][0]["p_first"] is None and none["usage"]["probe_calls"] == 0


def test_thinking_budget_forces_a_verdict(base_url, engine, builder):
    engine.script = lambda s: ("Let me think about this at great length ...", "length")
    engine.probability = slot1_says_longer
    out = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "votes": 3,
                                                "max_thinking_tokens": 16, "order": "fixed"})
    assert all(c.max_tokens == 16 for c in engine.calls)
    v = out["votes"][0]
    assert v["forced"] and v["status"] == "second" and v["verdict"] == "Assistant 2"
    assert v["p_first"] == pytest.approx(0.2) and v["invalid_reason"] is None
    assert out["winner"] == 1 and out["usage"]["forced_verdicts"] == len(out["votes"])
    cue = builder.verdict_cue_ids(reasoning_closed=False)
    probe = engine.probes[0]
    assert list(probe.prompt_token_ids[-len(cue):]) == cue
    # The probe continues the judge's own reasoning tokens.
    thought = builder.tokenizer.encode("Let me think about this at great length ...", add_special_tokens=False)
    assert list(probe.prompt_token_ids[-len(cue) - len(thought):-len(cue)]) == thought


def test_rescue_only_when_asked(base_url, engine):
    engine.script = lambda s: "I refuse to decide."
    engine.probability = slot1_says_longer
    plain = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"]})
    assert plain["votes"][0]["invalid_reason"] == "no_verdict" and not plain["votes"][0]["forced"]
    assert plain["usage"]["probe_calls"] == 0
    rescued = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "rescue_invalid": True})
    assert rescued["votes"][0]["forced"] and rescued["winner"] == 1
    # Truncated by max_tokens (no thinking budget): also only with rescue.
    engine.script = lambda s: ("still going", "length")
    cut = post(base_url, "/v1/judge/pairwise", {"query": "q3", "responses": ["a", "bb"]})
    assert cut["votes"][0]["invalid_reason"] == "truncated"


def test_forced_verdict_needs_probabilities(base_url, engine):
    engine.script = lambda s: ("...", "length")
    engine.probability = None  # an engine without log probabilities: the vote stays invalid, never guessed
    out = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "bb"], "max_thinking_tokens": 8})
    v = out["votes"][0]
    assert v["status"] == "invalid" and v["invalid_reason"] == "truncated" and not v["forced"]
    assert out["usage"]["forced_verdicts"] == 0 and out["usage"]["probe_calls"] == 1


@pytest.mark.parametrize("method", ["elo", "knockout"])
def test_adaptive_allocation_and_budget(base_url, engine, method):
    engine.script = noisy
    body = {"query": "q", "responses": ["a", "bbbb", "cc", "ddd", "eeeee"], "votes": 1, "method": method,
            "seed": 3, "cache": False, "verdict_probs": False}
    base = post(base_url, "/v1/judge/rank", body)
    adaptive = post(base_url, "/v1/judge/rank", {**body, "adaptive_votes": 7})
    assert adaptive["usage"]["votes_extra"] > 0
    assert adaptive["usage"]["engine_calls"] == base["usage"]["engine_calls"] + adaptive["usage"]["votes_extra"]
    # The budget caps the top-ups; every match still gets its base votes (later knockout rounds too).
    budget = base["usage"]["engine_calls"] + 3
    capped = post(base_url, "/v1/judge/rank", {**body, "adaptive_votes": 7, "budget_engine_calls": budget})
    assert 0 < capped["usage"]["votes_extra"] <= 3
    assert capped["usage"]["engine_calls"] <= budget


def test_adaptive_votes_validation(base_url, engine):
    r = httpx.post(f"{base_url}/v1/judge/rank", json={"query": "q", "responses": ["a", "b"], "votes": 3,
                                                      "adaptive_votes": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "adaptive_votes"
