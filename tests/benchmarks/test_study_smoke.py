"""The model-free studies run (the README quotes their figures): the strategy study with sparse
tournaments on the simulated judge, and the reasoning-stripping token count. Tiny sizes; no engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._common import GSM8K_BON, missing_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path):  # type: ignore[no-untyped-def]
    if why := missing_data(GSM8K_BON):  # both studies read the GSM8K best-of-N candidates
        pytest.skip(why)

    def go(*args: str) -> dict:
        env = {**os.environ, "RRM_BENCH_RESULTS": str(tmp_path)}  # never overwrite recorded results
        proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads((tmp_path / f"{args[0].split('.')[-1]}.json").read_text())

    return go


# a benchmark script in a subprocess: ~7 s
@pytest.mark.slow
def test_strategy_study_with_sparse_tournaments(run, tmp_path):
    out = run("benchmarks.strategy_study", "--limit", "8", "--sizes", "4", "--sparse-sizes", "4,8",
              "--real-questions", "0", "--out-dir", str(tmp_path))
    assert {r["config"] for r in out["simulated"]} >= {"elo fixed k=5", "knockout adaptive 1..5"}
    rows = {(r["n"], r["config"]): r for r in out["sparse"]}
    assert (4, "elo sparse m=4") not in rows  # opponents must be below N
    assert rows[(8, "elo full k=1")]["calls_per_question"] == 28
    assert rows[(8, "elo sparse m=2")]["calls_per_question"] == 8
    assert rows[(8, "elo sparse m=4")]["calls_per_question"] == 16
    assert rows[(8, "knockout k=1")]["calls_per_question"] == 7
    assert all(0 <= r["accuracy"] <= 1 for r in out["sparse"])
    assert (tmp_path / "sparse_study.png").stat().st_size > 0


# its subprocess loads the tokenizer via ensure_bundled_model()
@pytest.mark.weights
def test_reasoning_strip_counts_saved_tokens(run):
    out = run("benchmarks.reasoning_strip", "--questions", "10")
    assert out["comparisons"] == 30
    assert out["prompt_tokens_mean"]["strip_auto"] < out["prompt_tokens_mean"]["strip_off"]
    assert 0 < out["saved_share_of_response_tokens"] < 1
