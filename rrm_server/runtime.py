"""What a running judge holds: settings, engine, tokenizer/prompt builder and the serving logic.

Shared by the HTTP app (which starts it in the background so /health answers while the model
loads) and the in-process Python API (which awaits it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rrm_server.api.judge.serving import JudgeServing
from rrm_server.api.rewards.serving import RewardServing
from rrm_server.cache import build_cache
from rrm_server.cache.keys import model_fingerprint
from rrm_server.engine import EngineClient, build_engine
from rrm_server.ops import metrics
from rrm_server.errors import NotReady
from rrm_server.prompt.template import PromptBuilder
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class Runtime:
    def __init__(self, settings: Settings, engine: EngineClient | None = None, tokenizer: Any = None) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.cache = build_cache(settings)
        self._tokenizer = tokenizer
        self.builder: PromptBuilder | None = None
        self.serving: JudgeServing | None = None
        self.rewards: RewardServing | None = None
        self.error: str | None = None
        self.draining = False  # set on SIGTERM: /ready answers 503 while in-flight work finishes

    @property
    def ready(self) -> bool:
        return self.serving is not None and self.engine.ready

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.draining:
            return "draining"
        return "ready" if self.ready else "loading"

    async def start(self) -> None:
        try:
            model_path = await asyncio.to_thread(self.settings.resolve_model_path)
            tokenizer = self._tokenizer or await asyncio.to_thread(
                load_tokenizer, self.settings.tokenizer or model_path
            )
            self.builder = PromptBuilder(
                tokenizer,
                reasoning_open_tag=self.settings.reasoning_open_tag,
                reasoning_close_tag=self.settings.reasoning_close_tag,
            )
            # Scan the vocabulary for verdict tokens while the engine loads, not on the first request.
            verdicts = asyncio.create_task(asyncio.to_thread(lambda b=self.builder: b.verdict_tokens))
            info = await self.engine.start()
            await verdicts
            fingerprint = self.settings.model_fingerprint or await asyncio.to_thread(model_fingerprint, info.path)
            self.serving = JudgeServing(self.settings, self.engine, self.builder, info, self.cache, fingerprint)
            self.rewards = RewardServing(self.settings, self.serving)
            metrics.set_build_info(info.name)
            metrics.ENGINE_READY.set(1)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            logger.exception("judge failed to start")
            raise

    def require_serving(self) -> JudgeServing:
        if self.serving is None:
            raise NotReady(self.error and f"the judge failed to start: {self.error}"
                           or "the judge engine is still loading; retry when GET /ready returns 200")
        return self.serving

    def require_rewards(self) -> RewardServing:
        self.require_serving()
        assert self.rewards is not None
        return self.rewards

    async def shutdown(self) -> None:
        await self.engine.shutdown()
        await self.cache.close()
