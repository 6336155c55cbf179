"""The trainer adapters through the trainers' own code, against a running service (scripted judge that
prefers the longer answer): verl 0.9.1's loader, reward-loop manager and legacy manager; TRL 1.16's
``GRPOTrainer._calculate_rewards``. Both pinned in the test extra / scripts/bootstrap.sh."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

import rrm_server.integrations.verl as verl_adapter
from rrm_server.integrations.trl import RRMRewardFunction

QUESTION = "How much does Ann pay?"
# (response, reference): scripted judge = the longer text wins both orders.
SAMPLES = [
    ("The answer is 18 dollars.", "18"),  # judged better: +1
    ("<think>" + "long reasoning " * 8 + "</think>7", "18"),  # judged on "7" alone: -1
    ("", "18"),  # empty: lowest, no judgment
    ("<think>still thinking, never answers", "18"),  # unclosed reasoning: no answer
]


class CharTokenizer:
    """verl decodes response ids with the policy's tokenizer; ids here are code points."""

    def decode(self, ids, skip_special_tokens=True):  # type: ignore[no-untyped-def]
        return "".join(chr(int(i)) for i in ids if int(i) != 0)


def verl_batch(samples):  # type: ignore[no-untyped-def]
    import numpy as np
    import torch
    from verl import DataProto

    n, p, r = len(samples), 4, max(1, max(len(s) for s, _ in samples))
    prompts = torch.zeros(n, p, dtype=torch.long)
    prompts[:, -1] = ord("q")
    responses = torch.zeros(n, r, dtype=torch.long)
    mask = torch.zeros(n, p + r, dtype=torch.long)
    mask[:, p - 1] = 1
    for i, (text, _) in enumerate(samples):
        if text:
            responses[i, : len(text)] = torch.tensor([ord(c) for c in text])
            mask[i, p : p + len(text)] = 1
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask},
        non_tensors={
            "data_source": np.array(["gsm8k"] * n, dtype=object),
            "reward_model": np.array([{"ground_truth": g} for _, g in samples], dtype=object),
            "extra_info": np.array([{"question": QUESTION, "index": i} for i in range(n)], dtype=object),
        },
    )


def verl_config(name: str, url: str):  # type: ignore[no-untyped-def]
    from omegaconf import OmegaConf

    # The documented keys for verl >= 0.7.1: reward.custom_reward_function, settings in reward_kwargs.
    return OmegaConf.create({"reward": {
        "custom_reward_function": {"path": str(Path(verl_adapter.__file__)), "name": name,
                                   "reward_kwargs": {"url": url}},
        "reward_manager": {"source": "register", "name": "naive", "module": {"path": None, "name": "x"}},
        "sandbox_fusion": {"url": None}, "num_workers": 1, "reward_model": {"enable": False}}})


EXPECTED = [(1.0, 0.0), (-1.0, 0.0), (-1.0, 1.0), (-1.0, 1.0)]  # (reward, rrm_empty)


@pytest.mark.parametrize("name", ["compute_score", "compute_score_async"])
def test_verl_reward_loop_loads_and_scores_through_verls_own_code(service, name):
    pytest.importorskip("verl", reason="verl 0.9.1 is installed by scripts/bootstrap.sh with the test extra")
    from verl.trainer.ppo.reward import load_reward_manager

    url, engine = service
    data = verl_batch(SAMPLES)

    async def run():  # the manager binds to the loop it is built in
        manager = load_reward_manager(verl_config(name, url), CharTokenizer())
        assert manager.is_async_reward_score == (name == "compute_score_async")
        return await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in range(len(data))))

    calls = len(engine.calls)
    outs = asyncio.run(run())
    got = [(o["reward_score"], o["reward_extra_info"]["rrm_empty"]) for o in outs]
    assert got == EXPECTED
    # At most two votes each for the two judged samples (none once cached); degenerate ones cost nothing.
    assert len(engine.calls) - calls <= 4
    shown = {t for c in engine.calls for t in (engine.shown(c).first, engine.shown(c).second)}
    assert "7" in shown and not any("long reasoning" in s for s in shown)


