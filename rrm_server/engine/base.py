"""The engine interface the judging code talks to. Nothing above this line imports vLLM."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: Sequence[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None
    logprobs: int | None = None  # top-k log probabilities per generated token
    # Requests with the same key share a long prompt prefix: a pool routes them to one replica.
    affinity_key: str | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str | None  # "stop" | "length" | "abort" | None
    prompt_tokens: int
    generated_tokens: int
    cached_prompt_tokens: int | None = None
    token_ids: Sequence[int] = ()
    # Per generated position: token id -> log probability (top-k and the sampled token).
    logprobs: list[dict[int, float]] | None = None
    served_by: str | None = None  # the engine replica that generated it, where there are several


@dataclass(frozen=True)
class GenerationChunk:
    """What one streamed step adds: the new tokens; the last chunk has the finish reason."""

    token_ids: Sequence[int]
    finish_reason: str | None = None
    prompt_tokens: int = 0
    cached_prompt_tokens: int | None = None


class EngineError(Exception):
    """One generation failed; the judgment is recorded as invalid (engine_error)."""


class EngineUnavailable(EngineError):
    """The engine is not loaded or has died: no generation can succeed until it is back."""


class EngineBusy(EngineError):
    """The engine's queues are full (Ray Serve backpressure): the request is refused, to retry later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ModelInfo:
    """What the engine really serves (a remote pool reports its replicas', not local settings)."""

    name: str
    path: str  # where the weights are: a local directory, a hub id, or a replica's model root
    max_model_len: int
    # Identity of the weights for cache keys; None: derived from the files at ``path`` (local weights).
    fingerprint: str | None = None


class EngineClient(abc.ABC):
    """Generate one judgment, abort, report health. In-process vLLM today; a remote pool later."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool: ...

    model_path: str | None = None  # what start() was given: a restart loads the same

    @abc.abstractmethod
    async def start(self, model_path: str | None = None) -> ModelInfo:
        """Load the model at ``model_path`` (resolved once by the runtime; a remote pool serves its
        own weights and ignores it); may take minutes. Returns what is served."""

    @abc.abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation:
        """Run one generation to completion. Cancelling the awaiting task aborts it in the engine."""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """The generation's tokens as they come (for early exit and deadlines). Closing the iterator,
        or cancelling the task that reads it, aborts the generation in the engine. Without a
        streaming engine: one chunk at the end (a vote then cannot exit before it is done)."""
        g = await self.generate(request)
        yield GenerationChunk(list(g.token_ids), g.finish_reason, g.prompt_tokens, g.cached_prompt_tokens)

    @abc.abstractmethod
    async def abort(self, request_ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise EngineUnavailable when the engine cannot serve."""

    @abc.abstractmethod
    async def shutdown(self) -> None: ...

    @property
    def crashed(self) -> bool:
        """True once a started engine has failed for good and only a restart can bring it back (the
        in-process engine's core process died). A remote pool is never dead: replicas come and go."""
        return False

    async def restart(self) -> ModelInfo:
        """Replace a dead engine with a fresh one (same model and arguments)."""
        await self.shutdown()
        return await self.start(self.model_path)

    def stats(self) -> dict[str, int]:
        """Cheap point-in-time numbers for /ready and metrics."""
        return {}
