"""Rewards a trainer can optimise, over real HTTP with a scripted judge (the longer response wins):
degenerate answers, reasoning stripping, tail truncation, position-debiased verdicts, the official
parser, sparse tournaments and ELO's coin rule."""

from __future__ import annotations

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.judging.pairings import is_connected
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine, prefer
from tests.support.server import serve_in_thread

PROMPT = "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n"
THINK = "<think>" + "long careful reasoning " * 6 + "</think>"


def post(url: str, path: str, body: dict, status: int = 200) -> dict:
    r = httpx.post(url + path, json=body, timeout=60)
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def server(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), reward_votes=2, reward_group_size=4, reward_group_wait=0.5,
                        max_votes=8)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url, engine


@pytest.fixture
def svc(server):  # type: ignore[no-untyped-def]
    url, engine = server
    httpx.delete(f"{url}/v1/cache").raise_for_status()
    engine.script = prefer(lambda a, b: len(a) >= len(b))
    engine.probability = None
    engine.calls.clear()
    engine.probes.clear()
    return url, engine


def shown_texts(engine) -> list[str]:  # type: ignore[no-untyped-def]
    return [t for c in engine.calls for t in (engine.shown(c).first, engine.shown(c).second)]


# -- degenerate answers --------------------------------------------------------------------------
@pytest.mark.parametrize(("response", "status"), [("", "empty"), ("  \n\t", "empty"),
                                                 (THINK + "  ", "empty"),
                                                 ("<think>never closes " * 5, "unclosed_reasoning")])
def test_a_degenerate_answer_forfeits_without_an_engine_call(svc, response, status):
    url, engine = svc
    out = post(url, "/v1/judge/pairwise", {"query": "q", "responses": [response, "fig"], "votes": 2})
    assert out["winner"] == 1 and out["decided_by"] == "forfeit" and out["votes"] == []
    assert out["answers"][0]["status"] == status and out["usage"]["engine_calls"] == 0
    assert engine.calls == []
    both = post(url, "/v1/judge/pairwise", {"query": "q", "responses": [response, ""]})
    assert both["winner"] is None and both["decided_by"] == "no_result"


def test_rank_plays_only_real_answers_and_ranks_degenerate_ones_last(svc):
    url, _ = svc
    for method in ("elo", "knockout"):
        out = post(url, "/v1/judge/rank", {"query": "q", "responses": ["", "kiwi", "<think>x", "banana", "fig"],
                                           "method": method})
        assert out["ranking"][-2:] == [0, 2] and out["best"] == 3
        assert all(0 not in m["pair"] and 2 not in m["pair"] for m in out["matches"])
        assert out["scores"][0] == {"index": 0, "status": "empty"}
        assert out["scores"][2] == {"index": 2, "status": "unclosed_reasoning"}
    one = post(url, "/v1/judge/rank", {"query": "q", "responses": ["", "kiwi"], "method": "knockout"})
    assert one["best"] == 1 and one["matches"] == [] and one["usage"]["engine_calls"] == 0


def test_v1_rewards_gives_degenerate_answers_the_lowest_reward(svc):
    url, _ = svc
    out = post(url, "/v1/rewards", {"groups": [
        {"query": "q", "responses": ["banana", "", "kiwi", "fig"], "method": "elo"},
        {"query": "q", "responses": ["", "apple"], "method": "knockout"},
        {"query": "q", "responses": [""]},
        {"query": "q", "responses": ["alone"]},
        {"query": "q", "responses": ["<think>and then I never stop", "fig", "kiwi"]},
    ]})
    g = out["groups"]
    assert g[0]["empty"] == [False, True, False, False] and g[0]["rewards"][1] == -1.0
    assert g[0]["rewards"][1] <= min(g[0]["rewards"]) and g[0]["rewards"][0] == 1.0
    assert g[1]["rewards"][0] == -1.0 and g[1]["neutral"] == [False, True]  # the real one: no judged result
    assert g[2]["rewards"] == [-1.0] and g[2]["empty"] == [True] and g[2]["neutral"] == [False]
    assert g[3]["rewards"] == [0.0] and g[3]["neutral"] == [True]
    assert g[4]["empty"] == [True, False, False] and g[4]["rewards"] == [-1.0, -1.0, 1.0]
    assert g[4]["answers"][0]["status"] == "unclosed_reasoning"


