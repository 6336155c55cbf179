"""OpenRLHF custom reward function backed by rrm-server.

Two ways to use rrm-server from OpenRLHF:

1. Point the trainer at the service directly (no code):
   ``--reward.remote_url http://judge:8000/get_reward`` (older releases: ``--remote_rm_url``).
2. Or give it this file: ``--reward.remote_url /path/to/rrm_server/integrations/openrlhf.py``; OpenRLHF
   calls ``reward_func(queries, prompts, labels)``. Configure with ``RRM_URL`` (default
   http://127.0.0.1:8000), ``RRM_REWARD_MODE`` (reference|group) and ``RRM_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from rrm_server.client import RRMClient


@lru_cache(maxsize=1)
def _client() -> RRMClient:
    return RRMClient(os.environ.get("RRM_URL", "http://127.0.0.1:8000"), api_key=os.environ.get("RRM_API_KEY"),
                     timeout=float(os.environ.get("RRM_TIMEOUT", "175")))


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None,
                **kwargs: Any) -> dict[str, Any]:
    mode = os.environ.get("RRM_REWARD_MODE")
    res = _client().get_reward(queries, prompts, labels, **({"mode": mode} if mode else {}))
    out: dict[str, Any] = {"rewards": res.rewards, "scores": res.scores, "extra_logs": res.extra_logs}
    try:  # OpenRLHF expects tensors; without torch (e.g. in tests) plain lists are returned
        import torch
    except ImportError:
        return out
    return {"rewards": torch.tensor(res.rewards), "scores": torch.tensor(res.scores),
            "extra_logs": {k: torch.tensor(v) for k, v in res.extra_logs.items()}}
