"""Deadlines and early exit over HTTP: a request that runs out of time answers 200 with forced
verdicts (exit: deadline) instead of 504; the knobs are checked, a bad one is a 400 naming it."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine, Shown
from tests.support.server import serve_in_thread

OK = {"query": "q", "responses": ["a", "bb"]}


def long_thought(s: Shown) -> str:
    return " ".join(["step"] * 400) + "\n\\boxed{Assistant 1}"  # 400 tokens: 20 s at 50 ms a token


@contextlib.contextmanager
def service(model_dir, tokenizer, **overrides):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer, script=long_thought, token_delay=0.05,
                            probability=lambda s: 0.8 if len(s.first) > len(s.second) else 0.2)  # longer wins
    settings = Settings(model=str(model_dir), model_fingerprint="test", max_deadline=60, **overrides)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url, engine


def metric(url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    return 0.0


def test_the_server_deadline_answers_with_forced_verdicts_where_it_gave_504(model_dir, tokenizer):
    with service(model_dir, tokenizer, request_timeout=1.5) as (url, engine):
        hits = metric(url, "rrm_deadline_hits_total")
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/judge/pairwise", json={**OK, "votes": 2, "early_stop": False}, timeout=30)
        assert time.monotonic() - started < 1.5
        assert r.status_code == 200, r.text
        body = r.json()
        assert [v["exit"] for v in body["votes"]] == ["deadline", "deadline"]
        assert all(v["forced"] and v["verdict"] and 0 < v["generated_tokens"] < 400 for v in body["votes"])
        assert body["winner"] == 1 and body["p_first"] == pytest.approx(0.2)
        assert body["usage"]["exits"] == {"deadline": 2}
        assert len([c for c in engine.cancelled if not c.endswith("-f")]) == 2  # the thinking was aborted
        assert metric(url, "rrm_deadline_hits_total") == hits + 1
        # Forced by time, never cached: the same request judged again thinks again.
        r2 = httpx.post(f"{url}/v1/judge/pairwise", json={**OK, "votes": 2, "early_stop": False}, timeout=30)
        assert [v["source"] for v in r2.json()["votes"]] == ["computed", "computed"]


@pytest.mark.parametrize("how", ["body", "header"])
def test_a_caller_deadline_closes_a_knockout_in_time(model_dir, tokenizer, how):
    body = {"query": "q", "responses": ["a", "bb", "ccc", "dddd"], "method": "knockout"}
    headers = {}
    if how == "body":
        body["deadline_s"] = 1.2
    else:
        headers["X-Request-Deadline"] = "1.2"
    with service(model_dir, tokenizer) as (url, engine):
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/judge/rank", json=body, headers=headers, timeout=30)
        assert time.monotonic() - started < 2.5
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["best"] is not None
    votes = [v for m in out["matches"] for v in m["votes"]]
    assert {v["exit"] for v in votes} == {"deadline"}
    # The final started after the close: played without thinking, a verdict all the same.
    final = max(out["matches"], key=lambda m: m["round"])
    assert all(v["generated_tokens"] == 0 and v["verdict"] for v in final["votes"])


def test_early_exit_stops_thinking_once_the_verdict_is_settled(model_dir, tokenizer):
    with service(model_dir, tokenizer) as (url, engine):
        engine.token_delay = 0.005
        r = httpx.post(f"{url}/v1/judge/pairwise", json={**OK, "early_exit": True, "exit_confidence": 0.75,
                                                         "probe_every": 16}, timeout=30)
        assert r.status_code == 200, r.text
        v = r.json()["votes"][0]
        assert v["exit"] == "early" and v["forced"] and 16 <= v["generated_tokens"] < 40
        u = r.json()["usage"]
        assert u["exit_probes"] == 1 and u["exits"] == {"early": 1}
        assert u["thinking_tokens_saved"] > 0
        assert metric(url, "rrm_exit_probes_total") >= 1


@pytest.mark.parametrize(("fields", "headers", "param"), [
    ({"early_exit": True, "exit_confidence": 0.5}, {}, "exit_confidence"),
    ({"early_exit": True, "exit_confidence": 1.01}, {}, "exit_confidence"),
    ({"early_exit": True, "probe_every": 0}, {}, "probe_every"),
    ({"exit_confidence": 0.9}, {}, "exit_confidence"),  # early exit is off
    ({"deadline_s": 0}, {}, "deadline_s"),
    ({"deadline_s": -3}, {}, "deadline_s"),
    ({"deadline_s": 61}, {}, "deadline_s"),  # beyond --max-deadline
    ({}, {"X-Request-Deadline": "soon"}, "X-Request-Deadline"),
    ({}, {"X-Request-Deadline": "-1"}, "X-Request-Deadline"),
    ({}, {"X-Request-Deadline": "3600"}, "X-Request-Deadline"),
])
def test_bad_exit_and_deadline_knobs_are_400s_naming_the_field(model_dir, tokenizer, fields, headers, param):
    with service(model_dir, tokenizer) as (url, engine):
        r = httpx.post(f"{url}/v1/judge/pairwise", json={**OK, **fields}, headers=headers, timeout=30)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
        assert engine.calls == []
