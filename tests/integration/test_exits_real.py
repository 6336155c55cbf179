"""Early exit and deadlines on the real vLLM CPU engine: an exit aborts the generation in vLLM
(its token counter stops), a deadline answers 200 with forced verdicts in time."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.redis]

QUERY = "Explain in detail why the sky is blue, with the physics."
RESPONSES = ["Rayleigh scattering: shorter wavelengths scatter more off air molecules, so blue light "
             "reaches the eye from every direction of the sky.", "Because the sky reflects the ocean."]


def engine_tokens(url: str) -> float:
    """vLLM's own count of generated tokens (its Prometheus counter in our /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        if fam.name in ("vllm:generation_tokens", "vllm:generation_tokens_total"):
            total += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    return total


def test_early_exit_aborts_the_generation_in_the_engine(real_server):
    body = {"query": QUERY, "responses": RESPONSES, "votes": 2, "order": "both", "early_stop": False,
            "cache": False, "max_tokens": 128, "seed": 5}
    before = engine_tokens(real_server.url)
    full = real_server.post("/v1/judge/pairwise", {**body, "rescue_invalid": True})
    assert full.status_code == 200, full.text
    full_tokens = sum(v["generated_tokens"] for v in full.json()["votes"])
    middle = engine_tokens(real_server.url)
    # A threshold any probe passes: each vote stops at its first probe (8 tokens in).
    early = real_server.post("/v1/judge/pairwise", {**body, "early_exit": True, "exit_confidence": 0.5000001,
                                                     "probe_every": 8})
    assert early.status_code == 200, early.text
    after = engine_tokens(real_server.url)
    votes = early.json()["votes"]
    assert [v["exit"] for v in votes] == ["early", "early"], votes
    assert all(v["forced"] and v["verdict"] and v["p_first"] is not None for v in votes)
    assert all(8 <= v["generated_tokens"] < 40 for v in votes), votes
    usage = early.json()["usage"]
    assert usage["exits"] == {"early": 2} and usage["exit_probes"] >= 2
    assert usage["thinking_tokens_saved"] == sum(128 - v["generated_tokens"] for v in votes)
    # The engine stopped generating: its own counter moved by what the votes report (plus the
    # one-token probes), well below what the same votes cost without early exit.
    spent = after - middle
    assert spent <= usage["generated_tokens"] + 4, (spent, usage)
    if middle > before:  # the counter is there (it is in vLLM's metrics on this build)
        assert spent < (middle - before) and usage["generated_tokens"] < full_tokens


def test_a_deadline_answers_in_time_with_forced_verdicts(real_server):
    body = {"query": QUERY, "responses": [*RESPONSES, "Blue light is scattered by the atmosphere.",
                                          "It is blue because of the way light works."],
            "method": "knockout", "votes": 3, "early_stop": False, "cache": False, "max_tokens": 1024,
            "seed": 9}
    started = time.monotonic()
    r = httpx.post(f"{real_server.url}/v1/judge/rank", json=body, headers={"X-Request-Deadline": "4"}, timeout=120)
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    # Not a timing check (benchmarks/deadlines.py measures that): 9 votes of up to 1024 tokens at
    # ~25 tokens/s a stream would take minutes; closed at the deadline they take seconds.
    assert took < 30, took
    out = r.json()
    votes = [v for m in out["matches"] for v in m["votes"]]
    exits = {v["exit"] for v in votes}
    assert "deadline" in exits and exits <= {"natural", "budget", "deadline"}, exits
    closed = [v for v in votes if v["exit"] == "deadline"]
    # Each closed vote has a verdict: forced, or one the judge had already written.
    assert all(v["verdict"] and v["finish_reason"] == "abort" and v["generated_tokens"] < 1024 for v in closed)
    assert any(v["forced"] for v in closed)
    assert out["best"] is not None
    assert out["usage"]["exits"]["deadline"] == len(closed)
