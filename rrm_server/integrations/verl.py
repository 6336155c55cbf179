"""verl reward function backed by rrm-server: judges ``solution_str`` against ``ground_truth``.

In the verl config (verl >= 0.7.1 reads the ``reward`` section; 0.9.x ignores the old top-level
``custom_reward_function`` key without a word, so verl silently scores with its built-in rule)::

    reward:
      custom_reward_function:
        path: /path/to/rrm_server/integrations/verl.py
        name: compute_score            # or compute_score_async for the reward loop
        reward_kwargs:                 # Hydra CLI: +reward.custom_reward_function.reward_kwargs.url=...
          url: http://judge:8000
          api_key: ...                 # optional
          timeout: 175                 # seconds per request, optional

Settings come from ``reward_kwargs`` first, then ``RRM_URL``, ``RRM_API_KEY``, ``RRM_TIMEOUT``
(default http://127.0.0.1:8000, none, 175 s). verl <= 0.7.0: the same keys at the top level
(``custom_reward_function.path`` ...). Checked with verl 0.9.1's own loader and reward loop (tests).

``compute_score`` is synchronous, for every reward manager (the reward loop runs it in a thread;
the legacy managers call it directly); ``compute_score_async`` is the same for the reward loop,
which awaits it. Each sample goes through the service's ``/get_reward`` in reference mode, so it
gets exactly that path's rules: the policy's reasoning block is removed, an empty answer (or one
whose reasoning never closes) gets the lowest reward without a judgment (``rrm_empty`` = 1), and a
sample without a valid vote gets 0 with ``rrm_neutral`` = 1. The question comes from
``extra_info["question"]`` (or "prompt", "query"; chat messages: the last user turn).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from rrm_server.client import AsyncRRMClient, RRMClient
from rrm_server.protocol.rewards import GetRewardResponse

_lock = threading.Lock()
_sync: dict[tuple, RRMClient] = {}
_async: dict[tuple, AsyncRRMClient] = {}


def _config(kwargs: dict[str, Any]) -> tuple[str, str | None, float]:
    url = kwargs.get("url") or os.environ.get("RRM_URL", "http://127.0.0.1:8000")
    key = kwargs.get("api_key") or os.environ.get("RRM_API_KEY")
    timeout = float(kwargs.get("timeout") or os.environ.get("RRM_TIMEOUT", "175"))
    return str(url), key, timeout


def _question(extra_info: Any) -> str:
    info = extra_info if isinstance(extra_info, dict) else {}
    q = info.get("question") or info.get("prompt") or info.get("query")
    if isinstance(q, list):  # chat messages: the last user turn
        q = next((m.get("content") for m in reversed(q) if isinstance(m, dict) and m.get("role") == "user"), None)
    if not isinstance(q, str) or not q.strip():
        raise ValueError("rrm-server's verl reward needs the question in extra_info['question']")
    return q


def _request(solution_str: str, ground_truth: Any, extra_info: Any) -> tuple[list[str], list[str], list[str]]:
    # /get_reward's reference mode: the response is query minus its prompt prefix.
    q = _question(extra_info)
    return [q + (solution_str or "")], [q], [str(ground_truth)]


def _score(res: GetRewardResponse) -> dict[str, float]:
    logs = {k: v[0] for k, v in res.extra_logs.items()}
    return {"score": res.rewards[0], "rrm_win_rate": res.scores[0], **logs}


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None,
                  **kwargs: Any) -> dict[str, float]:
    cfg = _config(kwargs)
    with _lock:
        client = _sync.get(cfg) or _sync.setdefault(cfg, RRMClient(cfg[0], api_key=cfg[1], timeout=cfg[2]))
    return _score(client.get_reward(*_request(solution_str, ground_truth, extra_info), mode="reference"))


async def compute_score_async(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None,
                              **kwargs: Any) -> dict[str, float]:
    cfg = _config(kwargs)
    key = (*cfg, id(asyncio.get_running_loop()))  # httpx's async client belongs to one event loop
    client = _async.get(key) or _async.setdefault(key, AsyncRRMClient(cfg[0], api_key=cfg[1], timeout=cfg[2]))
    res = await client.get_reward(*_request(solution_str, ground_truth, extra_info), mode="reference")
    return _score(res)