def test_empty_response_reward_is_configurable_but_never_above_a_real_answer(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), empty_response_reward=0.5)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        g = post(url, "/v1/rewards", {"groups": [{"query": "q", "responses": ["banana", "", "kiwi", "fig"]},
                                                 {"query": "q", "responses": [""]}]})["groups"]
        # Capped by the group's lowest real reward (fig loses everything: -1); alone it is as set.
        assert g[0]["rewards"][1] == min(g[0]["rewards"][i] for i in (0, 2, 3)) == -1.0
        assert g[1]["rewards"] == [0.5]


def test_get_reward_empty_and_unclosed_in_both_modes(svc):
    url, engine = svc
    queries = [PROMPT + "A ripe banana.<|im_end|>", PROMPT + "<|im_end|>", PROMPT + "<think>hmm, maybe<|im_end|>"]
    ref = post(url, "/get_reward", {"query": queries, "prompts": [PROMPT] * 3, "labels": ["fig"] * 3,
                                    "mode": "reference"})
    assert ref["rewards"] == [1.0, -1.0, -1.0] and ref["extra_logs"]["rrm_empty"] == [0.0, 1.0, 1.0]
    assert len(engine.calls) == 2  # only the real answer was judged (two votes, both orders)
    grp = post(url, "/get_reward", {"query": queries + [PROMPT + "Kiwi<|im_end|>"], "prompts": [PROMPT] * 4,
                                    "mode": "group"})
    assert grp["extra_logs"]["rrm_empty"] == [0.0, 1.0, 1.0, 0.0]
    assert grp["rewards"][1] == grp["rewards"][2] == -1.0 and grp["rewards"][0] == 1.0
    assert "" not in shown_texts(engine)


# -- what the judge reads ------------------------------------------------------------------------
def test_reasoning_is_stripped_before_judging(svc):
    url, engine = svc
    body = {"query": "q", "responses": [THINK + "fig", "banana"], "votes": 2}
    out = post(url, "/v1/judge/pairwise", body)
    assert out["winner"] == 1 and out["answers"][0]["reasoning_stripped"] is True
    assert set(shown_texts(engine)) == {"fig", "banana"}
    assert post(url, "/v1/judge/pairwise", {**body, "strip_reasoning": "off"})["winner"] == 0
    # on: a reasoning policy's answer without its closing tag has no answer.
    on = post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["banana", "fig"], "strip_reasoning": "on"})
    assert on["decided_by"] == "no_result" and {a["status"] for a in on["answers"]} == {"unclosed_reasoning"}
    tags = post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["[r]" + "x" * 40 + "[/r]fig", "banana"],
                                            "reasoning_tags": ["[r]", "[/r]"]})
    assert tags["winner"] == 1


def test_render_shows_exactly_what_the_judge_reads(svc):
    url, _ = svc
    r = post(url, "/v1/judge/render", {"query": "q", "responses": [THINK + "fig", " ".join(["word"] * 300)],
                                       "max_response_tokens": 5})
    assert "long careful" not in r["prompt_text"] and "### Assistant 1\n\nfig\n\n" in r["prompt_text"]
    assert r["answers"][1]["dropped_tokens"] > 290 and r["judged"] is True
    assert r["prompt_text"].count("word") == 5
    empty = post(url, "/v1/judge/render", {"query": "q", "responses": ["", "fig"]})
    assert empty["judged"] is False and empty["answers"][0]["status"] == "empty"


def test_max_response_tokens_judges_the_tail(svc):
    url, engine = svc
    long = "filler " * 200 + "The answer is 4."
    out = post(url, "/v1/judge/pairwise", {"query": "q", "responses": [long, "5"], "max_response_tokens": 6,
                                           "order": "fixed"})
    assert out["answers"][0]["dropped_tokens"] > 190
    assert engine.shown(engine.calls[0]).first.endswith("The answer is 4.")
    assert len(engine.shown(engine.calls[0]).first) < 40


