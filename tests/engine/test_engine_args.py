"""Engine arguments chosen for CPU and GPU machines."""

from __future__ import annotations

import pytest

from rrm_server.engine.vllm_local import engine_args_for
from rrm_server.settings import BUNDLED_MAX_MODEL_LEN, Settings


# engine_args_for builds vLLM's AsyncEngineArgs
@pytest.mark.vllm
def test_cpu_defaults_avoid_the_seeded_chunked_prefill_crash():
    args = engine_args_for(Settings(device="cpu"), "/models/x")
    assert args.enable_chunked_prefill is False
    assert args.enforce_eager is True
    assert args.enable_prefix_caching is True
    assert 0 < args.gpu_memory_utilization <= 0.5
    assert args.max_model_len == BUNDLED_MAX_MODEL_LEN


@pytest.mark.vllm
def test_gpu_defaults_leave_vllm_in_charge():
    args = engine_args_for(Settings(device="cuda", model="Reward-Reasoning/RRM-7B", tensor_parallel_size=2),
                           "Reward-Reasoning/RRM-7B")
    assert args.enable_chunked_prefill is None or args.enable_chunked_prefill is True
    assert args.enforce_eager is False
    assert args.gpu_memory_utilization == 0.9
    assert args.tensor_parallel_size == 2
    assert args.max_model_len is None
    assert args.served_model_name == ["Reward-Reasoning/RRM-7B"]


@pytest.mark.vllm
def test_operator_overrides_win():
    args = engine_args_for(Settings(device="cpu", enable_chunked_prefill=True, max_model_len=2048,
                                    gpu_memory_utilization=0.4, max_num_seqs=8), "/m")
    assert (args.enable_chunked_prefill, args.max_model_len, args.gpu_memory_utilization, args.max_num_seqs) == (
        True, 2048, 0.4, 8)


def test_defaults_follow_the_model():
    assert Settings().effective_max_tokens == 128
    assert Settings(model="Reward-Reasoning/RRM-32B").effective_max_tokens == 8192
    assert Settings(model="x", default_max_tokens=1000).effective_max_tokens == 1000
    assert Settings(model="Reward-Reasoning/RRM-7B").model_name == "Reward-Reasoning/RRM-7B"
    assert Settings().model_name == "SmolLM2-135M-Instruct"
    # The bundled 135M model rarely reaches a verdict: a thinking budget and rescue by default.
    assert (Settings().effective_max_thinking_tokens, Settings().effective_rescue_invalid) == (128, True)
    rrm = Settings(model="Reward-Reasoning/RRM-32B")
    assert (rrm.effective_max_thinking_tokens, rrm.effective_rescue_invalid) == (None, False)
    assert Settings(default_max_thinking_tokens=64, default_rescue_invalid=False).effective_max_thinking_tokens == 64
    assert (Settings().effective_probe_every, rrm.effective_probe_every) == (32, 256)
