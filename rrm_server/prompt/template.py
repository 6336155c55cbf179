"""The RRM judging prompt, rendered through the judge's own chat template, as token ids.

Token-level safety: caller text (query, responses) is tokenized on its own and can never produce
one of the tokenizer's added/special tokens (``<|im_end|>``, ``<|im_start|>``, ``<think>`` ...),
even when it contains their exact spelling. The chat template is rendered once with sentinels in
place of the three fields; its trusted pieces are tokenized once (special tokens recognised) and
the untrusted fields are spliced in as ids. vLLM receives these ids, never a string to re-tokenize.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any, Protocol

from rrm_server.prompt.verdict import VerdictTokens

FIELDS = ("question", "answer1", "answer2")
# Tokenizing more caller text than this (characters) goes to a worker thread: the tokenizer releases
# the GIL, so one request with long texts does not stall the event loop for everyone else.
TOKENIZE_INLINE_CHARS = 20_000


@dataclass(frozen=True)
class PromptSpec:
    """The exact strings of the official RRM prompt (``rrm_prompt.json``)."""

    system: str
    user: str
    user_suffix: str

    @property
    def version(self) -> str:
        """Short content hash; part of cache keys so a prompt change never reuses old verdicts."""
        blob = json.dumps([self.system, self.user, self.user_suffix]).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def user_message(self, question: str, answer1: str, answer2: str) -> str:
        # Substitute on the template's own placeholders, never inside the values: fields may hold
        # braces (LaTeX, code, \boxed{...}) or even the literal text "{answer2}".
        values = {"{question}": question, "{answer1}": answer1, "{answer2}": answer2}
        parts = _PLACEHOLDER_RE.split(self.user)
        return "".join(values.get(part, part) for part in parts) + self.user_suffix


_PLACEHOLDER_RE = re.compile(r"(\{question\}|\{answer1\}|\{answer2\})")


@lru_cache(maxsize=1)
def rrm_prompt() -> PromptSpec:
    raw = json.loads(resources.files("rrm_server.prompt").joinpath("rrm_prompt.json").read_text())
    return PromptSpec(system=raw["system"], user=raw["user"], user_suffix=raw["user_suffix"])


class Tokenizer(Protocol):
    """The slice of a Hugging Face tokenizer the builder uses.

    Every call tokenizes with ``split_special_tokens=True``: a fast tokenizer keeps that flag as
    state shared by all threads, so a call with the other value, racing a worker thread's call,
    would make it recognise special tokens in caller text.
    """

    def __call__(self, text: Any, **kwargs: Any) -> Any: ...
    def encode(self, text: str, add_special_tokens: bool = ..., **kwargs: Any) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...
    def get_added_vocab(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    token_ids: list[int]


class PromptTemplateError(RuntimeError):
    """The model's chat template cannot carry the RRM prompt verbatim."""


@dataclass(frozen=True)
class _Control:
    """One of the template's own control tokens."""

    id: int
    text: str


@dataclass(frozen=True)
class _Slot:
    """Where a caller field goes."""

    name: str


# The text between two of the template's control tokens: literal strings and field slots.
_Segment = tuple["str | _Slot", ...]


