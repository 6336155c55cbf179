"""Summaries of PandaLM and LLMBar excerpts: what summary.json, summary.md and the plot contain."""

from __future__ import annotations

import json
import sys

from rrm_server.eval.cli import parse_args, run_command
from rrm_server.eval.metrics import Rate, pair_metrics
from rrm_server.eval.report import (
    PAIR_COUNTING,
    PairSummary,
    RunInfo,
    fmt_rate,
    pair_markdown,
)


def pandalm_rows() -> list[dict]:
    def row(idx: int, r1: str, r2: str, ann: tuple[int, int, int], inp: str = "") -> dict:
        return {"idx": idx, "instruction": f"Task {idx}.", "input": inp, "response1": r1, "response2": r2,
                "annotator1": ann[0], "annotator2": ann[1], "annotator3": ann[2]}

    return [
        row(0, "GOOD", "meh", (1, 1, 2), inp="context"),  # label a, judge a: right
        row(1, "meh", "GOOD", (2, 2, 0)),                  # label b, judge b: right
        row(2, "fine", "also fine", (0, 0, 1)),            # label tie, judge a (first shown): wrong
        row(3, "x", "y", (0, 1, 2)),                       # no majority: tie label; judge a: wrong
        row(4, "GOOD", "bad", (2, 2, 2)),                  # label b, judge a: wrong
        row(5, "NOVERDICT", "z", (1, 1, 1)),               # invalid: wrong
    ]


async def test_pandalm_summary_with_and_without_ties(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = tmp_path / "testset-v1.json"
    data.write_text(json.dumps(pandalm_rows()))
    out = tmp_path / "out"
    rc = await run_command(parse_args(["pandalm", "--data", str(data), "--out", str(out), "--order", "fixed",
                                       "--no-progress"]), backend)
    assert rc == 0
    assert engine.shown(engine.calls[0]).query == "Task 0.\n\ncontext"
    s = json.loads((out / "summary.json").read_text())
    o = s["overall"]
    assert o["labels"] == {"a": 2, "b": 2, "tie": 2}
    assert (o["accuracy"]["k"], o["accuracy"]["n"]) == (2, 6)
    assert (o["accuracy_without_ties"]["k"], o["accuracy_without_ties"]["n"]) == (2, 4)
    assert o["invalid_items"]["k"] == 1 and o["invalid_judgment_reasons"] == {"no_verdict": 1}
    assert s["counting"] == PAIR_COUNTING and s["subsets"] == {}
    assert s["run"]["settings"]["kind"] == "pandalm" and s["run"]["complete"]
    assert s["plot"] == "summary.png"
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "summary.md").read_text()
    assert "| all | 6 | 0.333 [" in md and "(2/6)" in md and "(2/4)" in md  # with and without ties
    assert "invalid judgments (requests without a valid vote)" in md and "no_verdict 1" in md
    assert "count as incorrect in accuracy" in md and "![summary](summary.png)" in md


def _llmbar(root) -> None:  # type: ignore[no-untyped-def]
    def put(rel: str, rows: list[dict]) -> None:
        d = root / "Dataset" / rel
        d.mkdir(parents=True)
        (d / "dataset.json").write_text(json.dumps(rows))

    def r(o1: str, o2: str, label: int) -> dict:
        return {"input": f"Instruction {o1}/{o2}", "output_1": o1, "output_2": o2, "label": label}

    put("LLMBar/Natural", [r("GOOD", "b", 1), r("a", "GOOD", 2)])           # 2/2
    put("LLMBar/Adversarial/Neighbor", [r("GOOD", "b", 2), r("a", "c", 2)])  # 0/2
    put("LLMBar/Adversarial/GPTOut", [r("a", "GOOD", 2), r("NOVERDICT", "c", 1)])  # 1/2, one invalid
    put("Processed/MT-Bench", [r("GOOD", "other", 1)])


