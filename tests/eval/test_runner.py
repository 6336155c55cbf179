"""The eval command end to end on the scripted engine: judging, failures, resumption, refusal."""

from __future__ import annotations

import asyncio
import json

import pytest

from rrm_server.eval.cli import parse_args, run_command
from rrm_server.eval.records import PairRecord
from tests.eval.conftest import PAIRS, judged_queries, write_jsonl


def results(out) -> list[PairRecord]:  # type: ignore[no-untyped-def]
    return [PairRecord.model_validate_json(x) for x in (out / "results.jsonl").read_text().splitlines()]


def summary(out) -> dict:  # type: ignore[no-untyped-def]
    return json.loads((out / "summary.json").read_text())


def fixed(data, out) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    """A JSONL run with order=fixed: the marker judge's outcomes are then exactly known."""
    return ("jsonl", "--data", str(data), "--out", str(out), "--order", "fixed")


async def run(backend, *argv: str) -> int:  # type: ignore[no-untyped-def]
    return await run_command(parse_args([*argv, "--no-progress"]), backend)


async def test_jsonl_accuracy_invalids_and_ties(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, *fixed(data, out)) == 0
    recs = {r.id: r for r in results(out)}
    assert {i: r.pick for i, r in recs.items()} == {
        "good-a": "a", "good-b": "b", "judge-wrong": "a", "no-verdict": "invalid", "truncated": "invalid",
        "tie": "a"}
    assert recs["no-verdict"].judgments[0].reason == "no_verdict"
    assert recs["truncated"].judgments[0].reason == "truncated"
    o = summary(out)["overall"]
    assert (o["accuracy"]["k"], o["accuracy"]["n"]) == (2, 6)  # invalid items count as wrong
    assert (o["accuracy_without_ties"]["k"], o["accuracy_without_ties"]["n"]) == (2, 5)
    assert (o["accuracy_valid"]["k"], o["accuracy_valid"]["n"]) == (2, 4)
    assert o["invalid_judgment_reasons"] == {"no_verdict": 1, "truncated": 1}
    assert (o["invalid_votes"]["k"], o["invalid_votes"]["n"]) == (2, 6)
    assert o["tokens"]["judgments"] == 6 and o["tokens"]["prompt_tokens"] > 6 * 100
    assert o["tokens"]["generated_tokens"] > 0 and o["latency_s"]["n"] == 6
    # Every request carried the run's settings.
    assert len(engine.calls) == 6 and all(c.seed is not None for c in engine.calls)


async def test_both_orders_consistency_and_pooled_accuracy(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out), "--both-orders") == 0
    assert len(engine.calls) == 12
    recs = {r.id: r for r in results(out)}
    # The position-biased judge flips with the order on the undecidable item: pooled, a tie (= its label).
    tie = recs["tie"]
    assert [(j.swapped, j.pick) for j in tie.judgments] == [(False, "a"), (True, "b")]
    assert tie.pick == "tie" and tie.correct
    o = summary(out)["overall"]
    pc = o["position_consistency"]
    assert (pc["k"], pc["n"]) == (3, 4) and o["not_comparable"] == 2  # the two invalid items
    assert (o["accuracy"]["k"], o["accuracy"]["n"]) == (3, 6)
    assert o["accuracy_by_order"]["as_given"]["k"] == 2 and o["accuracy_by_order"]["swapped"]["k"] == 2
    assert (o["first_slot_rate"]["k"], o["first_slot_rate"]["n"]) == (5, 8)
    assert run_json(out)["judge"]["order"] == "fixed" and run_json(out)["judge"]["both_orders"] is True


def run_json(out) -> dict:  # type: ignore[no-untyped-def]
    return json.loads((out / "run.json").read_text())


