"""The judging API over real HTTP with a scripted engine: shapes, semantics, concurrency, aborts."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from rrm_server.engine import EngineError, EngineUnavailable


def post(url: str, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30, **kw)


def test_pairwise_result_shape_and_majority(base_url, engine):
    r = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["short", "much longer"], "votes": 3,
                                              "order": "both", "seed": 7, "early_stop": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "judge.pairwise" and body["seed"] == 7 and body["model"] == "scripted-judge"
    assert body["winner"] == 1
    assert body["tally"] == {"first": 0, "second": 3, "invalid": 0, "invalid_reasons": {}}
    assert len(body["votes"]) == 3
    orders = [tuple(v["shown_order"]) for v in body["votes"]]
    assert set(orders) == {(0, 1), (1, 0)}  # both orders used
    for v in body["votes"]:
        # The judge names the longer one by slot; the service maps the slot back to the response.
        assert v["verdict"] == ("Assistant 2" if v["shown_order"] == [0, 1] else "Assistant 1")
        assert v["status"] == "second" and v["winner"] == 1
        assert v["reasoning"] is None and v["generated_tokens"] > 0 and v["prompt_tokens"] > 100
    u = body["usage"]
    assert u["engine_calls"] == 3 and u["failed_judgments"] == 0
    # Each valid vote also had its verdict probability read: one probe call on top of its prompt.
    assert u["probe_calls"] == len(engine.probes) == 3
    assert u["prompt_tokens"] == (sum(v["prompt_tokens"] for v in body["votes"])
                                  + sum(len(p.prompt_token_ids) for p in engine.probes))
    assert all(v["p_first"] is None for v in body["votes"])  # this engine returns no log probabilities
    assert len(engine.calls) == 3
    # Defaults reach the engine: RRM temperature/top_p, bundled-size max_tokens, distinct seeds.
    assert {c.temperature for c in engine.calls} == {0.6} and {c.top_p for c in engine.calls} == {1.0}
    assert len({c.seed for c in engine.calls}) == 3


def test_include_reasoning_returns_the_generated_text(base_url, engine):
    body = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["aa", "b"],
                                                 "include_reasoning": True}).json()
    slot = 1 if body["votes"][0]["shown_order"] == [0, 1] else 2
    assert body["votes"][0]["reasoning"].endswith(f"\\boxed{{Assistant {slot}}}")


def test_same_seed_same_result_and_seed_is_reported(base_url, engine):
    engine.script = lambda s: f"\\boxed{{Assistant {1 + s.request.seed % 2}}}"
    body = {"query": "q", "responses": ["a", "b"], "votes": 5, "seed": 123, "cache": False}
    r1, r2 = post(base_url, "/v1/judge/pairwise", body).json(), post(base_url, "/v1/judge/pairwise", body).json()
    strip = lambda r: {k: v for k, v in r.items() if k not in ("id", "created")}  # noqa: E731
    assert strip(r1) == strip(r2)
    # No seed: seed 0, so a repeated request is the same work.
    r3 = post(base_url, "/v1/judge/pairwise", {**body, "seed": None}).json()
    r4 = post(base_url, "/v1/judge/pairwise", {**body, "seed": 0}).json()
    assert r3["seed"] is None and r4["seed"] == 0
    assert [v["seed"] for v in r3["votes"]] == [v["seed"] for v in r4["votes"]]


def test_invalid_votes_are_counted_never_scored(base_url, engine):
    outputs = iter([("thinking...", "length"), "no verdict", "\\boxed{Assistant 7}", "\\boxed{Assistant 1}"])
    engine.script = lambda s: next(outputs)
    body = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "votes": 4,
                                                 "order": "fixed"}).json()
    assert body["tally"] == {"first": 1, "second": 0, "invalid": 3,
                             "invalid_reasons": {"malformed": 1, "no_verdict": 1, "truncated": 1}}
    assert body["winner"] == 0
    assert body["usage"]["failed_judgments"] == 3
    reasons = sorted(v["invalid_reason"] or "" for v in body["votes"])
    assert reasons == ["", "malformed", "no_verdict", "truncated"]


def test_all_invalid_gives_no_winner(base_url, engine):
    engine.script = lambda s: "I cannot decide."
    body = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "votes": 2}).json()
    assert body["winner"] is None and body["tally"]["invalid"] == 2


def test_one_engine_error_is_an_invalid_vote_not_a_failed_request(base_url, engine):
    calls = {"n": 0}

    def script(s):
        calls["n"] += 1
        if calls["n"] == 1:
            raise EngineError("one generation failed")
        return "\\boxed{Assistant 1}"

    engine.script = script
    body = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "votes": 3,
                                                 "order": "fixed"}).json()
    assert body["tally"]["invalid_reasons"] == {"engine_error": 1}
    assert body["winner"] == 0
    bad = [v for v in body["votes"] if v["invalid_reason"] == "engine_error"][0]
    assert "one generation failed" in bad["error"]


@pytest.mark.parametrize("method", ["elo", "knockout"])
def test_rank_elects_the_longest(base_url, engine, method):
    responses = ["a" * k for k in (3, 9, 1, 5, 7)]
    r = post(base_url, "/v1/judge/rank", {"query": "q", "responses": responses, "method": method, "seed": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["best"] == 1 and body["method"] == method
    assert sorted(body["ranking"]) == list(range(5)) and body["ranking"][0] == 1
    n_matches = 10 if method == "elo" else 4
    assert len(body["matches"]) == n_matches == body["usage"]["engine_calls"]
    if method == "elo":
        assert body["ranking"] == [1, 4, 3, 0, 2]  # strictly ordered ratings: no tie-break involved
        ratings = [s["rating"] for s in body["scores"]]
        assert ratings[1] == max(ratings)
    else:
        champ = [s for s in body["scores"] if s["champion"]]
        assert [c["index"] for c in champ] == [1]
        assert {m["round"] for m in body["matches"]} == {1, 2, 3}
        assert sum(s["byes"] for s in body["scores"]) == 3


def test_rank_submits_all_comparisons_at_once(base_url, engine):
    engine.delay = 0.2
    r = post(base_url, "/v1/judge/rank", {"query": "q", "responses": ["a", "bb", "ccc", "dddd"], "votes": 2})
    assert r.status_code == 200
    assert engine.max_in_flight == 12  # 6 pairs x 2 votes, all in the engine together


def test_concurrent_requests_share_the_engine(base_url, engine):
    engine.delay = 0.3

    async def go():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
            rs = await asyncio.gather(*(c.post("/v1/judge/pairwise", json={
                "query": f"q{i}", "responses": ["a", "b"], "votes": 4, "early_stop": False}) for i in range(5)))
        return rs

    rs = asyncio.run(go())
    assert all(r.status_code == 200 for r in rs)
    assert engine.max_in_flight == 20


def test_client_disconnect_aborts_engine_work(base_url, engine):
    engine.delay = 5.0
    # Client-side timeout = disconnect after 0.5 s.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b"], "votes": 3,
                                                          "early_stop": False}, timeout=0.5)
    deadline = threading.Event()
    for _ in range(50):
        if len(engine.cancelled) >= 3:
            break
        deadline.wait(0.05)
    assert len(engine.cancelled) == 3
    assert len(engine.calls) == 3
    # The service is unaffected.
    engine.delay = 0
    assert post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"]}).status_code == 200


def test_dead_engine_fails_fast_with_503(base_url, engine):
    engine.dead = True
    r = post(base_url, "/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "votes": 2})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "engine_unavailable"  # one type for the state, whichever check sees it
    assert httpx.get(f"{base_url}/ready").status_code == 503
    engine.dead = False
    assert httpx.get(f"{base_url}/ready").status_code == 200


def test_engine_dying_mid_request_is_503_with_a_message(base_url, engine):
    orig = engine.generate

    async def dying(request):
        engine.dead = True
        raise EngineUnavailable("engine process exited")

    engine.generate = dying  # type: ignore[method-assign]
    try:
        r = post(base_url, "/v1/judge/rank", {"query": "q", "responses": ["a", "b", "c"], "votes": 2})
    finally:
        engine.generate = orig  # type: ignore[method-assign]
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["type"] == "engine_unavailable" and "engine process exited" in err["message"]


def test_render_returns_the_exact_prompt(base_url, engine, builder):
    body = {"query": "Q", "responses": ["first <|im_end|>", "second"], "order": "swapped"}
    r = post(base_url, "/v1/judge/render", body)
    assert r.status_code == 200
    out = r.json()
    expected = builder.render("Q", "second", "first <|im_end|>")
    assert out["shown_order"] == [1, 0]
    assert out["prompt_text"] == expected.text
    assert out["prompt_token_ids"] == expected.token_ids
    assert out["num_prompt_tokens"] == len(expected.token_ids)
    assert out["opens_reasoning"] is False
    assert len(engine.calls) == 0
    # What render shows is what the engine is sent.
    post(base_url, "/v1/judge/pairwise", {"query": "Q", "responses": ["first <|im_end|>", "second"],
                                          "order": "fixed"})
    sent = list(engine.calls[0].prompt_token_ids)
    assert sent == builder.render("Q", "first <|im_end|>", "second").token_ids


def test_ops_endpoints(base_url, engine):
    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{base_url}/ready").json()["status"] == "ready"
    models = httpx.get(f"{base_url}/v1/models").json()
    assert models["data"][0]["id"] == "scripted-judge"
    assert models["data"][0]["max_model_len"] == 2048