# -- position-debiased verdicts -------------------------------------------------------------------
def test_a_position_driven_judge_gets_no_winner_over_both_orders(svc):
    url, engine = svc
    engine.script = lambda s: "\\boxed{Assistant 1}"  # always the response shown first
    engine.probability = lambda s: 0.8
    out = post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["kiwi", "fig"], "votes": 2})
    assert [v["shown_order"] for v in out["votes"]] in ([[0, 1], [1, 0]], [[1, 0], [0, 1]])
    assert out["winner"] is None and out["position_consistent"] is False and out["confidence"] == 0.5
    assert out["p_first"] == pytest.approx(0.5) and out["decided_by"] == "draw"  # a tie of the mean p
    # The same votes in one order only: the judge's position preference passes for a verdict.
    fixed = post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["kiwi", "fig"], "votes": 2,
                                             "order": "fixed"})
    assert fixed["winner"] == 0 and fixed["position_consistent"] is None


def test_both_orders_winner_from_mean_probability(svc):
    url, engine = svc
    engine.script = prefer(lambda a, b: len(a) >= len(b))
    # Prefers the longer response, strongly when it is shown first (0.9), weakly when second (0.4 -> 0.6).
    engine.probability = lambda s: 0.9 if len(s.first) >= len(s.second) else 0.4
    out = post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["fig", "banana"], "votes": 2})
    assert out["decided_by"] == "probability" and out["position_consistent"] is True
    assert out["winner"] == 1 and out["p_first"] == pytest.approx(((1 - 0.9) + 0.4) / 2)


def test_rank_defaults_to_both_orders_from_two_votes(svc):
    url, _ = svc
    out = post(url, "/v1/judge/rank", {"query": "q", "responses": ["a", "bb", "ccc"], "votes": 2,
                                       "early_stop": False})
    for m in out["matches"]:
        assert sorted(v["shown_order"][0] for v in m["votes"]) == sorted(m["pair"])
        assert m["position_consistent"] is True
    one = post(url, "/v1/judge/rank", {"query": "q", "responses": ["a", "bb", "ccc"]})
    assert all(m["position_consistent"] is None for m in one["matches"])


def test_inconsistent_matches_get_more_votes_under_adaptive_allocation(svc):
    url, engine = svc
    engine.script = lambda s: "\\boxed{Assistant 1}"
    out = post(url, "/v1/judge/rank", {"query": "q", "responses": ["a", "bb", "ccc", "dddd"], "votes": 2,
                                       "method": "knockout", "adaptive_votes": 6, "verdict_probs": False})
    assert out["usage"]["votes_extra"] > 0
    assert all(len(m["votes"]) == 6 and m["position_consistent"] is False for m in out["matches"])


# -- official parser, ELO coin, sparse tournaments ----------------------------------------------------
@pytest.mark.parametrize(("text", "lenient", "official"), [
    ("Reasoning.\n\\boxed{Assistant 1}", 0, None),  # no </think>: the official needs one
    ("</think>\n\\boxed{ Assistant 1 }", 0, None),  # whitespace: lenient only
    ("</think>\\boxed{Assistant 2}", 1, 1),
    ("x</think>\\boxed{Assistant 2}</think>\\boxed{Assistant 1}", 0, 1),  # first vs last </think>
])
def test_verdict_parser_modes(svc, text, lenient, official):
    url, engine = svc
    engine.script = lambda s: text
    body = {"query": "q", "responses": ["kiwi", "fig"], "order": "fixed", "verdict_probs": False}
    assert post(url, "/v1/judge/pairwise", body)["winner"] == lenient
    assert post(url, "/v1/judge/pairwise", {**body, "verdict_parser": "official"})["winner"] == official


def test_elo_coin_gives_an_invalid_match_a_seeded_winner(svc):
    url, engine = svc
    engine.script = lambda s: "no verdict at all"
    body = {"query": "q", "responses": ["a", "bb", "ccc"], "invalid_matches": "coin", "seed": 3}
    out = post(url, "/v1/judge/rank", body)
    assert {m["decided_by"] for m in out["matches"]} == {"coin"}
    assert all(m["winner"] in m["pair"] for m in out["matches"]) and out["best"] is not None
    assert post(url, "/v1/judge/rank", body)["ranking"] == out["ranking"]


