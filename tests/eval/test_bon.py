"""Best-of-N on a GSM8K-format excerpt through /v1/judge/rank (LocalJudge.rank) on the scripted engine."""

from __future__ import annotations

import json

from rrm_server.eval.cli import parse_args, run_command
from rrm_server.eval.records import BonRecord
from tests.support.engines import Shown, prefer


def gsm8k(path, questions: list[tuple[str, list[tuple[str, bool]]]]):  # type: ignore[no-untyped-def]
    lines = []
    for q, cands in questions:
        row = {"question": q, "ground_truth": "A: 1"}
        for i, (text, ok) in enumerate(cands):
            row[f"model_{i}"] = {"is_correct": ok, "solution": text}
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


QUESTIONS = [
    ("Q0", [("RIGHT 0a", True), ("wrong 0b", False), ("wrong 0c", False), ("wrong 0d", False)]),
    ("Q1 all right: left out", [(f"RIGHT 1{c}", True) for c in "abcd"]),
    ("Q2", [("wrong 2a", False), ("RIGHT 2b", True), ("RIGHT 2c", True), ("wrong 2d", False)]),
    ("Q3", [("wrong 3a", False), ("wrong 3b", False), ("wrong 3c", False), ("RIGHT 3d", True)]),
]


async def test_a_judge_that_knows_picks_right(tmp_path, make_backend):
    backend, engine = await make_backend(script=prefer(lambda a, b: "RIGHT" in a and "RIGHT" not in b
                                                       or ("RIGHT" in a) == ("RIGHT" in b) and a < b))
    data = gsm8k(tmp_path / "bon.jsonl", QUESTIONS)
    out = tmp_path / "out"
    rc = await run_command(parse_args(["bon", "--data", str(data), "--out", str(out), "--no-progress"]),
                           backend)
    assert rc == 0
    recs = [BonRecord.model_validate_json(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r.id for r in recs] == ["gsm8k-0", "gsm8k-2", "gsm8k-3"]  # the all-right question is left out
    for r in recs:
        assert set(r.methods) == {"elo", "knockout"}
        assert all(r.correct[j.best] for j in r.methods.values())
        assert len(r.methods["elo"].ranking) == 4 and r.methods["elo"].decided_by == {"majority": 6}
    s = json.loads((out / "summary.json").read_text())
    m = s["metrics"]
    assert abs(m["random"]["value"] - (0.25 + 0.5 + 0.25) / 3) < 1e-9
    assert (m["oracle"]["k"], m["oracle"]["n"]) == (3, 3)
    for method in ("elo", "knockout"):
        mm = m["methods"][method]
        assert (mm["selection_accuracy"]["k"], mm["selection_accuracy"]["n"]) == (3, 3)
        assert abs(mm["lift_over_random"] - (1 - 1 / 3)) < 1e-9
        assert mm["tokens"]["judgments"] == 3
    # ELO plays all 6 pairs per question; knockout's 3 matches are among them, and with the same
    # seed the same comparison is the same vote: the cache computes each comparison once.
    assert len(engine.calls) == 3 * 6
    assert sum(m["methods"][k]["tokens"]["engine_calls"] for k in ("elo", "knockout")) == 3 * 6
    md = (out / "summary.md").read_text()
    for row in ("| random (expected) | 3 | 0.333", "| elo | 3 | 1.000", "| oracle | 3 | 1.000"):
        assert row in md
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


async def test_no_cache_costs_each_method_separately(tmp_path, make_backend):
    backend, engine = await make_backend(script=prefer(lambda a, b: "RIGHT" in a))
    data = gsm8k(tmp_path / "bon.jsonl", QUESTIONS[:1])
    out = tmp_path / "out"
    rc = await run_command(parse_args(["bon", "--data", str(data), "--out", str(out), "--no-progress",
                                       "--no-cache"]), backend)
    assert rc == 0 and len(engine.calls) == 6 + 3
    m = json.loads((out / "summary.json").read_text())["metrics"]["methods"]
    assert (m["elo"]["tokens"]["engine_calls"], m["knockout"]["tokens"]["engine_calls"]) == (6, 3)
    assert m["knockout"]["tokens"]["prompt_tokens"] > 3 * 100


async def test_an_invalid_judge_never_counts_as_right(tmp_path, make_backend):
    def never(s: Shown) -> str:
        return "No idea."

    backend, engine = await make_backend(script=never)
    data = gsm8k(tmp_path / "bon.jsonl", QUESTIONS)
    out = tmp_path / "out"
    rc = await run_command(parse_args(["bon", "--data", str(data), "--out", str(out), "--no-progress",
                                       "--methods", "elo", "knockout", "--limit", "2"]), backend)
    assert rc == 0
    m = json.loads((out / "summary.json").read_text())["metrics"]
    elo, ko = m["methods"]["elo"], m["methods"]["knockout"]
    # ELO without one decisive game picks nothing: counted wrong and reported as no_pick.
    assert (elo["selection_accuracy"]["k"], elo["no_pick"]["k"], elo["n"]) == (0, 2, 2)
    assert elo["matches_decided_by"] == {"no_result": 12}
    assert elo["invalid_vote_reasons"] == {"no_verdict": 12} and elo["invalid_votes"]["value"] == 1.0
    # Knockout settles every match by a coin: a pick, but every match says so.
    assert ko["no_pick"]["k"] == 0 and ko["matches_decided_by"] == {"tiebreak": 6}


async def test_bon_resumes_per_question(tmp_path, make_backend):
    backend, engine = await make_backend(script=prefer(lambda a, b: "RIGHT" in a))
    data = gsm8k(tmp_path / "bon.jsonl", QUESTIONS)
    out = tmp_path / "out"
    argv = ["bon", "--data", str(data), "--out", str(out), "--no-progress", "--methods", "knockout"]
    assert await run_command(parse_args([*argv, "--limit", "1"]), backend) == 0
    engine.calls.clear()
    assert await run_command(parse_args(argv), backend) == 0
    assert {engine.shown(c).query for c in engine.calls} == {"Q2", "Q3"}
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # The methods are part of the run's settings.
    assert await run_command(parse_args(["bon", "--data", str(data), "--out", str(out), "--no-progress"]),
                             backend) == 2
