"""What a running judge holds: settings, engine, tokenizer/prompt builder and the serving logic.

Shared by the HTTP app (which starts it in the background so /health answers while the model
loads) and the in-process Python API (which awaits it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any, Callable

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
        self.error_type = "startup_failed"  # or "engine_failed": it died later, past its restarts
        self.draining = False  # set on SIGTERM: /ready answers 503 while in-flight work finishes
        self.restarting = False  # the engine died and a new one is loading
        self.restarts: deque[float] = deque()  # when the engine was restarted (within the window)
        # Called when the service cannot go on (the engine died past its restart budget, or the
        # policy is to exit): the CLI stops the server with a non-zero exit so a supervisor restarts it.
        self.on_fatal: Callable[[str], None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.serving is not None and self.engine.ready

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.draining:
            return "draining"
        if self.restarting:
            return "restarting"
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
        self._watch = asyncio.create_task(self._watch_engine(), name="rrm-engine-watch")

    async def _watch_engine(self) -> None:
        """Notice a dead engine within ``engine_watch_interval`` and restart it (or give up).

        Requests in flight when it dies already failed with 503 (vLLM fails every pending output at
        once); this brings the service back so the caller's retry succeeds."""
        s = self.settings
        while True:
            await asyncio.sleep(s.engine_watch_interval)
            if not self.engine.crashed or self.draining:
                continue
            metrics.ENGINE_READY.set(0)
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > s.engine_restart_window:
                self.restarts.popleft()
            if s.engine_on_failure == "exit" or len(self.restarts) >= s.engine_max_restarts:
                why = ("--engine-on-failure exit" if s.engine_on_failure == "exit" else
                       f"{len(self.restarts)} restarts in the last {s.engine_restart_window:g} s")
                return self._fatal(f"the judge engine died ({why}); exiting so a supervisor restarts the server")
            self.restarts.append(now)
            self.restarting = True
            metrics.ENGINE_RESTARTS.inc()
            logger.error("the judge engine died; restarting it (restart %d of %d allowed in %g s)",
                         len(self.restarts), s.engine_max_restarts, s.engine_restart_window)
            started = time.monotonic()
            try:
                await self.engine.restart()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.exception("the judge engine could not be restarted")
                return self._fatal(f"the judge engine died and could not be restarted: {type(e).__name__}: {e}")
            finally:
                self.restarting = False
            metrics.ENGINE_READY.set(1)
            logger.warning("the judge engine is back after %.1f s", time.monotonic() - started)

    def _fatal(self, message: str) -> None:
        self.error, self.error_type = message, "engine_failed"
        metrics.ENGINE_READY.set(0)
        logger.error(message)
        if self.on_fatal is not None:
            self.on_fatal(message)

    def require_serving(self) -> JudgeServing:
        if self.error:
            raise NotReady(self.error if self.error_type == "engine_failed" else
                           f"the judge failed to start: {self.error}")
        if self.restarting:
            raise NotReady("the judge engine died and is restarting; retry when GET /ready returns 200")
        if self.serving is None:
            raise NotReady("the judge engine is still loading; retry when GET /ready returns 200")
        return self.serving

    def require_rewards(self) -> RewardServing:
        self.require_serving()
        assert self.rewards is not None
        return self.rewards

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(BaseException):
                await self._watch
        await self.engine.shutdown()
        await self.cache.close()
