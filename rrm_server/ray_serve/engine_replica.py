"""The engine deployment: one judge engine (vLLM ``AsyncLLM``) per Serve replica.

It serves ``GenerationRequest -> Generation`` exactly as the in-process engine does (token-id
prompts, seeds, verdict-probe logprobs; streamed too, for early exit and deadlines), tagging each
generation with the replica that made it. Its
``check_health`` fails once its engine has died, so Serve replaces the replica; the gateway re-runs
the comparisons that were on it elsewhere (``RayHandleEngine``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from ray import serve

from rrm_server.engine import EngineClient, Generation, GenerationChunk, GenerationRequest, ModelInfo
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)


def load_factory(path: str) -> Any:
    """``module:attribute`` -> the attribute (an engine factory taking ``Settings``)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def cpu_binding(rank: int, cpus_per_replica: int, cores: list[int]) -> str:
    """The cores of replica ``rank`` for vLLM-CPU's OpenMP threads (``VLLM_CPU_OMP_THREADS_BIND``):
    ``cpus_per_replica`` consecutive cores of its own, wrapping round when replicas outnumber them."""
    k = max(1, min(cpus_per_replica, len(cores)))
    start = (rank * k) % len(cores)
    chosen = [cores[(start + i) % len(cores)] for i in range(k)]
    return ",".join(str(c) for c in chosen)


class EngineReplica:
    async def __init__(self, settings: dict[str, Any], model_path: str, engine_factory: str | None = None,
                       executor_backend: str | None = None) -> None:
        self.settings = Settings(**settings)
        context = serve.get_replica_context()
        self.replica = context.replica_tag
        if self.settings.device != "cuda" and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # Without this, every replica on a machine would spread its threads over all its cores.
            cores = sorted(os.sched_getaffinity(0))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_binding(context.rank.rank, int(self.settings.engine_cpus),
                                                                  cores)
        if engine_factory:
            self.engine: EngineClient = load_factory(engine_factory)(self.settings)
        else:
            from rrm_server.engine.vllm_local import VLLMEngine

            self.engine = VLLMEngine(self.settings, executor_backend=executor_backend)
        self.info: ModelInfo = await self.engine.start(model_path)
        logger.info("engine replica %s ready (rank %d, cores %s)", self.replica, context.rank.rank,
                    os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "all"))

    async def generate(self, request: GenerationRequest) -> Generation:
        # Cancelling the caller's request cancels this coroutine; the engine aborts the generation.
        return replace(await self.engine.generate(request), served_by=self.replica)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        # A streaming handle call: cancelling it closes this generator, which aborts the generation.
        async for chunk in self.engine.stream(request):
            yield chunk

    def model_info(self) -> ModelInfo:
        return self.info

    def replica_id(self) -> str:
        return self.replica

    async def check_health(self) -> None:
        await self.engine.check_health()  # raises once the engine has died: Serve replaces the replica

    def stats(self) -> dict[str, int]:
        return self.engine.stats()

    async def __del__(self) -> None:  # Serve awaits an async __del__ on graceful shutdown
        await self.engine.shutdown()
