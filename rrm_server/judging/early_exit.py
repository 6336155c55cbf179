"""Compute inside one vote: when to probe a thinking judge's verdict, when the answer is settled,
and how a vote ended. After DEER (arXiv 2504.15895: a trial answer at reasoning transitions, exit
once confident) and Dynasor-CoT (arXiv 2412.20993: probes every N tokens). Pure logic: the serving
layer streams a vote's generation, feeds each chunk to a ``ProbeSchedule``, runs a due probe through
the forced-verdict path (reasoning closed, ``\\boxed{Assistant `` appended, one token with its
log-probabilities) and asks ``EarlyExit.settled`` of its p(first)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum


class VoteExit(str, Enum):
    """How a vote's thinking ended."""

    natural = "natural"  # the judge wrote its verdict (or stopped without one)
    early = "early"  # a probe's verdict reached exit_confidence: the generation was aborted
    budget = "budget"  # the thinking budget ran out: a forced verdict
    deadline = "deadline"  # the request's deadline neared: a forced verdict


# Words where a reasoning model turns: the points DEER probes (its "Wait" plus common variants).
TRANSITION_WORDS = ("Wait", "Alternatively", "Hmm", "However")


@dataclass(frozen=True)
class EarlyExit:
    exit_confidence: float  # p of the leading verdict at which a vote stops thinking
    probe_every: int | None = 256  # generated tokens between probes (None: transition words only)
    transition_words: tuple[str, ...] = TRANSITION_WORDS
    min_tokens: int = 0  # no probe before the judge has thought this much

    def __post_init__(self) -> None:
        # ValueError names the request field, so the HTTP layer can answer 400 with it.
        if not 0.5 < self.exit_confidence <= 1:
            raise ValueError(f"exit_confidence must be in (0.5, 1], got {self.exit_confidence}")
        if self.probe_every is not None and self.probe_every < 1:
            raise ValueError(f"probe_every must be >= 1, got {self.probe_every}")
        if self.probe_every is None and not self.transition_words:
            raise ValueError("probe_every: set it, or give transition words to probe at")
        if any(not w or not w.strip() for w in self.transition_words):
            raise ValueError("transition_words: empty word")

    def settled(self, p_first: float) -> int | None:
        """The verdict slot a probe settles on (0: Assistant 1, 1: Assistant 2), or None: think on."""
        if p_first >= self.exit_confidence:
            return 0
        if 1 - p_first >= self.exit_confidence:
            return 1
        return None


class ProbeSchedule:
    """The points of one streamed generation that get a probe: each time the generated tokens pass
    a multiple of ``probe_every``, and each transition word the judge starts (counted once, whatever
    the chunking: a word is seen when the character after it arrives, so "Wait" is not "Waiting").
    Feeding returns at most one probe per chunk: a probe reads the state after the whole chunk."""

    def __init__(self, policy: EarlyExit) -> None:
        self.policy = policy
        self.next_at = policy.probe_every or math.inf
        words = sorted(policy.transition_words, key=len, reverse=True)
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?=\W)") if words else None
        self._keep = 1 + max(map(len, words), default=0)  # a word and the character before it
        self._tail = ""

    def feed(self, tokens: int, text: str) -> bool:
        """``tokens``: generated so far, this chunk included; ``text``: the chunk. True: probe now."""
        due = False
        if tokens >= self.next_at:
            step = self.policy.probe_every or 1
            self.next_at, due = (tokens // step + 1) * step, True
        if self._pattern is not None and text:
            window = self._tail + text
            # New: the character right after the word is in this chunk (seen for the first time).
            due |= any(m.end() >= len(self._tail) for m in self._pattern.finditer(window))
            self._tail = window[-self._keep:]
        return due and tokens >= self.policy.min_tokens