async def test_refused_and_empty_items_are_counted_not_scored(tmp_path, make_backend):
    backend, engine = await make_backend()
    rows = [
        {"id": "long", "query": "q", "response_a": "GOOD " + "word " * 5000, "response_b": "b", "label": "a"},
        {"id": "empty", "query": "q", "response_a": "GOOD", "response_b": "   ", "label": "a"},
        {"id": "fine", "query": "q", "response_a": "GOOD", "response_b": "x", "label": "a"},
    ]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out"
    assert await run(backend, *fixed(data, out)) == 0
    recs = {r.id: r for r in results(out)}
    long = recs["long"].judgments[0]
    assert long.reason == "context_length_exceeded" and "context length" in long.error
    assert recs["empty"].judgments[0].reason == "empty_text"
    assert recs["long"].pick == recs["empty"].pick == "invalid" and not recs["long"].correct
    assert len(engine.calls) == 1  # only "fine" reached the engine
    o = summary(out)["overall"]
    assert o["invalid_judgment_reasons"] == {"context_length_exceeded": 1, "empty_text": 1}
    assert (o["accuracy"]["k"], o["accuracy"]["n"]) == (1, 3) and o["tokens"]["judgments"] == 1

    # With a placeholder the empty response is judged (a different run: the setting is in run.json).
    out2 = tmp_path / "out2"
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out2), "--order", "fixed",
                     "--empty-placeholder", "(empty)") == 0
    assert {r.id: r.pick for r in results(out2)}["empty"] == "a"
    assert any(engine.shown(c).second == "(empty)" for c in engine.calls)


async def test_wrong_settings_stop_the_run_without_recording_items(tmp_path, make_backend, capsys):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    # Above the judge's max_votes (32): every item would be refused, so nothing is recorded.
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out), "--votes", "40") == 1
    assert not engine.calls and (out / "results.jsonl").read_text() == ""
    err = capsys.readouterr().err
    assert "stopped" in err and "votes=40" in err
    assert summary(out)["run"]["n_pending"] == 6 and summary(out)["run"]["complete"] is False


async def test_resume_after_limit_skips_done_items(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, *fixed(data, out), "--limit", "2") == 0
    assert [r.id for r in results(out)] == ["good-a", "good-b"]
    assert summary(out)["run"]["n_selected"] == 2 and summary(out)["overall"]["n"] == 2
    engine.calls.clear()
    assert await run(backend, *fixed(data, out)) == 0
    assert judged_queries(engine) == ["q3", "q4", "q5", "q6"]  # the first two were not judged again
    ids = [r.id for r in results(out)]
    assert sorted(ids) == sorted(p["id"] for p in PAIRS) and len(ids) == len(set(ids))
    s = summary(out)
    assert s["run"]["complete"] and s["run"]["n_done"] == 6 and s["overall"]["n"] == 6
    assert s["overall"]["accuracy"]["k"] == 2  # the same numbers as one uninterrupted run
    # Nothing left: a third run judges nothing and still writes the summary.
    engine.calls.clear()
    assert await run(backend, *fixed(data, out)) == 0
    assert not engine.calls and len(results(out)) == 6


async def test_engine_dies_part_way_then_rerun_finishes(tmp_path, make_backend, capsys):
    from tests.eval.conftest import marker_judge

    state = {"n": 0}

    def dies_after_three(s):  # type: ignore[no-untyped-def]
        state["n"] += 1
        if state["n"] == 4:
            engine.dead = True  # every later request: 503 not ready
            raise RuntimeError("unreachable: the dead engine raises first")
        return marker_judge(s)

    backend, engine = await make_backend(script=dies_after_three)
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    argv = (*fixed(data, out), "--concurrency", "1", "--max-errors", "2")
    assert await run(backend, *argv) == 1
    assert [r.id for r in results(out)] == ["good-a", "good-b", "judge-wrong"]
    s = summary(out)
    assert s["run"]["n_done"] == 3 and s["run"]["n_pending"] == 3 and not s["run"]["complete"]
    assert "incomplete: 3 items pending" in (out / "summary.md").read_text()
    assert "a rerun retries them" in capsys.readouterr().err

    engine.dead = False
    engine.calls.clear()
    assert await run(backend, *argv) == 0
    assert judged_queries(engine) == ["q4", "q5", "q6"]
    ids = [r.id for r in results(out)]
    assert len(ids) == 6 == len(set(ids))
    assert summary(out)["overall"]["n"] == 6 and summary(out)["run"]["complete"]


async def test_cancelled_run_resumes(tmp_path, make_backend):
    """Ctrl-C (a cancelled run) keeps what finished; the rerun does the rest."""
    backend, engine = await make_backend(delay=0.05)
    rows = [{"id": f"i{k}", "query": f"q{k}", "response_a": "GOOD", "response_b": "x", "label": "a"}
            for k in range(12)]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out"
    argv = ("jsonl", "--data", str(data), "--out", str(out), "--concurrency", "2")
    task = asyncio.create_task(run(backend, *argv))
    while not (out / "results.jsonl").exists() or len((out / "results.jsonl").read_text().splitlines()) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first = [r.id for r in results(out)]
    assert 3 <= len(first) < 12
    engine.calls.clear()
    assert await run(backend, *argv) == 0
    assert set(judged_queries(engine)).isdisjoint({f"q{k}" for k in range(12) if f"i{k}" in first})
    ids = [r.id for r in results(out)]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    assert summary(out)["overall"]["accuracy"]["k"] == 12


