"""Inside a judgment, on the real vLLM CPU engine: an early exit aborts the generation in vLLM (its
token counter stops), a deadline answers 200 with forced verdicts in time, a streamed request
delivers its events in order and a disconnect aborts its engine work; the bundled model's
defaults give every vote a verdict."""

from __future__ import annotations

import json
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


def test_a_streamed_knockout_delivers_events_in_order(real_server):
    body = {"query": QUERY, "responses": [*RESPONSES, "Blue light scatters most."], "method": "knockout",
            "votes": 2, "max_tokens": 24, "cache": False, "seed": 4, "stream": True}
    got, event = [], None
    with httpx.stream("POST", f"{real_server.url}/v1/judge/rank", json=body, timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                got.append((event, json.loads(line[6:]), time.monotonic()))
    names = [n for n, _, _ in got]
    assert names[-1] == "result" and names.count("result") == 1 and "error" not in names
    result = got[-1][1]
    matches = [d for n, d, _ in got if n == "match"]
    assert [m["round"] for m in matches] == [1, 2] and matches == result["matches"]
    assert len([n for n in names if n == "vote"]) == 4
    # Round 1's match arrived before round 2 was judged: streamed, not sent at the end.
    t_match1 = next(t for n, d, t in got if n == "match")
    assert t_match1 < got[-1][2]


def test_a_disconnect_aborts_the_streamed_generations(real_server):
    body = {"query": QUERY, "responses": RESPONSES, "votes": 4, "early_stop": False, "cache": False,
            "max_tokens": 2048, "max_thinking_tokens": None, "stream": True, "seed": 6}
    before = engine_tokens(real_server.url)
    with httpx.stream("POST", f"{real_server.url}/v1/judge/pairwise", json=body, timeout=300) as r:
        assert r.status_code == 200
        time.sleep(2)  # the votes are generating
    deadline = time.monotonic() + 30
    while httpx.get(f"{real_server.url}/ready", timeout=10).json()["engine"]["unfinished_requests"]:
        assert time.monotonic() < deadline, "the engine kept generating after the client left"
        time.sleep(0.2)
    spent = engine_tokens(real_server.url) - before
    time.sleep(1)
    assert engine_tokens(real_server.url) - before == spent  # no tokens after the abort
    if spent:
        assert spent < 4 * 2048


def test_the_bundled_model_gives_every_vote_a_verdict_by_default(real_server):
    """The README's first example: with the bundled model's defaults (thinking budget and rescue)
    every vote ends with a verdict and a probability, and says how it ended."""
    r = real_server.post("/v1/judge/pairwise", {"query": "What is 2 + 2?", "responses": ["4", "22"], "votes": 3,
                                                "cache": False})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["winner"] in (0, 1) or out["decided_by"] in ("probability", "majority")
    assert all(v["verdict"] and v["p_first"] is not None and v["exit"] in ("natural", "budget")
               for v in out["votes"]), out["votes"]
    assert out["p_first"] is not None and out["usage"]["failed_judgments"] == 0
