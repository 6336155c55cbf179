"""The reliability and soak benchmarks at tiny sizes on the real engine, so they cannot rot. Their
figures are recorded in docs/reliability.md; here only that they run and count correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._common import PANDALM, missing_data

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1200)]


def run(out: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "RRM_BENCH_RESULTS": str(out)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads((out / f"{args[0].rsplit('.', 1)[1]}.json").read_text())


def test_overload_flood_is_counted_whole(tmp_path):
    r = run(tmp_path, "benchmarks.reliability", "--only", "overload", "--flood", "200")["overload"]
    statuses = {int(k): v for k, v in r["statuses"].items()}
    assert set(statuses) <= {200, 429} and sum(statuses.values()) + r["lost"] == 200
    assert r["lost"] == 0 and r["errors_not_in_the_error_shape"] == 0
    assert statuses.get(429, 0) == r["rejected_metric"] > 0  # 200 at once against 8 + 64 admitted
    assert statuses[200] >= 72
    assert r["memory_peak"]["api_mib"] >= r["memory_before"]["api_mib"] > 0


@pytest.mark.redis  # the machine's Redis, under a prefix of the soak's own
def test_soak_runs_mixed_traffic_without_unexpected_failures(tmp_path):
    if why := missing_data(PANDALM):
        pytest.skip(why)
    r = run(tmp_path, "benchmarks.soak", "--minutes", "0.75", "--window", "5", "--clients", "3", "--warmup", "0")
    assert r["unexpected"] == 0, r["unexpected_examples"]
    assert r["canaries"] >= 2 and len(r["windows"]) >= 8
    assert r["requests"] == (sum(r["answered_ok"].values()) + r["expected_400s"] + r["clients_left_mid_request"]
                             + r["canaries"])
    assert r["expected_400s"] >= 0 and r["memory_end"]["engine_mib"] > 0
