"""verl reward function backed by rrm-server: judges ``solution_str`` against ``ground_truth``.

In the verl config::

    custom_reward_function:
      path: /path/to/rrm_server/integrations/verl.py
      name: compute_score

``RRM_URL`` (default http://127.0.0.1:8000), ``RRM_VOTES`` (default 2, half in each order) and
``RRM_API_KEY`` configure it. The question comes from ``extra_info["question"]`` (or "prompt").
The score is 2 * win rate - 1 against the reference; a sample without a valid vote scores 0 with
``rrm_neutral`` = 1 in the returned dict (verl logs the extra keys).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from rrm_server.client import AsyncRRMClient

_clients: dict[int, AsyncRRMClient] = {}


def _client() -> AsyncRRMClient:
    loop = id(asyncio.get_running_loop())  # httpx's async client belongs to one event loop
    if loop not in _clients:
        _clients[loop] = AsyncRRMClient(os.environ.get("RRM_URL", "http://127.0.0.1:8000"),
                                        api_key=os.environ.get("RRM_API_KEY"))
    return _clients[loop]


def _question(extra_info: Any) -> str:
    info = extra_info if isinstance(extra_info, dict) else {}
    q = info.get("question") or info.get("prompt") or info.get("query")
    if isinstance(q, list):  # chat messages: the last user turn
        q = next((m.get("content") for m in reversed(q) if isinstance(m, dict) and m.get("role") == "user"), None)
    if not isinstance(q, str) or not q.strip():
        raise ValueError("rrm-server's verl reward needs the question in extra_info['question']")
    return q


async def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None,
                        **kwargs: Any) -> dict[str, float]:
    votes = int(os.environ.get("RRM_VOTES", "2"))
    res = await _client().pairwise(_question(extra_info), [solution_str or "(empty response)", str(ground_truth)],
                                   votes=votes, order="both", early_stop=False)
    t = res.tally
    valid = t.first + t.second
    rate = t.first / valid if valid else 0.5
    return {"score": 2 * rate - 1, "rrm_win_rate": rate, "rrm_neutral": float(valid == 0),
            "rrm_valid_votes": float(valid), "rrm_invalid_votes": float(t.invalid)}
