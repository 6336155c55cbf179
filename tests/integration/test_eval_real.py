"""`rrm-server eval` against the real service (bundled model on the vLLM CPU engine) via --url."""

from __future__ import annotations

import importlib.util
import json

import pytest

from rrm_server.eval.cli import main

pytestmark = [pytest.mark.engine, pytest.mark.redis]

ITEMS = [
    {"id": "arith", "query": "What is 2 + 2?", "response_a": "4", "response_b": "5", "label": "a"},
    {"id": "capital", "query": "What is the capital of France?", "response_a": "Berlin.",
     "response_b": "Paris is the capital of France.", "label": "b"},
    {"id": "greeting", "query": "Greet a new colleague politely.",
     "response_a": "Welcome aboard, nice to meet you!", "response_b": "Whatever.", "label": "a"},
]
VOTE_REASONS = {"truncated", "no_verdict", "malformed", "engine_error"}


def test_eval_jsonl_via_url(real_server, tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in ITEMS))
    out = tmp_path / "out"
    argv = ["jsonl", "--data", str(data), "--out", str(out), "--url", real_server.url, "--max-tokens", "8",
            "--seed", "3", "--concurrency", "3", "--no-progress"]
    assert main(argv) == 0

    for name in ("run.json", "results.jsonl", "sessions.jsonl", "summary.json", "summary.md"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    if importlib.util.find_spec("matplotlib"):
        assert s["plot"] == "summary.png" and (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert s["plot"] is None and "matplotlib" in s["plot_note"]
    assert s["run"]["complete"] and s["run"]["n_done"] == 3
    assert s["run"]["settings"]["model"] == "SmolLM2-135M-Instruct"
    assert s["run"]["settings"]["judge"]["max_tokens"] == 8

    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in recs) == sorted(x["id"] for x in ITEMS)
    judgments = [j for r in recs for j in r["judgments"]]
    for j in judgments:
        assert j["error"] is None and j["prompt_tokens"] > 100 and 0 < j["generated_tokens"] <= 8
        assert j["votes_a"] + j["votes_b"] + j["invalid_votes"] == 1

    o = s["overall"]
    assert o["n"] == 3 and o["tokens"]["judgments"] == 3
    assert o["tokens"]["generated_tokens"] == sum(j["generated_tokens"] for j in judgments)
    # Invalid judgments are counted, by the API's reasons, and never scored as correct.
    invalid = [r for r in recs if r["pick"] == "invalid"]
    assert o["invalid_items"]["k"] == len(invalid) == o["invalid_judgments"]["k"]
    assert sum(o["invalid_judgment_reasons"].values()) == len(invalid)
    assert set(o["invalid_vote_reasons"]) <= VOTE_REASONS
    assert sum(o["invalid_vote_reasons"].values()) == o["invalid_votes"]["k"]
    # Eight tokens are too few for the 135M model to reason and give a verdict.
    assert o["invalid_votes"]["k"] >= 1
    assert not any(r["correct"] for r in invalid)
    assert o["accuracy"]["k"] == sum(r["correct"] for r in recs) <= 3 - len(invalid)
    md = (out / "summary.md").read_text()
    assert "count as incorrect in accuracy" in md and "invalid judgments" in md

    # A rerun with the same settings has nothing left to do.
    assert main(argv) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
