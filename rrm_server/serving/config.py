"""What the serving layer needs from the settings, as explicit, frozen values (no ``Settings``
below this line: the runtime builds these once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rrm_server.prompt.verdict import VerdictParser
from rrm_server.settings import Settings


@dataclass(frozen=True)
class JudgeConfig:
    # request limits
    max_responses: int = 64
    max_votes: int = 32
    max_text_chars: int = 200_000
    max_tokens_limit: int | None = None
    # decoding defaults
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 8192
    # what the judge reads
    strip_reasoning: Literal["auto", "on", "off"] = "auto"
    reasoning_tags: tuple[str, str] = ("<think>", "</think>")
    max_response_tokens: int | None = None
    verdict_parser: VerdictParser = "lenient"
    max_thinking_tokens: int | None = None  # a request's thinking budget when it gives none
    rescue_invalid: bool = False
    # comparison cache
    cache_enabled: bool = True
    cache_ttl: float = 7 * 86400
    cache_invalid_ttl: float = 60
    cache_store_reasoning: bool = True
    # compute inside a judgment
    early_exit: bool = False
    exit_confidence: float = 0.9
    probe_every: int = 256
    transition_words: tuple[str, ...] = ()
    max_deadline: float = 3600.0
    deadline_margin: float = 1.0
    request_timeout: float | None = None  # the server's own deadline for every request

    @classmethod
    def from_settings(cls, s: Settings) -> JudgeConfig:
        return cls(
            max_responses=s.max_responses, max_votes=s.max_votes, max_text_chars=s.max_text_chars,
            max_tokens_limit=s.max_tokens_limit, temperature=s.default_temperature, top_p=s.default_top_p,
            max_tokens=s.effective_max_tokens, strip_reasoning=s.strip_reasoning, reasoning_tags=s.reasoning_tags,
            max_response_tokens=s.max_response_tokens, verdict_parser=s.verdict_parser,
            max_thinking_tokens=s.effective_max_thinking_tokens, rescue_invalid=s.effective_rescue_invalid,
            cache_enabled=s.cache_enabled, cache_ttl=s.cache_ttl, cache_invalid_ttl=s.cache_invalid_ttl,
            cache_store_reasoning=s.cache_store_reasoning, early_exit=s.early_exit,
            exit_confidence=s.exit_confidence, probe_every=s.effective_probe_every,
            transition_words=s.transition_words, max_deadline=s.max_deadline, deadline_margin=s.deadline_margin,
            request_timeout=s.request_timeout,
        )


@dataclass(frozen=True)
class RewardConfig:
    mode: Literal["reference", "group"] = "reference"
    method: Literal["elo", "knockout"] = "elo"
    votes: int = 2
    score: Literal["votes", "probability"] = "votes"
    opponents: int | None = None
    empty_response_reward: float = -1.0
    template: Literal["auto", "chatml", "llama3", "none"] = "auto"
    group_size: int = 8
    group_wait: float = 10.0
    group_deadline: float = 150.0
    deadline: float | None = 170.0  # reference mode, per /get_reward request
    max_groups: int = 64

    @classmethod
    def from_settings(cls, s: Settings) -> RewardConfig:
        return cls(
            mode=s.reward_mode, method=s.reward_method, votes=s.reward_votes, score=s.reward_score,
            opponents=s.reward_opponents, empty_response_reward=s.empty_response_reward,
            template=s.reward_template, group_size=s.reward_group_size, group_wait=s.reward_group_wait,
            group_deadline=s.reward_group_deadline, deadline=s.reward_deadline, max_groups=s.max_reward_groups,
        )