def test_verl_legacy_sync_manager(service):
    pytest.importorskip("verl", reason="verl 0.9.1 is installed by scripts/bootstrap.sh with the test extra")
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import NaiveRewardManager

    url, _ = service
    fn = get_custom_reward_fn(verl_config("compute_score", url))
    out = NaiveRewardManager(tokenizer=CharTokenizer(), num_examine=0, compute_score=fn)(
        verl_batch(SAMPLES), return_dict=True)
    assert out["reward_tensor"].sum(-1).tolist() == [r for r, _ in EXPECTED]
    assert list(out["reward_extra_info"]["rrm_empty"]) == [e for _, e in EXPECTED]


def grpo_trainer(funcs):  # type: ignore[no-untyped-def]
    """The parts of a GRPOTrainer its reward path reads (a full trainer needs a policy model)."""
    from accelerate import Accelerator
    from transformers import TrainerState
    from trl import GRPOTrainer
    from trl.trainer.utils import get_callable_name

    t = GRPOTrainer.__new__(GRPOTrainer)
    t.reward_funcs = funcs
    t.reward_func_names = [get_callable_name(f) for f in funcs]
    t.reward_processing_classes = [None] * len(funcs)
    t.accelerator = Accelerator(cpu=True)
    t.state = TrainerState()
    t.args = SimpleNamespace(report_to=[])
    t.environments = None
    t._pending_extra_logs = defaultdict(list)
    t._pending_metrics = defaultdict(list)
    return t


# TRL's GRPOTrainer imports vLLM whenever it is installed (the reward path does not use it)
@pytest.mark.vllm
@pytest.mark.parametrize("method", ["elo", "knockout"])
def test_trl_grpo_reward_path_never_rewards_an_empty_completion(service, method):
    pytest.importorskip("trl", reason="trl is in the test extra")
    url, engine = service
    t = grpo_trainer([RRMRewardFunction(url, method=method, votes=1)])
    prompts = ["Name a fruit."] * 4 + ["Alone?"]
    completions = ["banana split", "", "<think>" + "x" * 40 + "</think>fig", "kiwi", "solo"]
    inputs = [{"prompt": p} for p in prompts]
    calls = len(engine.calls)
    rewards = t._calculate_rewards(inputs, prompts, completions, [[1]] * len(completions))[:, 0].tolist()
    # The empty completion gets the bottom of the range, never more than any real answer; the think
    # block does not count as length; a group of one has no result (None -> NaN in TRL).
    assert rewards[1] == -1.0 and all(rewards[1] <= r for r in rewards[:4])
    assert rewards[0] == 1.0 and math.isnan(rewards[4])
    shown = [engine.shown(c) for c in engine.calls[calls:]]
    assert all("" not in (s.first, s.second) and "xxxx" not in s.first + s.second for s in shown)
    assert t._pending_metrics["rrm_" + method + "/empty"] == [pytest.approx(0.2)]


def test_openrlhf_remote_reward_client(service):
    """OpenRLHF 0.9.0's own remote-RM client (the last release with the synchronous one; later ones
    send the same body with aiohttp), installed by scripts/bootstrap.sh with --no-deps."""
    pytest.importorskip("openrlhf", reason="openrlhf 0.9.0 is installed by scripts/bootstrap.sh with the test extra")
    from openrlhf.utils.remote_rm_utils import request_api_wrapper

    url, _ = service
    prompt = "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n"
    texts = ["A ripe banana.", "", "<think>" + "hmm " * 20 + "</think>Fig"]
    out = request_api_wrapper(f"{url}/get_reward", {"query": [prompt + t + "<|im_end|>" for t in texts],
                                                     "prompts": [prompt] * 3, "labels": ["apple"] * 3,
                                                     "mode": "reference"})
    assert out["rewards"] == [1.0, -1.0, -1.0]  # "Fig" alone is judged: shorter than "apple"
    assert out["extra_logs"]["rrm_empty"] == [0.0, 1.0, 0.0]
    assert len(out["scores"]) == 3
