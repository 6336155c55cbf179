"""Verdict parsing with the official RRM semantics.

Only the model's own output is parsed. When the model reasons in a think block, only the text after
its last closing tag counts; the verdict is the LAST ``\\boxed{...}`` (brace-matched) and must read
"Assistant 1" or "Assistant 2". Anything else is an invalid judgment with a reason, never a guess.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum


class InvalidReason(str, Enum):
    truncated = "truncated"  # stopped by the token limit before a verdict
    no_verdict = "no_verdict"  # finished without a \boxed{...}
    malformed = "malformed"  # a \boxed{...} that is not "Assistant 1/2", or never closed
    engine_error = "engine_error"  # the engine failed this generation


@dataclass(frozen=True)
class ParsedVerdict:
    slot: int | None  # 1 = "Assistant 1" (shown first) is better, 2 = shown second
    reason: InvalidReason | None = None

    @property
    def valid(self) -> bool:
        return self.slot is not None


BOXED = "\\boxed{"
# ASCII whitespace only: Python's \s also matches NBSP, ideographic spaces and \x1c-\x1f, which only
# look like "Assistant 1" (other spellings are malformed, never a slot).
_ANSWER_RE = re.compile(r"\s*Assistant\s+([12])\s*", re.ASCII)


def last_boxed_content(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, brace-matched; None if absent or never closed."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth = 1
    i = start + len(BOXED)
    begin = i
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
        i += 1
    return None


def parse_verdict(
    output: str,
    finish_reason: str | None,
    reasoning_opened: bool = False,
    close_tag: str = "</think>",
) -> ParsedVerdict:
    """Parse a judge's generated text.

    ``reasoning_opened``: the prompt ended inside a think block (the RRM/DeepSeek-R1 template), so
    an output that never closes it has not reached its answer. ``finish_reason`` distinguishes a
    judgment cut by the token limit (``"length"``) from one that ended without a verdict.
    """
    cut = finish_reason == "length"
    if close_tag and close_tag in output:
        answer = output[output.rfind(close_tag) + len(close_tag) :]
    elif reasoning_opened:
        return ParsedVerdict(None, InvalidReason.truncated if cut else InvalidReason.no_verdict)
    else:
        answer = output
    if BOXED not in answer:
        return ParsedVerdict(None, InvalidReason.truncated if cut else InvalidReason.no_verdict)
    content = last_boxed_content(answer)
    if content is None:  # the last box never closed
        return ParsedVerdict(None, InvalidReason.truncated if cut else InvalidReason.malformed)
    m = _ANSWER_RE.fullmatch(content)
    if m is None:
        return ParsedVerdict(None, InvalidReason.malformed)
    return ParsedVerdict(int(m.group(1)))


@dataclass(frozen=True)
class VerdictTokens:
    """How the judge's tokenizer writes a verdict, for reading its probability.

    ``prefix_ids`` spell ``\\boxed{Assistant `` up to the digit and ``slot_ids`` the digits that
    follow for 1 and 2; ``twins`` maps every token that spells "1" or "2" (with any surrounding
    whitespace) to the (one, two) pair of that spelling, so a verdict the model wrote with a
    different whitespace token is still found.
    """

    prefix_ids: tuple[int, ...]
    slot_ids: tuple[int, int]
    twins: dict[int, tuple[int, int]]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> VerdictTokens | None:  # type: ignore[no-untyped-def]
        # split_special_tokens as the prompt builder's calls (the flag is the tokenizer's shared state).
        one = tokenizer.encode("\\boxed{Assistant 1}", add_special_tokens=False, split_special_tokens=True)
        two = tokenizer.encode("\\boxed{Assistant 2}", add_special_tokens=False, split_special_tokens=True)
        k = next((i for i, (x, y) in enumerate(zip(one, two)) if x != y), None)
        if k is None or len(one) != len(two) or one[k + 1 :] != two[k + 1 :]:
            return None  # the digits do not sit in a token of their own: probabilities unavailable
        by_text: dict[str, int] = {}
        vocab_size = len(tokenizer)
        for i in range(vocab_size):
            text = tokenizer.decode([i])
            if text.strip() in ("1", "2"):
                by_text.setdefault(text, i)
        twins: dict[int, tuple[int, int]] = {}
        for text, i in by_text.items():
            other = by_text.get(text.replace("1", "2") if "1" in text else text.replace("2", "1"))
            if other is not None:
                pair = (i, other) if "1" in text else (other, i)
                twins[i] = pair
        twins[one[k]] = (one[k], two[k])
        twins[two[k]] = (one[k], two[k])
        return cls(prefix_ids=tuple(one[:k]), slot_ids=(one[k], two[k]), twins=twins)

    def find(self, token_ids: list[int], slot: int, decode) -> int | None:  # type: ignore[no-untyped-def]
        """Index of the generated token holding the verdict digit ``slot``: the last digit token of
        that value preceded by "Assistant"; None if the model spelled it some other way."""
        for i in range(len(token_ids) - 1, -1, -1):
            pair = self.twins.get(token_ids[i])
            if pair is None or pair[slot - 1] != token_ids[i]:
                continue
            if decode(token_ids[max(0, i - 6) : i]).rstrip().endswith("Assistant"):
                return i
        return None


def slot1_probability(top_logprobs: dict[int, float], pair: tuple[int, int]) -> float | None:
    """p("Assistant 1") among the two verdicts at one position; None unless both were returned."""
    lp1, lp2 = top_logprobs.get(pair[0]), top_logprobs.get(pair[1])
    if lp1 is None or lp2 is None:
        return None
    m = max(lp1, lp2)
    e1, e2 = math.exp(lp1 - m), math.exp(lp2 - m)
    return e1 / (e1 + e2)
