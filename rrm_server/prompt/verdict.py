"""Verdict parsing: two parsers, ``lenient`` (the default) and ``official``.

Both read only the model's own output and turn anything that is not a verdict into an invalid
judgment with a reason, never a guess.

``official`` reproduces the official RRM evaluation (microsoft/LMOps RRM-evaluation,
``scripts/run_generative.py`` ``process_judgement``/``extract_answer``, ``rewardbench/generative.py``)
exactly: the output must contain ``</think>``; only the text between the FIRST ``</think>`` and the
next one counts (``answer.split("</think>")[1]``); the box is the last ``\\boxed`` of any spelling
(``rfind("\\boxed")``), brace-matched from there, and must start with ``\\boxed{``; its content must
equal ``Assistant 1`` or ``Assistant 2`` exactly, without surrounding whitespace.

``lenient`` differs on purpose: with a think-style tokenizer the reasoning ends at the judge's own
``</think>`` TOKEN (the same characters copied from a response, as plain tokens, do not end it),
and the answer is everything after the LAST one; without a think block in the template the whole
output is the answer; the box is the last ``\\boxed{``; ASCII whitespace around and inside
``Assistant 1`` is tolerated. See docs/design.md ("Verdict parsers") for why it is the default.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

VerdictParser = Literal["lenient", "official"]


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


OFFICIAL_CLOSE = "</think>"


def official_last_boxed(text: str) -> str | None:
    """``last_boxed_only_string`` of the official code: from the last ``\\boxed`` (any spelling,
    e.g. ``\\boxed Assistant``) to the brace that closes the first ``{`` after it, or None."""
    idx = text.rfind("\\boxed")
    if idx < 0:  # the official falls back to \fbox here, but its caller only gets here with "\boxed"
        idx = text.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[idx : i + 1]
    return None


def parse_verdict_official(output: str, finish_reason: str | None) -> ParsedVerdict:
    """The official RRM evaluation's verdict, with our reasons for what it calls "error"."""
    cut = finish_reason == "length"
    # The official prepends "<think>" (its template opened the block) and needs both tags.
    if OFFICIAL_CLOSE not in output:
        return ParsedVerdict(None, InvalidReason.truncated if cut else InvalidReason.no_verdict)
    solution = ("<think>" + output).split(OFFICIAL_CLOSE)[1]
    if "\\boxed" not in solution:
        return ParsedVerdict(None, InvalidReason.truncated if cut else InvalidReason.no_verdict)
    boxed = official_last_boxed(solution)
    if boxed is None:
        return ParsedVerdict(None, InvalidReason.truncated if cut else InvalidReason.malformed)
    if not boxed.startswith(BOXED):  # remove_boxed's assertion
        return ParsedVerdict(None, InvalidReason.malformed)
    content = boxed[len(BOXED) : -1]
    if content == "Assistant 1":
        return ParsedVerdict(1)
    if content == "Assistant 2":
        return ParsedVerdict(2)
    return ParsedVerdict(None, InvalidReason.malformed)


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