def test_sparse_elo_plays_a_connected_graph_rated_by_bradley_terry(svc):
    url, _ = svc
    responses = ["x" * (i + 1) for i in range(12)]
    out = post(url, "/v1/judge/rank", {"query": "q", "responses": responses, "opponents": 3, "seed": 1})
    pairs = [tuple(m["pair"]) for m in out["matches"]]
    assert len(pairs) == 12 * 3 // 2 and is_connected(12, pairs)
    # The best lost none of its games (on a sparse graph several may be unbeaten; the longest is).
    best = out["best"]
    assert all(m["winner"] == best for m in out["matches"] if best in m["pair"])
    assert all(m["winner"] == 11 for m in out["matches"] if 11 in m["pair"])
    assert out["scores"][best]["rating"] == max(s["rating"] for s in out["scores"])
    full = post(url, "/v1/judge/rank", {"query": "q", "responses": responses, "seed": 1})
    assert len(full["matches"]) == 66


@pytest.mark.parametrize(("body", "needle"), [
    ({"responses": ["a", "b", "c"], "opponents": 3}, "below the number of responses"),
    ({"responses": ["a", "b", "c"], "opponents": 1, "method": "knockout"}, "method=elo"),
])
def test_bad_opponents_are_400s_naming_the_field(svc, body, needle):
    url, _ = svc
    err = post(url, "/v1/judge/rank", {"query": "q", **body}, status=400)["error"]
    assert err["param"] == "opponents" and needle in err["message"]


def test_metrics_report_position_and_degenerate_answers(svc):
    url, _ = svc
    post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["kiwi", "fig"], "votes": 2})
    post(url, "/v1/judge/pairwise", {"query": "q", "responses": ["", "fig"]})
    text = httpx.get(url + "/metrics").text
    assert 'rrm_verdict_slots_total{slot="1"}' in text and 'rrm_verdict_slots_total{slot="2"}' in text
    assert 'rrm_degenerate_answers_total{status="empty"}' in text


def test_reference_reward_from_the_debiased_probability(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer)
    # Longer is better, p 0.9 when the better one is shown first, 0.3 -> 0.7 when second.
    engine.probability = lambda s: 0.9 if len(s.first) >= len(s.second) else 0.3
    settings = Settings(model=str(model_dir), reward_score="probability", reward_votes=2)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        out = post(url, "/get_reward", {"query": [PROMPT + "A ripe banana.<|im_end|>", PROMPT + "<|im_end|>"],
                                        "prompts": [PROMPT] * 2, "labels": ["fig"] * 2, "mode": "reference"})
    assert out["scores"][0] == pytest.approx((0.9 + 0.7) / 2) and out["rewards"][0] == pytest.approx(0.6)
    assert out["rewards"][1] == -1.0 and out["extra_logs"]["rrm_empty"] == [0.0, 1.0]


def test_v1_rewards_sparse_groups(svc):
    url, _ = svc
    responses = ["x" * (i + 1) for i in range(8)]
    g = post(url, "/v1/rewards", {"groups": [{"query": "q", "responses": responses, "opponents": 2},
                                             {"query": "q", "responses": responses[:3], "opponents": 2}]})["groups"]
    assert g[0]["usage"]["votes_used"] == 8  # a ring: each response meets 2 others
    assert g[0]["rewards"][7] == 1.0 and g[0]["rewards"][0] == -1.0
    assert g[1]["usage"]["votes_used"] == 3  # a group of 3 plays all its pairs


def test_group_deadline_still_gives_degenerate_samples_the_lowest_reward(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, delay=2.0)  # slower than the group's deadline
    settings = Settings(model=str(model_dir), reward_mode="group", reward_group_size=3, reward_group_wait=5,
                        reward_group_deadline=0.3)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        out = post(url, "/get_reward", {"query": [PROMPT + t + "<|im_end|>" for t in ("Kiwi", "", "Fig")],
                                        "prompts": [PROMPT] * 3})
    assert out["extra_logs"]["rrm_neutral"] == [1.0, 0.0, 1.0]  # the real ones: no result in time
    assert out["rewards"] == [0.0, -1.0, 0.0] and out["extra_logs"]["rrm_empty"] == [0.0, 1.0, 0.0]
