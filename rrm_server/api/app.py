"""The FastAPI application: routers, error handlers, and the judge's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from rrm_server import __version__
from rrm_server.api.errors import install_error_handlers
from rrm_server.api.judge import router as judge_router
from rrm_server.api.judgments import router as judgments_router
from rrm_server.api.middleware import install_middleware
from rrm_server.api.ops import router as ops_router
from rrm_server.api.rewards import router as rewards_router
from rrm_server.api.ui import install_ui
from rrm_server.api.ui import router as status_router
from rrm_server.engine import EngineClient
from rrm_server.serving.runtime import Runtime
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)


def build_app(settings: Settings | None = None, engine: EngineClient | None = None,
              tokenizer: object = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings, engine=engine, tokenizer=tokenizer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: /health answers at once, /ready turns 200 when the engine is up.
        starting = asyncio.create_task(runtime.start())
        starting.add_done_callback(_log_start_failure)
        try:
            yield
        finally:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            await runtime.shutdown()

    app = FastAPI(
        title="rrm-server",
        version=__version__,
        summary="Serving for generative reward reasoning models: pairwise, ELO and knockout judging.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(judge_router)
    app.include_router(rewards_router)
    app.include_router(judgments_router)
    app.include_router(status_router)
    if settings.ui:
        install_ui(app)
    install_middleware(app, settings)
    return app


def _log_start_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("start-up failed; /health and /ready now answer 503 so a supervisor can restart us")
