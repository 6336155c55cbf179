"""The trainer adapters end to end against a running service."""

from __future__ import annotations

import asyncio

import pytest

PROMPT = "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n"


def test_openrlhf_reward_func(service, monkeypatch):
    url, _ = service
    monkeypatch.setenv("RRM_URL", url)
    monkeypatch.setenv("RRM_REWARD_MODE", "reference")
    from rrm_server.integrations import openrlhf

    openrlhf._client.cache_clear()
    out = openrlhf.reward_func([PROMPT + "A ripe banana.<|im_end|>", PROMPT + "Fig<|im_end|>", PROMPT + "<|im_end|>"],
                               [PROMPT, PROMPT, PROMPT], ["apple", "an apple", "x"])
    rewards = out["rewards"].tolist() if hasattr(out["rewards"], "tolist") else out["rewards"]
    assert rewards == [1.0, -1.0, -1.0]  # an empty answer scores the bottom of the range, flagged
    empty = out["extra_logs"]["rrm_empty"]
    assert list(empty.tolist() if hasattr(empty, "tolist") else empty) == [0.0, 0.0, 1.0]
    assert set(out["extra_logs"]) >= {"rrm_neutral", "rrm_valid_votes"}


def test_verl_compute_score_sync_and_async(service, monkeypatch):
    url, engine = service
    monkeypatch.setenv("RRM_URL", "http://127.0.0.1:9")  # reward_kwargs win over the environment
    from rrm_server.integrations import verl

    info = {"question": "How much?"}
    better = verl.compute_score("gsm8k", "The answer is 18 dollars.", "18", info, url=url)
    assert better["score"] == 1.0 and better["rrm_valid_votes"] == 2.0 and better["rrm_neutral"] == 0.0

    async def go():
        return await verl.compute_score_async("gsm8k", "7", "The answer is 18.", info, url=url)

    assert asyncio.run(go())["score"] == -1.0
    calls = len(engine.calls)
    empty = verl.compute_score("gsm8k", "   ", "18", info, url=url)
    assert empty["score"] == -1.0 and empty["rrm_empty"] == 1.0 and len(engine.calls) == calls
    with pytest.raises(ValueError, match="question"):
        verl.compute_score("x", "a", "b", {}, url=url)


def test_trl_reward_function_groups_by_prompt(service):
    url, engine = service
    from rrm_server.integrations.trl import RRMRewardFunction

    fn = RRMRewardFunction(url, method="elo", votes=1)
    prompts = ["p1", "p2", "p1", "p1", "p3"]
    completions = ["a", "only", "bbb", "cc", [{"role": "assistant", "content": "solo"}]]
    out = fn(prompts=prompts, completions=completions)
    # p1: bbb > cc > a; p2 and p3 are groups of one: no judged result -> None, not 0.
    assert out == [-1.0, None, 1.0, 0.0, None]
    assert fn.__name__ == "rrm_elo"
    conv = fn(prompts=[[{"role": "user", "content": "Q"}]] * 2,
              completions=[[{"role": "assistant", "content": "x"}], [{"role": "assistant", "content": "yy"}]])
    assert conv == [-1.0, 1.0]
    assert engine.shown(engine.calls[-1]).query == "Q"
