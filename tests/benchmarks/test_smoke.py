"""The whole benchmark harness in smoke mode (tiny sizes, real engines, real servers), so it cannot
rot. Speed is not asserted here (see benchmarks/ and docs/benchmarks.md); structure and sanity are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The fixture runs every suite (several engine starts): minutes, not the default 10-minute cap.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    from benchmarks.run_all import SUITES, missing_data

    if why := missing_data(list(SUITES)):  # every suite runs in the one fixture
        pytest.skip(why)
    out = tmp_path_factory.mktemp("bench-smoke")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def load(out: Path, name: str) -> dict:
    d = json.loads((out / f"{name}.json").read_text())
    assert d["smoke"] is True and d["machine"]["cores"] >= 1 and d["command"].startswith("python -m benchmarks")
    return d


def test_gateway_overhead_and_load_curve(smoke):
    g = load(smoke, "gateway_overhead")
    assert g["latency"]["requests"] == 20 and 0 < g["latency"]["p50_ms"] <= g["latency"]["p99_ms"]
    assert g["throughput"]["comparisons"] == g["throughput"]["requests"] * 28 * 4 > 0
    lc = load(smoke, "load_curve")
    assert [r["clients"] for r in lc["rows"]] == [1, 4, 16]
    assert lc["no_errors_below_limit"] and lc["no_errors_at_all"] and lc["clean_429s"]
    # 16 clients against 4 served + 4 queued: some must have been turned away, the rest answered.
    last = lc["rows"][-1]
    assert last["rejected_429"] > 0 and last["ok"] + last["rejected_429"] == 16


def test_engine_efficiency(smoke):
    e = load(smoke, "engine_efficiency")
    ours, offline = e["rrm_server_http"], e["vllm_offline_generate"]
    # ignore_eos on both sides: exactly the same work.
    assert ours["generated_tokens"] == offline["generated_tokens"] == e["comparisons"] * e["max_tokens"]
    assert e["ratio"] > 0 and e["mean_prompt_tokens"] > 100


def test_naive_client_and_replicas(smoke):
    n = load(smoke, "naive_client")
    assert {(r["method"], r["n"]) for r in n["rows"]} == {("elo", 3), ("knockout", 3)}
    assert [r["comparisons"] for r in n["rows"]] == [3, 2]
    assert all(r["rrm_server_s"] > 0 and r["naive_sequential_s"] > 0 for r in n["rows"])
    r = load(smoke, "replicas")
    assert [row["arm"] for row in r["rows"]] == ["1 replica", "2 replicas, prefix affinity", "2 replicas, round robin"]
    for row in r["rows"]:
        assert row["failed"] == 0 and row["engine_calls"] == 12  # 4 responses: 6 pairs x 2 orders
        assert 0 <= row["prefix_cache_hit_rate"] <= 1 and sum(row["calls_per_replica"]) == 12
    assert r["rows"][2]["calls_per_replica"] == [6, 6]  # round robin


def test_ray_scaleout(smoke):
    r = load(smoke, "ray_scaleout")
    (row,) = r["rows"]
    assert row["arm"] == "ray, 1 replica" and row["failed"] == 0
    assert row["engine_calls"] == 2 * 12  # two waves of one ELO request: 6 pairs x 2 orders
    assert len(row["hit_rate_by_wave"]) == 2 and all(0 <= h <= 1 for h in row["hit_rate_by_wave"])
    # The second wave repeats the first's prompts: its engine found them in its prefix cache.
    assert row["hit_rate_by_wave"][1] > row["hit_rate_by_wave"][0]
    assert 0 < row["ready_s"] and 0 < r["summary"]["serve_run_ready_s"]


def test_thinking_exits(smoke):
    t = load(smoke, "thinking_exits")
    arms = {r["arm"]: r for r in t["arms"]}
    assert list(arms) == ["no budget", "no budget, streamed", "fixed budget 4", "early exit 0.75"]
    assert "deadline" not in arms["no budget, streamed"]["exits"]  # a far deadline: streamed, never closed
    assert all(r["judgments"] == 2 and r["valid"] == 2 for r in arms.values())  # rescue: a verdict each
    assert arms["fixed budget 4"]["tokens_per_judgment"] <= 4
    early = arms["early exit 0.75"]
    assert sum(early["exits"].values()) == 2 and 0 <= early["agreement_with_no_budget"] <= 1
    if early["exits"].get("early"):
        assert early["exit_probes"] >= early["exits"]["early"] and early["thinking_tokens_saved"] > 0
    plain, timed = t["deadlines"]
    assert plain["deadline_s"] is None and plain["deadline_hit_rate"] == 0
    assert timed["deadline_s"] == 2.0 and timed["votes_with_verdict"] == timed["votes"] == 4


def test_cold_start_and_report(smoke):
    c = load(smoke, "cold_start")
    assert 0 < c["seconds_to_health"] <= c["seconds_to_ready"]
    assert c["engine_processes"] and c["total_rss_mib"] > c["gateway_rss_mib"] > 0
    report = (smoke / "report.md").read_text()
    for heading in ("Engine efficiency", "naive client", "Gateway overhead", "Load curve", "Scale-out", "Ray Serve",
                    "Cold start"):
        assert heading in report
    assert "Smoke run" in report
