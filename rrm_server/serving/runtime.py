"""What a running judge holds (engine, tokenizer and prompt builder, cache, the serving logic) and
the one state machine that drives /health, /ready and admission of work.

Shared by the HTTP app (which starts it in the background so /health answers while the model
loads) and the in-process Python API (which awaits it). The model path is resolved here, once per
start; nothing below takes ``Settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from rrm_server import bundled_model
from rrm_server.cache import build_cache
from rrm_server.cache.keys import model_fingerprint
from rrm_server.engine import EngineClient, build_engine
from rrm_server.errors import Unavailable
from rrm_server.ops import metrics
from rrm_server.prompt.template import PromptBuilder
from rrm_server.serving.config import JudgeConfig, RewardConfig
from rrm_server.serving.judge import JudgeServing
from rrm_server.serving.judgments import JudgmentRecorder, RecordingConfig
from rrm_server.serving.rewards import RewardServing
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)


class State(str, Enum):
    loading = "loading"  # the model is loading: /ready 503, work 503
    ready = "ready"
    unavailable = "unavailable"  # loaded, but the engine cannot serve right now (e.g. no healthy replica)
    restarting = "restarting"  # the engine died and a new one is loading
    draining = "draining"  # SIGTERM: /ready 503 so balancers move on; work still finishes
    startup_failed = "startup_failed"  # for good: /health 503 too, so a supervisor restarts us
    engine_failed = "engine_failed"  # the engine died past its restart budget: for good

    @property
    def alive(self) -> bool:
        """/health: 200 unless the process cannot recover by itself."""
        return self not in (State.startup_failed, State.engine_failed)

    @property
    def accepts_work(self) -> bool:
        return self in (State.ready, State.draining)


# One error type per state, on every endpoint.
ERROR_TYPES = {State.loading: "not_ready", State.unavailable: "engine_unavailable",
               State.restarting: "engine_unavailable", State.draining: "draining",
               State.startup_failed: "startup_failed", State.engine_failed: "engine_failed"}


def resolve_model_path(settings: Settings) -> str:
    """Model directory or hub id; prepares the bundled model on first use (a download and a
    conversion, the first time on a machine)."""
    if settings.model is not None:
        return settings.model
    return str(bundled_model.ensure_bundled_model(settings.model_cache_dir))


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class Runtime:
    def __init__(self, settings: Settings, engine: EngineClient | None = None, tokenizer: Any = None) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.cache = build_cache(settings)
        self.judgments = JudgmentRecorder.open(RecordingConfig.from_settings(settings))
        self._tokenizer = tokenizer
        self.builder: PromptBuilder | None = None
        self.serving: JudgeServing | None = None
        self.rewards: RewardServing | None = None
        self.error: str | None = None  # why the state is startup_failed or engine_failed
        self._failed: State | None = None
        self.draining = False  # set on SIGTERM: /ready answers 503 while in-flight work finishes
        self.restarting = False  # the engine died and a new one is loading
        self.restarts: deque[float] = deque()  # when the engine was restarted (within the window)
        # Called when the service cannot go on (the engine died past its restart budget, or the
        # policy is to exit): the CLI stops the server with a non-zero exit so a supervisor restarts it.
        self.on_fatal: Callable[[str], None] | None = None
        self._watch: asyncio.Task[None] | None = None

    # -- state ---------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        if self._failed is not None:
            return self._failed
        if self.restarting:
            return State.restarting
        if self.serving is None:
            return State.loading
        if self.draining:
            return State.draining
        return State.ready if self.engine.ready else State.unavailable

    @property
    def ready(self) -> bool:
        """The engine is loaded and healthy (the rrm_engine_ready gauge), draining or not."""
        return self.state in (State.ready, State.draining)

    def state_message(self, state: State | None = None) -> str:
        state = state or self.state
        s = self.settings
        return {
            State.loading: "the judge engine is still loading; retry when GET /ready returns 200",
            State.unavailable: "the judge engine is not running (no healthy replica, or it died and a restart "
                               "is pending); retry when GET /ready returns 200",
            State.restarting: f"the judge engine died and is restarting (restart {len(self.restarts)} of "
                              f"{s.engine_max_restarts} allowed); retry when GET /ready returns 200",
            State.draining: "shutting down: finishing in-flight requests",
            State.startup_failed: f"the judge failed to start: {self.error}",
            State.engine_failed: self.error or "the judge engine failed",
            State.ready: "ready",
        }[state]

    def unavailable(self, state: State | None = None) -> Unavailable:
        state = state or self.state
        return Unavailable(ERROR_TYPES[state], self.state_message(state))

    def require_serving(self) -> JudgeServing:
        state = self.state
        if not state.accepts_work:
            raise self.unavailable(state)
        assert self.serving is not None
        return self.serving

    def require_rewards(self) -> RewardServing:
        self.require_serving()
        assert self.rewards is not None
        return self.rewards

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.error, self._failed = f"{type(e).__name__}: {e}", State.startup_failed
            logger.exception("judge failed to start")
            raise
        self._watch = asyncio.create_task(self._watch_engine(), name="rrm-engine-watch")

    async def _start(self) -> None:
        s = self.settings
        model_path = await asyncio.to_thread(resolve_model_path, s)
        tokenizer = self._tokenizer or await asyncio.to_thread(load_tokenizer, s.tokenizer or model_path)
        self.builder = PromptBuilder(tokenizer, reasoning_open_tag=s.reasoning_open_tag,
                                     reasoning_close_tag=s.reasoning_close_tag)
        # Scan the vocabulary for verdict tokens while the engine loads, not on the first request.
        verdicts = asyncio.create_task(asyncio.to_thread(lambda b=self.builder: b.verdict_tokens))
        info = await self.engine.start(model_path)
        await verdicts
        fingerprint = s.model_fingerprint or info.fingerprint or await asyncio.to_thread(model_fingerprint, info.path)
        self.serving = JudgeServing(JudgeConfig.from_settings(s), self.engine, self.builder, info, self.cache,
                                    fingerprint, recorder=self.judgments)
        self.rewards = RewardServing(RewardConfig.from_settings(s), self.serving)
        metrics.set_build_info(info.name)
        metrics.ENGINE_READY.set(1)

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
            if not await self._restart():
                return

    async def _restart(self) -> bool:
        s = self.settings
        self.restarts.append(time.monotonic())
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
            self._fatal(f"the judge engine died and could not be restarted: {type(e).__name__}: {e}")
            return False
        finally:
            self.restarting = False
        metrics.ENGINE_READY.set(1)
        logger.warning("the judge engine is back after %.1f s", time.monotonic() - started)
        return True

    def _fatal(self, message: str) -> None:
        self.error, self._failed = message, State.engine_failed
        metrics.ENGINE_READY.set(0)
        logger.error(message)
        if self.on_fatal is not None:
            self.on_fatal(message)

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(BaseException):
                await self._watch
        await self.engine.shutdown()
        await self.cache.close()
        await self.judgments.close()
