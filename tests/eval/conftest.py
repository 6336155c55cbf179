"""A LocalJudge on the scripted engine, and a judge whose verdicts follow markers in the texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rrm_server.eval.cli import Backend
from rrm_server.local import LocalJudge
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine, Shown


def marker_judge(s: Shown) -> str | tuple[str, str]:
    """GOOD wins; NOVERDICT / TRUNCATE in either text make the judgment invalid; otherwise the
    judge sides with whatever is shown first (a position-biased judge)."""
    both = s.first + s.second
    if "NOVERDICT" in both:
        return "I cannot decide between them."
    if "TRUNCATE" in both:
        return "Let me think about this at great length", "length"
    if "GOOD" in s.second and "GOOD" not in s.first:
        return "Reasoning.\n\\boxed{Assistant 2}"
    return "Reasoning.\n\\boxed{Assistant 1}"


@pytest.fixture
async def make_backend(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    judges: list[LocalJudge] = []

    async def make(script=marker_judge, **engine_kw):  # type: ignore[no-untyped-def]
        engine = ScriptedEngine(tokenizer=tokenizer, script=script, **engine_kw)
        judge = LocalJudge(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer)
        await judge.start()
        judges.append(judge)
        return Backend(judge, "scripted-judge", "local"), engine

    yield make
    for j in judges:
        await j.close()


# Six items with known outcomes under ``marker_judge`` with order=fixed.
PAIRS = [
    {"id": "good-a", "query": "q1", "response_a": "GOOD answer", "response_b": "bad answer", "label": "a"},
    {"id": "good-b", "query": "q2", "response_a": "meh", "response_b": "GOOD one", "label": "b"},
    {"id": "judge-wrong", "query": "q3", "response_a": "GOOD but", "response_b": "really better",
     "label": "b"},
    {"id": "no-verdict", "query": "q4", "response_a": "NOVERDICT x", "response_b": "y", "label": "a"},
    {"id": "truncated", "query": "q5", "response_a": "TRUNCATE", "response_b": "z", "label": "b"},
    {"id": "tie", "query": "q6", "response_a": "same", "response_b": "same too", "label": "tie"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def judged_queries(engine: ScriptedEngine) -> list[str]:
    """The queries of the judgments the engine made, in order."""
    return [engine.shown(r).query for r in engine.calls]
