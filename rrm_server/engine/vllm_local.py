"""In-process vLLM ``AsyncLLM``: every comparison is its own engine request, so continuous batching
sees all comparisons of all in-flight HTTP requests at once, and prefix caching reuses the shared
system prompt, query and first-shown response."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from rrm_server.engine.base import (
    EngineClient,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
)
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)


def _on_cpu(settings: Settings) -> bool:
    if settings.device != "auto":
        return settings.device == "cpu"
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 matmuls are emulated (measured ~5x slower than float32
    on the AVX2 CI machines, docs/benchmarks.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: leave vLLM's choice alone
    return "avx512_bf16" in flags or "amx_bf16" in flags


def engine_args_for(settings: Settings, model_path: str, executor_backend: str | None = None) -> Any:
    from vllm.engine.arg_utils import AsyncEngineArgs

    return AsyncEngineArgs(**engine_kwargs(settings, model_path, executor_backend))


def engine_kwargs(settings: Settings, model_path: str, executor_backend: str | None = None) -> dict[str, Any]:
    """vLLM engine arguments from our settings (also what benchmarks give the offline ``LLM``).
    ``executor_backend``: vLLM's distributed executor ("ray" inside a Ray Serve replica with TP > 1)."""
    cpu = _on_cpu(settings)
    if cpu:
        # vLLM-CPU reserves a core for the front end by default; the gateway is mostly idle waiting
        # on the engine, so give the engine both cores unless the operator chose otherwise.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")
    kwargs: dict[str, Any] = dict(
        model=model_path,
        tokenizer=settings.tokenizer,
        served_model_name=[settings.model_name],
        dtype="float32" if cpu and settings.dtype == "auto" and not cpu_has_native_bf16() else settings.dtype,
        seed=settings.engine_seed,
        enable_prefix_caching=settings.enable_prefix_caching,
        tensor_parallel_size=settings.tensor_parallel_size,
        enforce_eager=settings.enforce_eager if settings.enforce_eager is not None else cpu,
        gpu_memory_utilization=settings.gpu_memory_utilization or (0.3 if cpu else 0.9),
        disable_log_stats=False,
    )
    if settings.effective_max_model_len is not None:
        kwargs["max_model_len"] = settings.effective_max_model_len
    if settings.max_num_seqs is not None:
        kwargs["max_num_seqs"] = settings.max_num_seqs
    if settings.kv_cache_gib is not None:
        kwargs["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * (1 << 30))
    if executor_backend is not None:
        kwargs["distributed_executor_backend"] = executor_backend
    chunked = settings.enable_chunked_prefill
    if chunked is None and cpu:
        chunked = False  # seeded requests + chunked prefill crash vLLM-CPU 0.32 (see settings)
    if chunked is not None:
        kwargs["enable_chunked_prefill"] = chunked
    return kwargs


class VLLMEngine(EngineClient):
    def __init__(self, settings: Settings, executor_backend: str | None = None) -> None:
        self.settings = settings
        self.executor_backend = executor_backend
        self._llm: Any = None
        self._info: ModelInfo | None = None

    @property
    def ready(self) -> bool:
        return self._llm is not None and not self._llm.errored

    async def start(self, model_path: str | None = None) -> ModelInfo:
        if model_path is None:
            raise ValueError("the in-process engine needs the model path (the runtime resolves it)")
        self.model_path = model_path
        args = engine_args_for(self.settings, model_path, self.executor_backend)
        from vllm.v1.engine.async_llm import AsyncLLM

        # Building the engine blocks for tens of seconds (spawns and loads the worker); a thread
        # keeps /health answering meanwhile. The output loop starts lazily on the first request.
        llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        self._llm = llm
        self._info = ModelInfo(
            name=self.settings.model_name, path=model_path, max_model_len=llm.model_config.max_model_len
        )
        logger.info("vLLM engine ready: %s (max_model_len=%d)", model_path, self._info.max_model_len)
        return self._info

    def _params(self, request: GenerationRequest, streamed: bool) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            seed=request.seed,
            logprobs=request.logprobs,
            ignore_eos=self.settings.engine_ignore_eos and request.logprobs is None,
            # Unstreamed: one output when the judgment is done, no per-token wake-ups or cumulative
            # copies for the hundreds of streams a rank request runs at once. Streamed: only the new
            # tokens of each step.
            output_kind=RequestOutputKind.DELTA if streamed else RequestOutputKind.FINAL_ONLY,
            # Decoded once at the end instead of incrementally at every step, which costs the
            # front-end process CPU the engine's workers could use.
            detokenize=False,
        )

    async def _outputs(self, request: GenerationRequest, streamed: bool) -> AsyncIterator[Any]:
        """vLLM's outputs for the request, its failures as ours. AsyncLLM aborts the request itself
        when this generator is cancelled or closed."""
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        if not self.ready:
            raise EngineUnavailable("the vLLM engine is not running")
        try:
            async for out in self._llm.generate(TokensPrompt(prompt_token_ids=list(request.prompt_token_ids)),
                                                self._params(request, streamed), request.request_id):
                if out.outputs and out.outputs[0].finish_reason == "abort":
                    # Aborted by the engine itself, not by us: not a judgment.
                    raise EngineError("the engine aborted this generation")
                yield out
        except EngineDeadError as e:
            raise EngineUnavailable(f"the vLLM engine died: {e}") from e
        except (asyncio.CancelledError, GeneratorExit, EngineError):
            raise
        except Exception as e:  # one bad generation must not fail its siblings
            if self._llm.errored:
                raise EngineUnavailable(f"the vLLM engine died: {e}") from e
            raise EngineError(f"{type(e).__name__}: {e}") from e

    async def generate(self, request: GenerationRequest) -> Generation:
        final = None
        async for out in self._outputs(request, streamed=False):
            final = out
        if final is None or not final.outputs:
            raise EngineError("the engine returned no output")
        out = final.outputs[0]
        text = self._llm.tokenizer.decode(out.token_ids, skip_special_tokens=True) if out.token_ids else ""
        return Generation(
            text=text,
            finish_reason=out.finish_reason,
            prompt_tokens=len(final.prompt_token_ids or request.prompt_token_ids),
            generated_tokens=len(out.token_ids),
            cached_prompt_tokens=final.num_cached_tokens,
            token_ids=list(out.token_ids),
            logprobs=[{t: lp.logprob for t, lp in pos.items()} for pos in out.logprobs]
            if request.logprobs is not None and out.logprobs is not None else None,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        first = True
        async for out in self._outputs(request, streamed=True):
            if not out.outputs:
                continue
            o = out.outputs[0]
            yield GenerationChunk(list(o.token_ids), o.finish_reason,
                                  len(out.prompt_token_ids or request.prompt_token_ids) if first else 0,
                                  out.num_cached_tokens if first else None)
            first = False

    def stats(self) -> dict[str, int]:
        if self._llm is None:
            return {}
        return {"unfinished_requests": self._llm.output_processor.get_num_unfinished_requests()}

    async def abort(self, request_ids: Sequence[str]) -> None:
        if self._llm is not None and request_ids:
            await self._llm.abort(list(request_ids))

    async def check_health(self) -> None:
        if self._llm is None:
            raise EngineUnavailable("the vLLM engine is still loading")
        if self._llm.errored:
            raise EngineUnavailable("the vLLM engine has died")

    @property
    def crashed(self) -> bool:
        # vLLM's monitor thread marks the client errored the moment the engine core process exits.
        return self._llm is not None and self._llm.errored

    async def shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.shutdown)
