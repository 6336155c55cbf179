"""How a request's thinking knobs resolve: unset takes the server's default, an explicit null
asks for no budget; early exit and deadlines, with 400s naming the field."""

from __future__ import annotations

import asyncio

import pytest

from rrm_server.engine.base import ModelInfo
from rrm_server.errors import InvalidRequest
from rrm_server.protocol.judge import PairwiseRequest
from rrm_server.serving.config import JudgeConfig
from rrm_server.serving.context import RequestResolver

OK = {"query": "q", "responses": ["a", "bb"]}


@pytest.fixture
def resolver(builder) -> RequestResolver:  # type: ignore[no-untyped-def]
    config = JudgeConfig(max_tokens=128, max_thinking_tokens=128, rescue_invalid=True, request_timeout=None,
                         max_deadline=60, deadline_margin=1.0, probe_every=32, transition_words=("Wait",))
    return RequestResolver(config, builder, ModelInfo("m", "m", 4096), "fp")


async def resolve(resolver: RequestResolver, **fields):  # type: ignore[no-untyped-def]
    return await resolver.resolve(PairwiseRequest.model_validate({**OK, **fields}), "r")


async def test_unset_takes_the_server_default_and_null_means_no_budget(resolver):
    unset = await resolve(resolver)
    assert (unset.votes.max_thinking_tokens, unset.votes.rescue_invalid) == (128, True)
    off = await resolve(resolver, max_thinking_tokens=None, rescue_invalid=False)
    assert (off.votes.max_thinking_tokens, off.votes.rescue_invalid) == (None, False)
    assert (await resolve(resolver, max_thinking_tokens=16)).votes.max_thinking_tokens == 16
    assert unset.scope != off.scope  # a different vote: a different cache key


async def test_early_exit_resolves_with_server_defaults_and_enters_the_cache_key(resolver):
    plain = await resolve(resolver)
    assert plain.votes.early_exit is None
    on = await resolve(resolver, early_exit=True)
    assert on.votes.early_exit is not None
    assert (on.votes.early_exit.exit_confidence, on.votes.early_exit.probe_every) == (0.9, 32)
    assert on.votes.early_exit.transition_words == ("Wait",)
    tuned = await resolve(resolver, early_exit=True, exit_confidence=0.7, probe_every=5)
    assert (tuned.votes.early_exit.exit_confidence, tuned.votes.early_exit.probe_every) == (0.7, 5)
    assert len({plain.scope, on.scope, tuned.scope}) == 3


async def test_the_earliest_deadline_counts_and_closing_starts_before_it(resolver):
    now = asyncio.get_running_loop().time()
    ctx = await resolver.resolve(PairwiseRequest.model_validate({**OK, "deadline_s": 10}), "r", arrived=now,
                                 deadline=now + 20)
    assert ctx.deadline is not None
    assert ctx.deadline.deadline == pytest.approx(now + 10) and ctx.deadline.close_at == pytest.approx(now + 9)
    short = await resolver.resolve(PairwiseRequest.model_validate({**OK, "deadline_s": 2}), "r", arrived=now)
    assert short.deadline.margin == pytest.approx(0.5)  # at most a quarter of the time given
    assert (await resolve(resolver)).deadline is None
    assert (await resolve(resolver)).scope == ctx.scope  # a deadline is not part of what a vote is


@pytest.mark.parametrize(("fields", "param"), [({"deadline_s": 61}, "deadline_s"),
                                               ({"probe_every": 3}, "probe_every"),
                                               ({"exit_confidence": 0.8}, "exit_confidence")])
async def test_bad_knobs_name_their_field(resolver, fields, param):
    with pytest.raises(InvalidRequest) as e:
        await resolve(resolver, **fields)
    assert e.value.param == param
