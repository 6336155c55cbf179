"""The Python API: the same judging as the HTTP service, in-process, without a server.

    async with LocalJudge() as judge:                       # bundled model, in-process vLLM
        result = await judge.pairwise("What is 2+2?", ["4", "5"], votes=3)
        ranked = await judge.rank("What is 2+2?", ["4", "5", "22"], method="knockout")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rrm_server.engine import EngineClient
from rrm_server.protocol.judge import (
    PairwiseRequest,
    PairwiseResponse,
    RankRequest,
    RankResponse,
    RenderRequest,
    RenderResponse,
)
from rrm_server.serving.runtime import Runtime
from rrm_server.settings import Settings


class LocalJudge:
    def __init__(self, settings: Settings | None = None, *, engine: EngineClient | None = None,
                 tokenizer: Any = None, **overrides: Any) -> None:
        settings = settings or Settings()
        if overrides:
            settings = settings.model_copy(update=overrides)
        self.runtime = Runtime(settings, engine=engine, tokenizer=tokenizer)

    async def start(self) -> LocalJudge:
        await self.runtime.start()
        return self

    async def close(self) -> None:
        await self.runtime.shutdown()

    async def __aenter__(self) -> LocalJudge:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def pairwise(self, query: str, responses: Sequence[str], **fields: Any) -> PairwiseResponse:
        req = PairwiseRequest(query=query, responses=list(responses), **fields)
        return await self.runtime.require_serving().pairwise(req)

    async def rank(self, query: str, responses: Sequence[str], method: str = "elo", **fields: Any) -> RankResponse:
        req = RankRequest(query=query, responses=list(responses), method=method, **fields)  # type: ignore[arg-type]
        return await self.runtime.require_serving().rank(req)

    async def render(self, query: str, responses: Sequence[str], order: str = "fixed", **fields: Any) -> RenderResponse:
        req = RenderRequest(query=query, responses=list(responses), order=order, **fields)  # type: ignore[arg-type]
        return await self.runtime.require_serving().render(req)
