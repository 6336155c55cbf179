"""Liveness, readiness and model listing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from rrm_server.api.deps import get_runtime
from rrm_server.api.errors import ErrorResponse, error_response
from rrm_server.cache import CacheUnavailable
from rrm_server.engine import EngineUnavailable
from rrm_server.ops import metrics
from rrm_server.serving.runtime import ERROR_TYPES, Runtime, State

router = APIRouter(tags=["ops"])
NO_KEY = {"security": []}  # probes never need an API key (the middleware reads this)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# Response bodies, for the OpenAPI schema (the routes build their JSON themselves).
class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    model: str
    engine: dict[str, int]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    root: str
    max_model_len: int
    prompt_version: str
    fingerprint: str
    replicas: int | None = None  # engine replicas serving it (a pool, or Ray Serve), where known


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class CacheCleared(BaseModel):
    deleted: int
    backend: str


@router.get("/health", response_model=HealthOut, responses={503: {"model": ErrorResponse}}, openapi_extra=NO_KEY)
async def health(runtime: RuntimeDep) -> JSONResponse:
    """Alive. 503 only when start-up failed, or the engine died past its restart budget: for good,
    so a supervisor restarts the process."""
    state = runtime.state
    if not state.alive:
        return error_response(503, ERROR_TYPES[state], runtime.state_message(state))
    return JSONResponse({"status": "ok"})


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ErrorResponse}}, openapi_extra=NO_KEY)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """200 once the engine is loaded and healthy; 503 before and whenever it is not."""
    state = runtime.state
    if state is State.ready:
        try:
            await runtime.engine.check_health()
        except EngineUnavailable as e:  # e.g. no healthy replica left in the pool
            metrics.ENGINE_READY.set(0)
            return error_response(503, ERROR_TYPES[State.unavailable], str(e))
        metrics.ENGINE_READY.set(1)
        assert runtime.serving is not None
        return JSONResponse({"status": "ready", "model": runtime.serving.model.name, "engine": runtime.engine.stats()})
    metrics.ENGINE_READY.set(0)
    return error_response(503, ERROR_TYPES[state], runtime.state_message(state))


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(runtime: RuntimeDep) -> Response:
    """Prometheus exposition: rrm_* metrics, and vLLM's own vllm:* with the in-process engine."""
    metrics.ENGINE_READY.set(1 if runtime.ready else 0)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/v1/models", response_model=ModelList)
async def models(runtime: RuntimeDep) -> JSONResponse:
    """OpenAI-style model list (empty while loading)."""
    data = []
    if runtime.serving is not None:
        m = runtime.serving.model
        data.append({"id": m.name, "object": "model", "owned_by": "rrm-server", "root": m.path,
                     "max_model_len": m.max_model_len,
                     "prompt_version": runtime.serving.builder.spec.version,
                     "fingerprint": runtime.serving.fingerprint,
                     "replicas": runtime.engine.stats().get("healthy_replicas")})
    return JSONResponse({"object": "list", "data": data})


@router.delete("/v1/cache", response_model=CacheCleared, responses={503: {"model": ErrorResponse}})
async def clear_cache(runtime: RuntimeDep) -> JSONResponse:
    """Delete this service's cached votes (Redis: a SCAN over its key prefix, never FLUSHALL)."""
    try:
        deleted = await runtime.cache.clear()
    except CacheUnavailable as e:
        return error_response(503, "cache_unavailable", f"the cache could not be cleared: {e}")
    # `is not None`: an emptied in-memory backend has len() 0, which is falsy.
    backend = runtime.cache.backend.name if runtime.cache.backend is not None else "off"
    return JSONResponse({"deleted": deleted, "backend": backend})
