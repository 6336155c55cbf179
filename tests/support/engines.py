"""A scripted engine: answers judgments with a function of what the judge was shown."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
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

_SHOWN_RE = re.compile(
    r"## Query\n\n(?P<q>.*)\n\n## Assistant responses\n\n### Assistant 1\n\n(?P<a1>.*)\n\n\n"
    r"### Assistant 2\n\n(?P<a2>.*)\n\n## Analysis",
    re.S,
)


@dataclass
class Shown:
    query: str
    first: str  # shown as Assistant 1
    second: str  # shown as Assistant 2
    request: GenerationRequest


# A script returns the generated text, or (text, finish_reason), or raises.
Script = Callable[[Shown], "str | tuple[str, str]"]


def prefer(better: Callable[[str, str], bool]) -> Script:
    """A judge that says Assistant 1 iff better(first, second)."""

    def script(s: Shown) -> str:
        slot = 1 if better(s.first, s.second) else 2
        return f"Reasoning about it.\n\\boxed{{Assistant {slot}}}"

    return script


@dataclass
class ScriptedEngine(EngineClient):
    tokenizer: Any
    script: Script = field(default_factory=lambda: prefer(lambda a, b: len(a) >= len(b)))
    delay: float = 0.0
    max_model_len: int = 4096
    name: str = "scripted-judge"
    start_delay: float = 0.0
    fail_start: bool = False
    calls: list[GenerationRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    dead: bool = False  # an outage: not ready, every generation fails
    crashed: bool = False  # for the runtime's supervisor: only a restart brings it back
    starts: int = 0
    # p("Assistant 1") the judge assigns at a verdict (probe calls); None: no log probabilities.
    probability: Callable[[Shown], float] | None = None
    probes: list[GenerationRequest] = field(default_factory=list)
    # Seconds between streamed tokens; None: stream() sends the whole generation as one chunk.
    token_delay: float | None = None
    streamed: dict[str, int] = field(default_factory=dict)  # request id -> tokens sent by stream()
    # Lock-step: stream() sends its next token only once the verdict probes in flight are answered,
    # so where a vote exits does not depend on how loaded the machine is.
    lockstep: bool = False
    probing: int = 0
    _ready: bool = False

    @property
    def ready(self) -> bool:
        return self._ready and not self.dead and not self.crashed

    async def start(self, model_path: str | None = None) -> ModelInfo:
        self.starts += 1
        await asyncio.sleep(self.start_delay)
        if self.fail_start:
            raise RuntimeError("scripted start failure")
        self._ready = True
        self.dead = self.crashed = False
        return ModelInfo(name=self.name, path="scripted", max_model_len=self.max_model_len)

    def shown(self, request: GenerationRequest) -> Shown:
        text = self.tokenizer.decode(list(request.prompt_token_ids), skip_special_tokens=False)
        m = _SHOWN_RE.search(text)
        assert m is not None, text
        return Shown(m["q"], m["a1"], m["a2"], request)

    async def generate(self, request: GenerationRequest) -> Generation:
        if self.dead or self.crashed:
            raise EngineUnavailable("scripted engine is dead")
        if request.logprobs is None:
            self.calls.append(request)  # judgments; verdict probes are recorded in ``probes``
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        probe = request.logprobs is not None
        self.probing += probe
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            # Yield once so concurrently submitted calls overlap even without a delay.
            await asyncio.sleep(0)
            if self.dead or self.crashed:
                raise EngineUnavailable("scripted engine died")
            if request.logprobs is not None:
                return self._probe(request)
            out = self.script(self.shown(request))
        except asyncio.CancelledError:
            self.cancelled.append(request.request_id)
            raise
        finally:
            self.in_flight -= 1
            self.probing -= probe
        text, finish = out if isinstance(out, tuple) else (out, "stop")
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return Generation(text=text, finish_reason=finish, prompt_tokens=len(request.prompt_token_ids),
                          generated_tokens=len(ids), cached_prompt_tokens=0, token_ids=ids)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self.token_delay is None:
            async for chunk in super().stream(request):
                yield chunk
            return
        if self.dead or self.crashed:
            raise EngineUnavailable("scripted engine is dead")
        self.calls.append(request)
        out = self.script(self.shown(request))
        text, finish = out if isinstance(out, tuple) else (out, "stop")
        ids = self.tokenizer.encode(text, add_special_tokens=False)[: request.max_tokens]
        if len(ids) == request.max_tokens:
            finish = "length"
        self.streamed[request.request_id] = 0
        self.in_flight += 1
        try:
            if not ids:
                yield GenerationChunk([], finish, len(request.prompt_token_ids))
            for i, t in enumerate(ids):
                await asyncio.sleep(self.token_delay)
                if self.lockstep:
                    await asyncio.sleep(0)  # a probe scheduled on the last token has started
                    while self.probing:
                        await asyncio.sleep(0.001)
                self.streamed[request.request_id] = i + 1
                last = i == len(ids) - 1
                yield GenerationChunk([t], finish if last else None, len(request.prompt_token_ids) if i == 0 else 0)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append(request.request_id)
            raise
        finally:
            self.in_flight -= 1

    def _probe(self, request: GenerationRequest) -> Generation:
        import math

        from rrm_server.prompt.verdict import VerdictTokens

        self.probes.append(request)
        logprobs: list[dict[int, float]] | None = None
        if self.probability is not None:
            if not hasattr(self, "_slots"):
                self._slots = VerdictTokens.from_tokenizer(self.tokenizer).slot_ids  # type: ignore[union-attr]
            one, two = self._slots
            p = min(max(self.probability(self.shown(request)), 1e-9), 1 - 1e-9)
            logprobs = [{one: math.log(p), two: math.log(1 - p)}]
        return Generation(text="", finish_reason="length", prompt_tokens=len(request.prompt_token_ids),
                          generated_tokens=1, token_ids=[0], logprobs=logprobs)

    def stats(self) -> dict[str, int]:
        return {"unfinished_requests": self.in_flight}

    async def abort(self, request_ids: Sequence[str]) -> None:
        self.cancelled.extend(request_ids)

    async def check_health(self) -> None:
        if not self.ready:
            raise EngineUnavailable("scripted engine not ready")

    async def shutdown(self) -> None:
        self._ready = False


def failing(message: str = "boom") -> Script:
    def script(s: Shown) -> str:
        raise EngineError(message)

    return script
