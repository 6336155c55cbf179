"""The command line: argument checks, and the whole command against a running service (--url)."""

from __future__ import annotations

import json

import pytest

from rrm_server.api.app import build_app
from rrm_server.eval.cli import main, parse_args
from rrm_server.eval.data import DEFAULT_PATHS
from rrm_server.settings import Settings
from tests.eval.conftest import PAIRS, marker_judge, write_jsonl
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread


@pytest.mark.parametrize("argv, message", [
    (["jsonl"], "jsonl needs --data"),
    (["pandalm", "--both-orders", "--order", "random"], "drop --order"),
    (["bon", "--both-orders"], "not bon"),
    (["pandalm", "--votes", "0"], "must be at least 1"),
    (["pandalm", "--seed", "-1"], "must not be negative"),
    (["pandalm", "--model", "m", "--url", "http://x"], "--model selects the in-process judge"),
    (["pandalm", "--data", "/nonexistent/file.json"], "data not found at /nonexistent/file.json"),
    (["bon", "--methods", "borda"], "invalid choice: 'borda'"),
    (["squad"], "invalid choice: 'squad'"),
])
def test_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--both-orders", "--votes", "--max-thinking-tokens", "--concurrency", "--limit", "--url"):
        assert flag in out


def test_defaults(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for rel in DEFAULT_PATHS.values():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("[]")
    monkeypatch.setenv("RRM_EVAL_DATA", str(data))
    o = parse_args(["llmbar"])
    assert o.data == data / "llmbar" / "Dataset" and str(o.out) == "eval-runs/llmbar"
    assert (o.judge.order, o.judge.votes, o.judge.seed) == ("random", 1, 0)
    assert o.methods == ["elo", "knockout"]
    o = parse_args(["pandalm", "--both-orders"])
    assert o.judge.order == "fixed" and o.both_orders
    assert parse_args(["bon"]).data == data / "gsm8k-bon" / "example_model_solutions.jsonl"


def test_main_against_a_running_service(tmp_path, model_dir, tokenizer, capsys):
    """--url: the HTTP client, the server's refusals recorded as failed judgments, a resumable run."""
    engine = ScriptedEngine(tokenizer=tokenizer, script=marker_judge)
    long = {"id": "long", "query": "q7", "response_a": "word " * 5000, "response_b": "b", "label": "a"}
    rows = [*PAIRS, long]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out"
    app = build_app(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer)
    with serve_in_thread(app) as url:
        common = ["jsonl", "--data", str(data), "--url", url, "--order", "fixed", "--no-progress"]
        argv = [*common, "--out", str(out)]
        assert main([*argv, "--limit", "3"]) == 0
        assert main(argv) == 0
        # A setting the server refuses for every item stops the run at once; nothing is recorded.
        assert main([*common, "--out", str(tmp_path / "bad"), "--max-tokens", "100000"]) == 1
    err = capsys.readouterr().err
    assert "stopped" in err and "max_tokens" in err
    assert not (tmp_path / "bad" / "results.jsonl").read_text()
    assert len(engine.calls) == 6  # six judged items; the long one was refused before reaching the engine
    s = json.loads((out / "summary.json").read_text())
    assert s["run"]["n_done"] == 7 and s["run"]["target"] == url
    assert s["run"]["settings"]["model"] == "scripted-judge"  # what the service serves (/v1/models)
    o = s["overall"]
    assert o["invalid_judgment_reasons"] == {"context_length_exceeded": 1, "no_verdict": 1, "truncated": 1}
    assert (o["accuracy"]["k"], o["accuracy"]["n"]) == (2, 7)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 7 and len({json.loads(x)["id"] for x in lines}) == 7
    assert len((out / "sessions.jsonl").read_text().splitlines()) == 2


def test_unreachable_service(tmp_path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "o"
    assert main(["jsonl", "--data", str(data), "--out", str(out), "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the judge at http://127.0.0.1:9" in capsys.readouterr().err
