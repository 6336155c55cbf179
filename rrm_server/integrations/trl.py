"""TRL GRPO reward function backed by rrm-server: ranks the completions of each prompt together.

    from rrm_server.integrations.trl import RRMRewardFunction
    trainer = GRPOTrainer(..., reward_funcs=[RRMRewardFunction("http://judge:8000", method="knockout")])

Completions of one prompt in the batch form a group ranked on the service (``/v1/rewards``); each
gets its normalised standing in [-1, 1]. An empty completion, or one whose reasoning block never
closes, gets the lowest reward of its group without a judgment (the service's rule). A completion
without any judged result gets ``None`` (TRL treats it as missing), never a silent 0.
Conversational prompts and completions (lists of messages) are reduced to the last user turn and
the assistant's text. Checked through TRL 1.16's own ``GRPOTrainer._calculate_rewards`` (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rrm_server.client import RRMClient


def _text(x: Any, role: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, list):  # messages
        picked = [m.get("content", "") for m in x if isinstance(m, dict) and m.get("role") == role]
        if picked:
            return picked[-1] if role == "user" else "".join(picked)
        return "".join(m.get("content", "") for m in x if isinstance(m, dict))
    return str(x)


class RRMRewardFunction:
    def __init__(self, url: str = "http://127.0.0.1:8000", method: str = "elo", api_key: str | None = None,
                 **fields: Any) -> None:
        self.__name__ = f"rrm_{method}"  # TRL logs each reward function under its name
        self.client = RRMClient(url, api_key=api_key)
        self.method = method
        self.fields = fields

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(_text(p, "user"), []).append(i)
        keys = list(groups)
        res = self.client.rewards(
            [{"query": k, "responses": [_text(completions[i], "assistant") for i in groups[k]],
              "method": self.method} for k in keys], **self.fields)
        out: list[float | None] = [None] * len(completions)
        empty = 0
        for k, g in zip(keys, res.groups):
            empty += sum(g.empty)
            for i, reward, neutral in zip(groups[k], g.rewards, g.neutral):
                out[i] = None if neutral else reward
        if callable(log := kwargs.get("log_metric")):  # TRL >= 1.x logs it beside the rewards
            log(f"{self.__name__}/empty", empty / max(1, len(completions)))
        return out
