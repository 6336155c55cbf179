"""Reward APIs over real HTTP with a scripted judge (longer response wins): OpenRLHF-shaped traffic,
reference mode, /v1/rewards, and bad payloads."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread

PROMPT = "<|im_start|>user\nWrite something.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def rl(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer, delay=0.05)
    settings = Settings(model=str(model_dir), reward_mode="group", reward_group_size=4, reward_group_wait=1.0,
                        reward_votes=1, max_votes=8)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url, engine


def sample(text: str, prompt: str = PROMPT) -> dict:
    return {"query": [prompt + text + "<|im_end|>"], "prompts": [prompt]}


def test_openrlhf_one_sample_per_request_with_siblings_and_retries(rl):
    url, engine = rl
    httpx.delete(f"{url}/v1/cache")
    engine.calls.clear()
    texts = ["a", "bbb", "cc", "dddd"]

    async def go():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            async def retry():  # the same sample again while its group is being ranked
                while not engine.calls:  # (a retry before the group is full would count as a sibling)
                    await asyncio.sleep(0.005)
                return await c.post("/get_reward", json=sample("bbb"))

            return await asyncio.gather(*(c.post("/get_reward", json=sample(t)) for t in texts), retry())

    rs = [r.json() for r in asyncio.run(go())]
    assert all(set(r) == {"rewards", "scores", "extra_logs"} for r in rs)
    scores = [r["scores"][0] for r in rs]
    # Round robin win rates with a judge that prefers length: dddd 1, bbb 2/3, cc 1/3, a 0.
    assert scores == pytest.approx([0.0, 2 / 3, 1 / 3, 1.0, 2 / 3])
    assert [r["rewards"][0] for r in rs] == pytest.approx([2 * s - 1 for s in scores])
    assert all(r["extra_logs"]["rrm_group_size"] == [4.0] and r["extra_logs"]["rrm_neutral"] == [0.0] for r in rs)
    assert len(engine.calls) == 6  # one ranking of 4 samples (6 pairs x 1 vote); the retry cost nothing
    # A retry after the answer went out joins the original too.
    late = httpx.post(f"{url}/get_reward", json=sample("cc"), timeout=60).json()
    assert late["scores"] == [pytest.approx(1 / 3)] and len(engine.calls) == 6


def test_group_mode_partial_group_after_wait_and_lone_sample(rl):
    url, engine = rl
    p2 = PROMPT.replace("something", "else")
    lone = httpx.post(f"{url}/get_reward", json=sample("only one", p2), timeout=60).json()
    assert lone["scores"] == [0.5] and lone["rewards"] == [0.0] and lone["extra_logs"]["rrm_neutral"] == [1.0]


def test_reference_mode(rl):
    url, engine = rl
    body = {"query": [PROMPT + "a long answer<|im_end|>", PROMPT + "x<|im_end|>"], "prompts": [PROMPT] * 2,
            "labels": ["ref", "reference"], "mode": "reference"}
    r = httpx.post(f"{url}/get_reward", json=body, timeout=60).json()
    assert r["scores"] == [1.0, 0.0] and r["rewards"] == [1.0, -1.0]
    assert r["extra_logs"]["rrm_valid_votes"] == [1.0, 1.0]
    # The judge saw plain text: the user's question and the response without chat tokens.
    shown = engine.shown(engine.calls[-1])
    assert shown.query == "Write something." and "<|im_end|>" not in shown.first + shown.second


def test_reference_mode_invalid_votes_are_neutral_and_flagged(rl):
    url, engine = rl
    script = engine.script
    engine.script = lambda s: "no verdict"
    try:
        r = httpx.post(f"{url}/get_reward", json={**sample("zz"), "labels": ["ref"], "mode": "reference"},
                       timeout=60).json()
    finally:
        engine.script = script
    assert r["scores"] == [0.5] and r["rewards"] == [0.0]
    assert r["extra_logs"]["rrm_neutral"] == [1.0] and r["extra_logs"]["rrm_invalid_votes"] == [1.0]


@pytest.mark.parametrize(("body", "param", "needle"), [
    ({"query": ["a", "b"], "prompts": ["a"]}, "prompts", "must align"),
    ({"query": ["ab"]}, "prompts", "Field required"),
    ({"query": ["hello"], "prompts": ["bye"]}, "query.0", "does not start with prompts[0]"),
    ({"query": [PROMPT + "x"], "prompts": [PROMPT], "labels": ["a", "b"]}, "labels", "must align"),
    ({"query": [PROMPT + "x"], "prompts": [PROMPT], "mode": "reference"}, "labels", "needs labels"),
    ({"query": [PROMPT + "x"], "prompts": [PROMPT], "labels": [3], "mode": "reference"}, "labels.0", "non-empty"),
    ({"query": [], "prompts": []}, "query", "at least 1"),
])
def test_bad_get_reward_payloads(rl, body, param, needle):
    url, _ = rl
    r = httpx.post(f"{url}/get_reward", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and needle in err["message"]


def test_v1_rewards_several_groups(rl):
    url, engine = rl
    body = {"groups": [{"query": "q1", "responses": ["a", "bbb", "cc"]},
                       {"query": "q2", "responses": ["x", "yyyy"], "method": "knockout"},
                       {"query": "q3", "responses": ["solo"]}], "votes": 1}
    r = httpx.post(f"{url}/v1/rewards", json=body, timeout=60)
    assert r.status_code == 200, r.text
    g1, g2, g3 = r.json()["groups"]
    assert g1["scores"] == [0.0, 1.0, 0.5] and g1["ranking"][0] == 1 and g1["best"] == 1
    assert g1["rewards"] == [-1.0, 1.0, 0.0]
    assert g2["scores"] == [0.0, 1.0] and g2["best"] == 1
    assert g3["neutral"] == [True] and g3["rewards"] == [0.0] and g3["usage"]["engine_calls"] == 0
    bad = httpx.post(f"{url}/v1/rewards", json={"groups": []})
    assert bad.status_code == 400


def test_v1_rewards_caps_the_number_of_groups(rl):
    """Groups are ranked concurrently: without a cap one request could queue unbounded engine work."""
    url, engine = rl
    engine.calls.clear()
    group = {"query": "q", "responses": ["a", "bb"]}
    r = httpx.post(f"{url}/v1/rewards", json={"groups": [group] * 65}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["param"] == "groups" and "at most 64" in err["message"]
    assert engine.calls == []  # refused before any engine work
    assert httpx.post(f"{url}/v1/rewards", json={"groups": [group] * 64}, timeout=60).status_code == 200
