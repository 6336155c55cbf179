"""A simulated judge for scheduling studies: it knows which candidates are correct and votes for
the correct one with a set per-vote accuracy (50/50 when both or neither are). Benchmark-only: it
is not one of the shipped engines. Prompts are stubbed (no tokenization), so a study of tens of
thousands of votes runs in seconds through the real serving, strategy and voting code."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from rrm_server.cache.store import VoteCache
from rrm_server.engine.base import EngineClient, Generation, GenerationRequest, ModelInfo
from rrm_server.prompt.template import rrm_prompt
from rrm_server.serving.config import JudgeConfig
from rrm_server.serving.judge import JudgeServing


@dataclass
class StubBuilder:
    """Stands in for PromptBuilder: a prompt is the pair of response ids, nothing is tokenized."""

    ids: dict[str, int] = field(default_factory=dict)
    opens_reasoning: bool = False
    reasoning_close_tag: str = "</think>"
    verdict_tokens: None = None
    template_tokens: int = 400
    spec = rrm_prompt()

    def intern(self, text: str) -> int:
        return self.ids.setdefault(text, len(self.ids))

    reasoning_close_id: None = None

    def encode_untrusted(self, text: str) -> list[int]:
        return [0] * max(1, len(text) // 4)

    def token_starts(self, text: str) -> list[int]:
        return list(range(0, len(text), 4))

    def spells_control_token(self, *texts: str) -> bool:
        return False

    def build_ids(self, question: str, first: str, second: str) -> list[int]:
        return [self.intern(first), self.intern(second)]


class _InstantEngine(EngineClient):
    """Always ready; nothing to abort, check or shut down."""

    @property
    def ready(self) -> bool:
        return True

    async def start(self, model_path: str | None = None) -> ModelInfo:
        return ModelInfo(type(self).__name__, "simulated", 1 << 20)

    async def abort(self, request_ids: Sequence[str]) -> None:
        return None

    async def check_health(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


@dataclass
class SimulatedJudge(_InstantEngine):
    builder: StubBuilder
    correct: dict[str, bool]
    accuracy: float = 0.75
    generated_tokens: int = 1000  # what a real reasoning judgment would cost, for token budgets
    texts: dict[int, str] = field(default_factory=dict)

    async def generate(self, request: GenerationRequest) -> Generation:
        if not self.texts or len(self.texts) != len(self.builder.ids):
            self.texts = {i: t for t, i in self.builder.ids.items()}
        first, second = (self.texts[i] for i in request.prompt_token_ids)
        rnd = random.Random(request.seed)
        c1, c2 = self.correct[first], self.correct[second]
        if c1 != c2:
            right = 1 if c1 else 2
            slot = right if rnd.random() < self.accuracy else 3 - right
        else:
            slot = rnd.choice((1, 2))
        return Generation(text=f"\\boxed{{Assistant {slot}}}", finish_reason="stop",
                          prompt_tokens=len(request.prompt_token_ids), generated_tokens=self.generated_tokens)


def simulated_serving(correct: dict[str, bool], accuracy: float, max_votes: int = 64) -> JudgeServing:
    builder = StubBuilder()
    engine = SimulatedJudge(builder, correct, accuracy)
    config = JudgeConfig(max_votes=max_votes, max_responses=64, cache_enabled=False)
    return JudgeServing(config, engine, builder, ModelInfo("simulated-judge", "simulated", 1 << 20),  # type: ignore[arg-type]
                        VoteCache(backend=None), "simulated")


@dataclass
class LatencyJudge(_InstantEngine):
    """An engine that answers every judgment after ``latency`` seconds with a seeded coin: a
    stand-in for a batched GPU judge when measuring the gateway's scheduling (not its engine)."""

    latency: float = 0.3
    calls: int = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        import asyncio

        self.calls += 1
        await asyncio.sleep(self.latency)
        slot = random.Random(request.seed).choice((1, 2))
        return Generation(text=f"\\boxed{{Assistant {slot}}}", finish_reason="stop",
                          prompt_tokens=len(request.prompt_token_ids), generated_tokens=1000)
