"""Identical comparisons in flight share one engine call, but only when the shared result answers
every waiter: a request that wants the verdict probability never gets a vote without one."""

from __future__ import annotations

import asyncio

from rrm_server.local import LocalJudge
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine


async def test_a_joiner_that_wants_probabilities_gets_them(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer, delay=0.2, probability=lambda s: 0.8)
    async with LocalJudge(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer) as judge:
        query, responses = "Which is right?", ["four", "five!"]
        without, wanted = await asyncio.gather(
            judge.pairwise(query, responses, verdict_probs=False, order="fixed"),
            judge.pairwise(query, responses, verdict_probs=True, order="fixed"))
    assert without.votes[0].p_first is None
    assert wanted.votes[0].p_first is not None  # not the probability-less vote of the flight it met
    assert wanted.p_first is not None


async def test_joiners_that_want_the_same_share_one_engine_call(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer, delay=0.2, probability=lambda s: 0.8)
    async with LocalJudge(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer) as judge:
        a, b = await asyncio.gather(*(judge.pairwise("q", ["x", "yy"], order="fixed") for _ in range(2)))
    assert len(engine.calls) == 1
    assert {a.votes[0].source, b.votes[0].source} == {"computed", "coalesced"}
    assert a.votes[0].p_first == b.votes[0].p_first is not None
