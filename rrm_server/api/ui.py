"""The judgment inspector: static files at ``/ui`` (no data of their own, so no key needed to load
them; every call the page makes goes through the API keys) and ``GET /v1/status``, the page's
health strip, read from the service's own state."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

import rrm_server
from rrm_server.api.deps import get_runtime
from rrm_server.api.responses import returns, send
from rrm_server.ops import metrics
from rrm_server.protocol.judgments import Recording
from rrm_server.serving.runtime import Runtime

UI_DIR = Path(rrm_server.__file__).parent / "ui"
UI_PATH = "/ui"
# The page runs only its own files: no inline script or style, no other origin, no framing, no
# form posts; fetches go to this origin only. Text it shows is set as text (see ui/dom.js).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new release's files are picked up at once
}


class UIFiles(StaticFiles):
    """The page's files, each with the security headers."""

    public = True  # the middleware lets it through without a key (Routes.of): it holds no data

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install_ui(app: FastAPI) -> None:
    app.mount(UI_PATH, UIFiles(directory=UI_DIR, html=True), name="ui")


# -- the health strip ----------------------------------------------------------------------------
router = APIRouter(tags=["ops"])
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


class QueueOut(BaseModel):
    waiting: int = Field(description="Work requests waiting for admission (the bounded queue).")
    max_waiting: int
    engine_calls: int = Field(description="Judge generations submitted to the engine and not finished.")


class CacheOut(BaseModel):
    backend: str = Field(description="memory, redis or off.")
    hits: int
    misses: int
    coalesced: int
    errors: int
    hit_rate: float | None = Field(description="hits / (hits + misses + coalesced) since this process started; "
                                   "null before the first lookup.")


class StatusOut(BaseModel):
    state: str = Field(description="loading, ready, unavailable, restarting, draining, startup_failed or "
                       "engine_failed (docs/operations.md).")
    ready: bool
    message: str
    model: str | None
    replicas: int | None = Field(description="Healthy engine replicas (1 for the in-process engine when up).")
    engine: dict[str, int] = Field(description="The engine client's own point-in-time numbers.")
    queue: QueueOut
    cache: CacheOut
    recording: Recording


def _cache(runtime: Runtime) -> CacheOut:
    seen = {"hit": 0, "miss": 0, "coalesced": 0, "error": 0} | {
        k: int(v) for k, v in metrics.current(metrics.CACHE_LOOKUPS).items()}
    lookups = seen["hit"] + seen["miss"] + seen["coalesced"]
    backend = runtime.cache.backend.name if runtime.cache.backend is not None else "off"
    return CacheOut(backend=backend, hits=seen["hit"], misses=seen["miss"], coalesced=seen["coalesced"],
                    errors=seen["error"], hit_rate=seen["hit"] / lookups if lookups else None)


@router.get("/v1/status", **returns(StatusOut))
async def status(runtime: RuntimeDep) -> Response:
    """Readiness, engine replicas, the admission queue, the cache's hit rate and recording, in one call
    (what the inspector's health strip shows; this process's figures)."""
    state = runtime.state
    stats = runtime.engine.stats() if runtime.serving is not None else {}
    replicas = stats.get("healthy_replicas", int(runtime.engine.ready) if runtime.serving is not None else None)
    queue = QueueOut(waiting=int(metrics.current(metrics.QUEUED).get("", 0)),
                     max_waiting=runtime.settings.max_queued_requests,
                     engine_calls=int(metrics.current(metrics.COMPARISONS_IN_FLIGHT).get("", 0)))
    return send(StatusOut(state=state.value, ready=runtime.ready, message=runtime.state_message(state),
                          model=runtime.serving.model.name if runtime.serving is not None else None,
                          replicas=replicas, engine=stats, queue=queue, cache=_cache(runtime),
                          recording=runtime.judgments.recording()))
