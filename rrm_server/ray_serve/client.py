"""The judge for callers inside the Ray cluster (an RL job's reward workers): Serve handle calls to
the gateway deployment, no HTTP hop, no JSON. Requests are validated here, so a bad field fails in
the caller before anything is sent.

    judge = RayJudge()                                        # the app `rrm` on the current cluster
    result = await judge.pairwise("What is 2+2?", ["4", "5"], votes=3)        # async code
    ranked = judge.rank("What is 2+2?", ["4", "5", "22"], method="knockout").result()   # sync code
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentResponse

from rrm_server.protocol.judge import PairwiseRequest, RankRequest
from rrm_server.ray_serve.app import APP_NAME


class RayJudge:
    def __init__(self, app_name: str = APP_NAME) -> None:
        self.handle = serve.get_app_handle(app_name)

    def pairwise(self, query: str, responses: Sequence[str], **fields: Any) -> DeploymentResponse:
        """A ``PairwiseResponse`` when awaited (or ``.result()``)."""
        return self.handle.pairwise.remote(PairwiseRequest(query=query, responses=list(responses), **fields))

    def rank(self, query: str, responses: Sequence[str], method: str = "elo", **fields: Any) -> DeploymentResponse:
        """A ``RankResponse`` when awaited (or ``.result()``)."""
        request = RankRequest(query=query, responses=list(responses), method=method, **fields)  # type: ignore[arg-type]
        return self.handle.rank.remote(request)
