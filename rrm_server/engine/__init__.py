"""Engines behind one interface: ``EngineClient``."""

from rrm_server.engine.base import (
    EngineBusy,
    EngineClient,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
)

__all__ = ["EngineBusy", "EngineClient", "EngineError", "EngineUnavailable", "Generation", "GenerationChunk",
           "GenerationRequest",
           "ModelInfo"]


def build_engine(settings) -> EngineClient:  # type: ignore[no-untyped-def]
    if settings.engine == "vllm":
        from rrm_server.engine.vllm_local import VLLMEngine

        return VLLMEngine(settings)
    if settings.engine == "openai":
        from rrm_server.engine.openai_pool import OpenAIPoolEngine

        return OpenAIPoolEngine(settings)
    raise ValueError(f"unknown engine {settings.engine!r}")
