"""What the judge reads of a response: its answer, not its reasoning trace. Pure logic, no I/O.

Policies trained to reason (R1-style) write ``<think>...</think>`` before their answer; the judge
should compare answers, as the RRM authors' own RL arena does (microsoft/LMOps,
``oel/verl/verl/utils/reward_score/rrm/arena.py``: the text after the last ``</think>``,
``[NO ANSWER]`` when there is none, the last tokens of a long response). A response with nothing
left to judge is *degenerate*: it never reaches the engine and never beats a real answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

StripMode = Literal["auto", "on", "off"]

DEFAULT_TAGS = ("<think>", "</think>")


class AnswerStatus(str, Enum):
    ok = "ok"
    empty = "empty"  # nothing but whitespace (after chat tokens and reasoning are removed)
    unclosed_reasoning = "unclosed_reasoning"  # a reasoning block that never closes: no answer yet


@dataclass(frozen=True)
class AnswerPolicy:
    """How responses are reduced to what the judge reads.

    ``strip_reasoning``: ``auto`` removes a reasoning block when the response has one (a closing
    tag, or an opening tag that never closes); ``on`` treats every response as a reasoning
    policy's, whose prompt opened the block (R1 templates end with ``<think>``), so a response
    without the closing tag has no answer; ``off`` judges the text as it is.
    ``max_response_tokens``: keep only a response's last N tokens of the judge's tokenizer (the
    answer sits at the end; the judge's context is finite).
    """

    strip_reasoning: StripMode = "auto"
    open_tag: str = DEFAULT_TAGS[0]
    close_tag: str = DEFAULT_TAGS[1]
    max_response_tokens: int | None = None


@dataclass(frozen=True)
class PreparedAnswer:
    text: str  # what the judge is shown ("" when degenerate)
    status: AnswerStatus
    reasoning_stripped: bool = False  # a reasoning block was removed
    dropped_tokens: int = 0  # leading tokens cut by max_response_tokens

    @property
    def degenerate(self) -> bool:
        return self.status is not AnswerStatus.ok


def strip_reasoning(text: str, policy: AnswerPolicy) -> tuple[str | None, bool]:
    """(the answer, whether a reasoning block was removed); the answer is None when the block
    never closes. The answer is what follows the LAST closing tag, as in the RRM arena."""
    if policy.strip_reasoning == "off":
        return text, False
    close = policy.close_tag
    if close and close in text:
        return text[text.rfind(close) + len(close):], True
    if policy.strip_reasoning == "on" or (policy.open_tag and policy.open_tag in text):
        return None, True
    return text, False


# Start offset (in characters) of each token of a text, in the judge's tokenizer.
TokenStarts = Callable[[str], Sequence[int]]


def keep_last_tokens(text: str, n: int, token_starts: TokenStarts) -> tuple[str, int]:
    """The suffix of ``text`` holding its last ``n`` tokens, and how many tokens were cut.

    Cut at a token's character offset rather than by decoding a slice of ids: the kept text is
    exactly the original's suffix (no replacement characters from a split multi-byte token)."""
    starts = token_starts(text)
    if len(starts) <= n:
        return text, 0
    cut = len(starts) - n
    while True:
        # Byte-level tokenizers split some characters over several tokens that all start where the
        # character does: cut after the whole character (keeping fewer tokens), never inside it.
        while cut < len(starts) and starts[cut] == starts[cut - 1]:
            cut += 1
        if cut == len(starts):  # the last character alone is more than n tokens: keep it whole
            cut = starts.index(starts[-1])
            break
        # A suffix can tokenize differently on its own (a merge across the cut): check, move on.
        if len(token_starts(text[starts[cut]:])) <= n:
            break
        cut += 1
    return text[starts[cut]:], cut


def prepare_answer(text: str, policy: AnswerPolicy, token_starts: TokenStarts | None = None) -> PreparedAnswer:
    """Reduce one response to what the judge reads, or mark it degenerate."""
    answer, stripped = strip_reasoning(text, policy)
    if answer is None:
        return PreparedAnswer("", AnswerStatus.unclosed_reasoning, reasoning_stripped=True)
    answer = answer.strip() if stripped else answer
    if not answer.strip():
        return PreparedAnswer("", AnswerStatus.empty, reasoning_stripped=stripped)
    dropped = 0
    if policy.max_response_tokens is not None:
        if token_starts is None:
            raise ValueError("max_response_tokens needs the judge's tokenizer (token_starts)")
        answer, dropped = keep_last_tokens(answer, policy.max_response_tokens, token_starts)
        if not answer.strip():  # the last N tokens are whitespace: nothing to judge
            return PreparedAnswer("", AnswerStatus.empty, stripped, dropped)
    return PreparedAnswer(answer, AnswerStatus.ok, stripped, dropped)

