"""Inside one vote: early exit on a streamed generation (probes through the forced-verdict path)
and deadlines (forced verdicts instead of no answer), on a scripted engine whose confidence rises
as the judge thinks."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rrm_server.engine.base import EngineError, EngineUnavailable
from rrm_server.judging.deadlines import DeadlinePlan
from rrm_server.judging.early_exit import EarlyExit
from rrm_server.prompt.template import PromptBuilder
from rrm_server.prompt.verdict import InvalidReason
from rrm_server.serving.matches import JudgmentCodec
from rrm_server.serving.vote import Sampling, Usage, VoteOptions, VoteRunner
from tests.support.engines import ScriptedEngine, Shown

THOUGHT = " ".join(["step"] * 200)  # 200 tokens of reasoning ("step" and " step" are one token each)


def thinking_script(tokens: int, slot: int = 2):  # type: ignore[no-untyped-def]
    def script(s: Shown) -> str:
        return " ".join(["step"] * tokens) + f"\n\\boxed{{Assistant {slot}}}"

    return script


class Rising:
    """p("Assistant 1") at a probe as a function of how many tokens the judge had thought."""

    def __init__(self, builder: PromptBuilder, prompt_len: int, curve) -> None:  # type: ignore[no-untyped-def]
        self.cue = len(builder.verdict_cue_ids(reasoning_closed=False) or [])
        self.prompt_len, self.curve = prompt_len, curve
        self.seen: list[int] = []

    def __call__(self, s: Shown) -> float:
        n = len(s.request.prompt_token_ids) - self.prompt_len - self.cue
        if "-e" not in s.request.request_id:  # not an exit probe: the judge's own verdict, read after it
            return 0.5
        self.seen.append(n)
        return self.curve(n)


def runner(engine: ScriptedEngine, builder: PromptBuilder, *, early: EarlyExit | None = None,
           deadline: DeadlinePlan | None = None, max_tokens: int = 256) -> VoteRunner:
    options = VoteOptions(Sampling(0.6, 1.0, max_tokens), early_exit=early)
    return VoteRunner(engine, builder, 4096, options, Usage(), deadline)


@pytest.fixture
def prompt(builder) -> list[int]:  # type: ignore[no-untyped-def]
    return builder.build_ids("Which is right?", "4", "5")


async def test_a_vote_exits_at_the_first_probe_whose_verdict_is_confident(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(150), token_delay=0.005, lockstep=True)
    curve = Rising(builder, len(prompt), lambda n: min(0.99, 0.5 + n / 100))  # 0.6 at 10, 0.8 at 30 tokens
    engine.probability = curve
    await engine.start()
    r = runner(engine, builder, early=EarlyExit(exit_confidence=0.8, probe_every=10, transition_words=()))
    j = await r.judge(prompt, "v", seed=1, affinity_key=None)
    assert j.exit == "early"
    assert curve.seen == [10, 20, 30]  # probed every 10 tokens until the rule held
    assert (j.slot, j.forced, j.reason) == (1, True, None)  # the probe's verdict: Assistant 1
    assert j.p_slot1 == pytest.approx(0.8)
    assert "v" in engine.cancelled  # the main generation was aborted ...
    assert 30 <= engine.streamed["v"] <= 32  # ... right after the probe, not after 150 tokens
    assert j.generated_tokens == engine.streamed["v"]
    assert r.usage.exit_probes == 3 and r.usage.probe_calls == 3
    assert r.usage.thinking_tokens_saved == 256 - j.generated_tokens
    assert r.usage.exits == {"early": 1}


async def test_an_unsettled_vote_thinks_to_its_own_verdict(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(40, slot=2), token_delay=0.002,
                            lockstep=True)
    engine.probability = Rising(builder, len(prompt), lambda n: 0.6)
    await engine.start()
    r = runner(engine, builder, early=EarlyExit(exit_confidence=0.9, probe_every=8, transition_words=()))
    j = await r.judge(prompt, "v", seed=1, affinity_key=None)
    assert (j.exit, j.slot, j.forced) == ("natural", 2, False)
    assert "v" not in engine.cancelled
    assert r.usage.exit_probes >= 4 and r.usage.exits == {"natural": 1}


async def test_transition_words_are_probe_points(builder, prompt, tokenizer):
    def script(s: Shown) -> str:
        return "step step step step Wait, step step step step step step step\n\\boxed{Assistant 2}"

    engine = ScriptedEngine(tokenizer=tokenizer, script=script, token_delay=0.005, lockstep=True)
    curve = Rising(builder, len(prompt), lambda n: 0.05)  # confident in Assistant 2 whenever asked
    engine.probability = curve
    await engine.start()
    r = runner(engine, builder, early=EarlyExit(exit_confidence=0.9, probe_every=None))
    j = await r.judge(prompt, "v", seed=1, affinity_key=None)
    wait_end = len(tokenizer.encode("step step step step Wait,", add_special_tokens=False))
    assert curve.seen == [wait_end]  # probed once the character after "Wait" arrived, not before
    assert (j.exit, j.slot) == ("early", 2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ps=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5), threshold=st.floats(0.55, 1.0),
       every=st.integers(4, 8))
def test_exits_happen_exactly_where_the_rule_says(builder, prompt, tokenizer, ps, threshold, every):
    """Whatever the probes say, the vote exits at the first probe the rule settles, with that
    probe's verdict; with none settled it ends with the judge's own verdict."""
    rule = EarlyExit(exit_confidence=threshold, probe_every=every, transition_words=())
    script = thinking_script(every * len(ps), slot=2)
    total = len(tokenizer.encode(script(None), add_special_tokens=False))  # type: ignore[arg-type]
    probes = (total - 1) // every  # the last token ends the stream: no probe there
    # Probes in the last few tokens race the judge's own end (it may finish first): never settled.
    # The scripted engine reports p within [1e-9, 1 - 1e-9], as log probabilities can.
    p_at = [min(max(ps[min(i, len(ps) - 1)], 1e-9), 1 - 1e-9) if every * (i + 1) <= total - 4 else 0.5
            for i in range(probes)]

    async def run():  # type: ignore[no-untyped-def]
        engine = ScriptedEngine(tokenizer=tokenizer, script=script, token_delay=0.001, lockstep=True)
        engine.probability = Rising(builder, len(prompt), lambda n: p_at[n // every - 1])
        await engine.start()
        return await runner(engine, builder, early=rule).judge(prompt, "v", seed=1, affinity_key=None), engine

    j, engine = asyncio.run(run())
    first = next((i for i, p in enumerate(p_at) if rule.settled(p) is not None), None)
    seen = engine.probability.seen  # type: ignore[union-attr]
    if first is not None:
        assert j.exit == "early"
        assert seen == [every * (i + 1) for i in range(first + 1)]
        assert j.slot == rule.settled(p_at[first]) + 1  # type: ignore[operator]
        assert j.p_slot1 == pytest.approx(p_at[first])
    else:
        expected = [every * (i + 1) for i in range(probes)]
        assert seen == expected[: len(seen)] and len(seen) >= sum(n <= total - 4 for n in expected)
        assert j.exit == "natural" and j.slot == 2


async def test_a_deadline_closes_a_thinking_vote_with_a_forced_verdict(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(200), token_delay=0.02)  # 4 s of thought
    engine.probability = lambda s: 0.3
    await engine.start()
    now = asyncio.get_running_loop().time()
    r = runner(engine, builder, deadline=DeadlinePlan(now + 0.5, 0.1))
    started = time.monotonic()
    j = await r.judge(prompt, "v", seed=1, affinity_key=None)
    assert time.monotonic() - started < 1.5
    assert (j.exit, j.forced, j.slot, j.reason) == ("deadline", True, 2, None)
    assert j.p_slot1 == pytest.approx(0.3)
    assert "v" in engine.cancelled and 5 <= engine.streamed["v"] < 100
    assert j.generated_tokens == engine.streamed["v"] and j.finish_reason == "abort"
    assert r.usage.exits == {"deadline": 1}
    # What time allowed is not the vote its cache key stands for: never stored.
    assert JudgmentCodec(60, 60, True, False).ttl(j) is None


async def test_a_vote_that_starts_after_the_close_is_forced_without_thinking(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(200), token_delay=0.02)
    engine.probability = lambda s: 0.7
    await engine.start()
    now = asyncio.get_running_loop().time()
    r = runner(engine, builder, deadline=DeadlinePlan(now + 0.05, 0.1))  # closing already
    j = await r.judge(prompt, "v", seed=1, affinity_key=None)
    assert (j.exit, j.forced, j.slot, j.generated_tokens) == ("deadline", True, 1, 0)
    assert engine.calls == [] and len(engine.probes) == 1  # one verdict read, no generation
    assert r.usage.engine_calls == 0


async def test_a_deadline_without_verdict_tokens_leaves_the_vote_truncated(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(200), token_delay=0.02)
    await engine.start()  # no probability: the forced read finds no verdict distribution
    now = asyncio.get_running_loop().time()
    j = await runner(engine, builder, deadline=DeadlinePlan(now + 0.3, 0.1)).judge(prompt, "v", 1, None)
    assert (j.exit, j.slot, j.reason, j.forced) == ("deadline", None, InvalidReason.truncated, False)


async def test_a_vote_that_ends_in_time_is_untouched_by_its_deadline(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(10, slot=2), token_delay=0.001)
    engine.probability = lambda s: 0.2
    await engine.start()
    now = asyncio.get_running_loop().time()
    j = await runner(engine, builder, deadline=DeadlinePlan(now + 30, 1)).judge(prompt, "v", 1, None)
    assert (j.exit, j.slot, j.forced) == ("natural", 2, False)
    assert j.p_slot1 == pytest.approx(0.2)  # the verdict's probability, read as usual


async def test_cancelling_the_request_aborts_the_streamed_generation(builder, prompt, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(200), token_delay=0.01)
    engine.probability = lambda s: 0.5
    await engine.start()
    r = runner(engine, builder, early=EarlyExit(exit_confidence=0.9, probe_every=5, transition_words=()))
    task = asyncio.ensure_future(r.judge(prompt, "v", 1, None))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert "v" in engine.cancelled and engine.in_flight == 0
    streamed = engine.streamed["v"]
    await asyncio.sleep(0.1)
    assert engine.streamed["v"] == streamed  # no tokens after the abort


async def test_a_failing_probe_never_ends_the_vote(builder, prompt, tokenizer):
    """A mid-thought probe that fails (an engine error, or the engine refusing it) reads no verdict:
    the vote thinks on to its own verdict; nothing is left unobserved in a probe task."""
    loop = asyncio.get_running_loop()
    unobserved: list[dict] = []
    loop.set_exception_handler(lambda _, ctx: unobserved.append(ctx))
    for error in (EngineError("probe failed"), EngineUnavailable("engine gone")):
        engine = ScriptedEngine(tokenizer=tokenizer, script=thinking_script(30, slot=2), token_delay=0.002,
                                lockstep=True)

        def fail(s: Shown, error: Exception = error) -> float:
            if "-e" in s.request.request_id:  # the exit probes fail; the verdict read after does not
                raise error
            return 0.3

        engine.probability = fail
        await engine.start()
        r = runner(engine, builder, early=EarlyExit(exit_confidence=0.6, probe_every=5, transition_words=()))
        j = await r.judge(prompt, "v", seed=1, affinity_key=None)
        assert (j.exit, j.slot) == ("natural", 2) and r.usage.exit_probes >= 3
        gc.collect()
        await asyncio.sleep(0)
        assert unobserved == [], unobserved