async def test_llmbar_per_subset_and_groups(tmp_path, make_backend):
    backend, engine = await make_backend()
    _llmbar(tmp_path / "llmbar")
    out = tmp_path / "out"
    rc = await run_command(parse_args(["llmbar", "--data", str(tmp_path / "llmbar"), "--out", str(out),
                                       "--order", "fixed", "--no-progress"]), backend)
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["run"]["n_selected"] == 6  # the default selection: Natural and Adversarial, not Processed
    acc = {name: (m["accuracy"]["k"], m["accuracy"]["n"]) for name, m in s["subsets"].items()}
    assert acc == {"Natural": (2, 2), "Adversarial/Neighbor": (0, 2), "Adversarial/GPTOut": (1, 2)}
    groups = {g: (m["accuracy"]["k"], m["accuracy"]["n"]) for g, m in s["groups"].items()}
    assert groups == {"Adversarial": (1, 4)}
    assert s["subsets"]["Adversarial/GPTOut"]["invalid_items"]["k"] == 1
    assert (s["overall"]["accuracy"]["k"], s["overall"]["accuracy"]["n"]) == (3, 6)
    assert s["overall"]["accuracy_without_ties"] is None  # LLMBar has no tie labels
    md = (out / "summary.md").read_text()
    for line in ("| Natural | 2 | 1.000", "| Adversarial (group) | 4 | 0.250",
                 "| Adversarial/Neighbor | 2 | 0.000"):
        assert line in md

    # Add a subset to the same run: only its items are judged, the summary covers the new selection.
    engine.calls.clear()
    rc = await run_command(parse_args(["llmbar", "--data", str(tmp_path / "llmbar"), "--out", str(out),
                                       "--order", "fixed", "--no-progress", "--subsets", "all"]), backend)
    assert rc == 0 and len(engine.calls) == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["run"]["n_done"] == 7 and "Processed/MT-Bench" in s["subsets"]
    # And a narrower selection summarises only its own items; the others are noted, not counted.
    rc = await run_command(parse_args(["llmbar", "--data", str(tmp_path / "llmbar"), "--out", str(out),
                                       "--order", "fixed", "--no-progress", "--subsets", "Natural"]), backend)
    s = json.loads((out / "summary.json").read_text())
    assert rc == 0 and s["overall"]["n"] == 2 and s["run"]["n_other"] == 5


async def test_missing_matplotlib_skips_the_plot_with_a_note(tmp_path, make_backend, monkeypatch, capsys):
    backend, _ = await make_backend()
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"query": "q", "response_a": "GOOD", "response_b": "b", "label": "a"}) + "\n")
    out = tmp_path / "out"
    (out).mkdir()
    (out / "summary.png").write_bytes(b"stale")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc = await run_command(parse_args(["jsonl", "--data", str(data), "--out", str(out), "--no-progress"]),
                           backend)
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["plot"] is None and "matplotlib is not installed" in s["plot_note"]
    assert not (out / "summary.png").exists()  # a stale plot would contradict the numbers
    assert "_Plot: skipped: matplotlib is not installed" in (out / "summary.md").read_text()
    assert "plot skipped" in capsys.readouterr().out


def test_markdown_of_an_empty_selection():
    run = RunInfo(kind="jsonl", settings={"data": "x", "model": "m", "judge": {"votes": 1}}, target="local",
                  n_selected=3, n_done=0, n_pending=3, complete=False, elapsed_s=0.0,
                  wall_s_per_judgment=None)
    md = pair_markdown(PairSummary(run=run, overall=pair_metrics([])))
    assert "incomplete: 3 items pending" in md and "| all | 0 | – |" in md


def test_fmt_rate():
    assert fmt_rate(Rate.of(1, 2)) == "0.500 [0.095, 0.905] (1/2)"
    assert fmt_rate(Rate.of(0, 0)) == "–" and fmt_rate(None) == "–"