class PromptBuilder:
    """Builds RRM judging prompts for one tokenizer. Cheap per comparison; safe to share."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        spec: PromptSpec | None = None,
        reasoning_open_tag: str = "<think>",
        reasoning_close_tag: str = "</think>",
    ) -> None:
        self.tokenizer = tokenizer
        self.spec = spec or rrm_prompt()
        self.reasoning_close_tag = reasoning_close_tag
        # Every added token (special or not, e.g. a Qwen/DeepSeek <think>) is a control string that
        # caller text must not be able to produce. Longest first so the regex prefers full matches.
        added = tokenizer.get_added_vocab()
        self._control_ids = frozenset(added.values())
        self._control_id_of = dict(added)
        controls = sorted((s for s in added if s), key=len, reverse=True)
        self._control_re = re.compile("|".join(map(re.escape, controls))) if controls else None
        self._parts = self._skeleton()
        # Segments without a caller field (the system prompt: ~330 tokens of RRM's) never change:
        # tokenize them once. Each is still a whole segment, so the ids are the same as before.
        self._const_ids: dict[int, list[int]] = {
            i: self._encode_plain("".join(p))  # type: ignore[arg-type]
            for i, p in enumerate(self._parts)
            if not isinstance(p, _Control) and not any(isinstance(x, _Slot) for x in p)
        }
        empty = self.render("", "", "")
        # A template whose generation prompt opens a reasoning block (DeepSeek-R1-Distill, RRM:
        # ends with "<think>\n") makes the model's output start inside its reasoning.
        self.opens_reasoning = empty.text.rstrip().endswith(reasoning_open_tag)
        self.template_tokens = len(empty.token_ids)
        self.skeleton_control_tokens = self.count_control_tokens(empty.token_ids)

    # -- construction --------------------------------------------------------------------------
    def _skeleton(self) -> list[_Control | _Segment]:
        """The rendered template as control tokens and segments.

        The tokenizer sees each segment whole, as it would inside the fully rendered string
        (tokenizers split on added tokens first), so a benign prompt gets exactly the ids the
        tokenizer would give the whole string.
        """
        sentinels = {f"\x1eRRM_FIELD_{name}\x1f": _Slot(name) for name in FIELDS}
        messages = [
            {"role": "system", "content": self.spec.system},
            {"role": "user", "content": self.spec.user_message(*sentinels)},
        ]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for sentinel in sentinels:
            if rendered.count(sentinel) != 1:
                raise PromptTemplateError(
                    "the chat template does not pass the user message through verbatim "
                    f"(field marker {sentinel!r} found {rendered.count(sentinel)} times)"
                )
        sentinel_re = re.compile("(" + "|".join(map(re.escape, sentinels)) + ")")
        parts: list[_Control | _Segment] = []
        pos = 0
        for m in [*(self._control_re.finditer(rendered) if self._control_re else ()), None]:
            end = m.start() if m else len(rendered)
            if end > pos:
                pieces = sentinel_re.split(rendered[pos:end])
                parts.append(tuple(sentinels.get(p, p) for p in pieces if p))
            if m:
                parts.append(_Control(self._control_id_of[m.group()], m.group()))
                pos = m.end()
        slots = [x.name for p in parts if isinstance(p, tuple) for x in p if isinstance(x, _Slot)]
        if slots != list(FIELDS):
            raise PromptTemplateError(f"template fields came out as {slots}, expected {list(FIELDS)}")
        return parts

    def _segments(self, question: str, first: str, second: str) -> list[_Control | str]:
        values = {"question": question, "answer1": first, "answer2": second}
        return [
            p if isinstance(p, _Control) else "".join(values[x.name] if isinstance(x, _Slot) else x for x in p)
            for p in self._parts
        ]

    # -- caller text ---------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def _encode_plain(self, text: str) -> list[int]:
        """Ids for text in which control-token spellings stay plain text."""
        if not text:
            return []
        ids = self._encode(text)
        if self._control_re is None or not self._control_ids.intersection(ids):
            return ids
        # Non-special added tokens (e.g. <think>) are matched even with split_special_tokens: break
        # each spelling after its first character, every piece tokenized on its own. One regex pass
        # and one tokenizer call for the distinct pieces: 25,000 "</think>" cost what plain text does
        # (one call per match took seconds).
        pieces: list[str] = []
        pos = 0
        for m in self._control_re.finditer(text):
            control = m.group()
            pieces += (text[pos : m.start()], control[0], control[1:])
            pos = m.end()
        pieces.append(text[pos:])
        distinct = list(dict.fromkeys(p for p in pieces if p))
        encoded = dict(zip(distinct, self._encode_pieces(distinct)))
        for piece in distinct:
            if len(piece) > 1 and self._control_ids.intersection(encoded[piece]):
                # A spelling's tail that spells another control token: break that too. No spelling
                # at all: the tokenizer matched something the regex cannot see (through a
                # normalizer); single characters form none (build_ids still checks).
                encoded[piece] = (
                    self._encode_plain(piece)
                    if self._control_re.search(piece)
                    else [i for c in piece for i in self._encode(c)]
                )
        return [i for p in pieces if p for i in encoded[p]]

    def _encode_pieces(self, pieces: list[str]) -> list[list[int]]:
        """``_encode`` of each piece, in one call where the tokenizer allows."""
        if len(pieces) > 1 and self._batch_pieces_ok:
            return self._encode_batch(pieces)
        return [self._encode(p) for p in pieces]

    def _encode_batch(self, pieces: list[str]) -> list[list[int]]:
        # A pre-tokenized input: each word is normalized, split and tokenized on its own, as one
        # text per call would be, in one call and one encoding (a batch converts one per text).
        enc = self.tokenizer(pieces, is_split_into_words=True, add_special_tokens=False,
                             split_special_tokens=True)
        out: list[list[int]] = [[] for _ in pieces]
        for i, w in zip(enc["input_ids"], enc.word_ids(), strict=True):
            out[w].append(i)
        return out

    @cached_property
    def _batch_pieces_ok(self) -> bool:
        """Whether ``_encode_batch`` gives exactly the ids of one call per piece with this tokenizer
        (checked once: not every tokenizer class takes pre-tokenized input the same way)."""
        probe = ["<", "think>", " a", "b  ", "\n\n", "x.y", "}}", "\u00e9\u6f22", "1", " <|"]
        try:
            return self._encode_batch(probe) == [self._encode(p) for p in probe]
        except Exception:  # slow or unusual tokenizers (no word ids, None among them): one call each
            return False

    def spells_control_token(self, *texts: str) -> bool:
        """Whether any text contains the spelling of a control token (kept as plain text, piecewise)."""
        return self._control_re is not None and any(self._control_re.search(t) for t in texts)

    def token_starts(self, text: str) -> list[int]:
        """Character offset where each token of ``text`` starts, for keeping a response's last tokens."""
        try:
            enc = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True,
                                 return_offsets_mapping=True)
            return [start for start, _ in enc["offset_mapping"]]
        except (NotImplementedError, TypeError, ValueError, KeyError):
            # Tokenizers without offsets: each token's decoded length, from the start.
            starts, pos = [], 0
            for i in self._encode(text):
                starts.append(min(pos, len(text)))
                pos += len(self.tokenizer.decode([i]))
            return starts

    def encode_untrusted(self, text: str) -> list[int]:
        """Ids of one caller text on its own (for length checks); never a control token."""
        return self._encode_plain(text)

    # -- public API ------------------------------------------------------------------------------
    def build_ids(self, question: str, first: str, second: str) -> list[int]:
        """Token ids of the prompt judging ``first`` (shown as Assistant 1) against ``second``."""
        ids: list[int] = []
        for i, p in enumerate(self._segments(question, first, second)):
            if isinstance(p, _Control):
                ids.append(p.id)
            else:
                seg = self._const_ids[i] if i in self._const_ids else self._encode_plain(p)
                if self._control_ids.intersection(seg):  # defence in depth: must be impossible
                    raise PromptTemplateError("caller text produced a control token")
                ids += seg
        return ids

    def render(self, question: str, first: str, second: str) -> RenderedPrompt:
        segments = self._segments(question, first, second)
        text = "".join(p.text if isinstance(p, _Control) else p for p in segments)
        return RenderedPrompt(text=text, token_ids=self.build_ids(question, first, second))

    @cached_property
    def verdict_tokens(self) -> VerdictTokens | None:
        """How this tokenizer writes a verdict (built on first use: it scans the vocabulary)."""
        return VerdictTokens.from_tokenizer(self.tokenizer)

    def verdict_cue_ids(self, reasoning_closed: bool) -> list[int] | None:
        """Tokens that end a judge's output and start its verdict, for a forced verdict: the model's
        own end-of-thinking marker when its reasoning is still open, then ``\\boxed{Assistant ``."""
        vt = self.verdict_tokens
        if vt is None:
            return None
        tag = self.reasoning_close_tag
        if reasoning_closed or not self.opens_reasoning:
            close = self._encode("\n\n")
        elif tag in self._control_id_of:  # the marker as the model's own token, not as text
            close = self._encode("\n") + [self._control_id_of[tag]] + self._encode("\n\n")
        else:
            close = self._encode(f"\n{tag}\n\n")
        return close + list(vt.prefix_ids)

    @property
    def reasoning_close_id(self) -> int | None:
        """The end-of-reasoning marker's own token id, when the tokenizer has one (think-style judges)."""
        return self._control_id_of.get(self.reasoning_close_tag)

    def is_control(self, token_id: int) -> bool:
        return token_id in self._control_ids

    def count_control_tokens(self, ids: Sequence[int]) -> int:
        return sum(1 for i in ids if i in self._control_ids)