async def test_torn_last_line_is_repaired(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, *fixed(data, out), "--limit", "3") == 0
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # died while writing item 3
    engine.calls.clear()
    # --no-cache: item 3's vote would otherwise come from the judge's comparison cache.
    assert await run(backend, *fixed(data, out), "--no-cache") == 0
    assert judged_queries(engine) == ["q3", "q4", "q5", "q6"]  # item 3 again, then the rest
    ids = [r.id for r in results(out)]  # every line parses
    assert sorted(ids) == sorted(p["id"] for p in PAIRS)


async def test_a_record_without_its_newline_is_kept_and_the_line_ended(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, *fixed(data, out), "--limit", "2") == 0
    path = out / "results.jsonl"
    path.write_text(path.read_text().rstrip("\n"))  # died between the record and its newline
    engine.calls.clear()
    assert await run(backend, *fixed(data, out)) == 0
    assert judged_queries(engine) == ["q3", "q4", "q5", "q6"]
    assert [r.id for r in results(out)] == [p["id"] for p in PAIRS]


async def test_corrupt_middle_line_is_an_error(tmp_path, make_backend, capsys):
    backend, _ = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, *fixed(data, out), "--limit", "2") == 0
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("garbage\n" + "".join(lines))
    assert await run(backend, *fixed(data, out)) == 2
    assert "line 1 is not a valid record" in capsys.readouterr().err


async def test_rerun_with_other_settings_is_refused(tmp_path, make_backend, capsys):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out), "--limit", "2") == 0
    before = (out / "results.jsonl").read_text()
    engine.calls.clear()
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out), "--votes", "3",
                     "--max-tokens", "50") == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "judge.votes: was 1, now 3" in err
    assert "judge.max_tokens: was None, now 50" in err
    assert "Use another --out" in err
    assert not engine.calls and (out / "results.jsonl").read_text() == before
    # Selection, concurrency and the cache switch do not change results: resuming with them is fine.
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out), "--concurrency", "3",
                     "--no-cache", "--limit", "4") == 0
    assert len(results(out)) == 4


async def test_results_without_run_json_are_not_adopted(tmp_path, make_backend, capsys):
    backend, _ = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"id": "x"}\n')
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out)) == 2
    assert "refusing to guess" in capsys.readouterr().err


async def test_votes_and_sampling_fields_reach_the_engine(tmp_path, make_backend):
    backend, engine = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS[:1])
    out = tmp_path / "out"
    assert await run(backend, "jsonl", "--data", str(data), "--out", str(out), "--votes", "3",
                     "--temperature", "0.2", "--max-tokens", "40", "--seed", "7", "--no-cache") == 0
    # Unanimous votes: early stopping needs 2 of the 3.
    assert len(engine.calls) == 2
    assert {c.temperature for c in engine.calls} == {0.2} and {c.max_tokens for c in engine.calls} == {40}
    (rec,) = results(out)
    assert rec.judgments[0].votes_a == 2 and rec.judgments[0].engine_calls == 2
    assert run_json(out)["judge"] == {
        "votes": 3, "temperature": 0.2, "max_tokens": 40, "max_thinking_tokens": None, "seed": 7,
        "order": "random", "rescue_invalid": False, "verdict_probs": False, "verdict_parser": None,
        "both_orders": False}


async def test_progress_bar_shows_rate_eta_and_running_accuracy(tmp_path, make_backend, capsys):
    backend, _ = await make_backend()
    data = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    out = tmp_path / "out"
    argv = list(fixed(data, out))  # with the progress bar (run() turns it off)
    assert await run_command(parse_args([*argv, "--limit", "2"]), backend) == 0
    assert await run_command(parse_args(argv), backend) == 0
    err = capsys.readouterr().err
    assert "2/6" in err and "6/6" in err  # the resumed bar starts at the items already done
    assert "item/s" in err and "<" in err  # rate and elapsed<remaining
    assert "acc=" in err and "invalid=" in err
