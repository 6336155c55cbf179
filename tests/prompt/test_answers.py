"""What the judge reads of a response: reasoning stripped, empty answers caught, the tail kept."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.prompt.answers import (
    AnswerPolicy,
    AnswerStatus,
    keep_last_tokens,
    prepare_answer,
    strip_reasoning,
)

OK, EMPTY, UNCLOSED = AnswerStatus.ok, AnswerStatus.empty, AnswerStatus.unclosed_reasoning


def word_starts(text: str) -> list[int]:
    """A fake tokenizer: one token per whitespace-separated word."""
    return [m.start() for m in re.finditer(r"\S+", text)]


def char_starts(text: str) -> list[int]:
    """A fake tokenizer: one token per character."""
    return list(range(len(text)))


@pytest.mark.parametrize(
    ("text", "mode", "answer", "status", "stripped"),
    [
        ("<think>hmm</think>The answer is 4.", "auto", "The answer is 4.", OK, True),
        ("<think>a</think>x<think>b</think>\n final \n", "auto", "final", OK, True),  # after the LAST close
        ("reasoning opened by the prompt</think> 42", "auto", "42", OK, True),
        ("<think>never closed", "auto", "", UNCLOSED, True),
        ("plain answer", "auto", "plain answer", OK, False),
        ("  plain answer \n", "auto", "  plain answer \n", OK, False),  # nothing stripped: kept as is
        ("plain answer", "on", "", UNCLOSED, True),  # "on": the prompt opened the block
        ("<think>never closed", "on", "", UNCLOSED, True),
        ("<think>a</think> b", "on", "b", OK, True),
        ("<think>a</think> b", "off", "<think>a</think> b", OK, False),
        ("<think>never closed", "off", "<think>never closed", OK, False),
        ("", "auto", "", EMPTY, False),
        (" \n\t ", "off", "", EMPTY, False),
        ("<think>x</think>   ", "auto", "", EMPTY, True),
        ("<think>x</think>   ", "on", "", EMPTY, True),
        ("</think>", "auto", "", EMPTY, True),
    ],
)
def test_prepare_answer(text, mode, answer, status, stripped):
    a = prepare_answer(text, AnswerPolicy(strip_reasoning=mode))
    assert (a.text, a.status, a.reasoning_stripped, a.dropped_tokens) == (answer, status, stripped, 0)
    assert a.degenerate == (status is not OK)


def test_custom_tags():
    policy = AnswerPolicy(open_tag="<reasoning>", close_tag="</reasoning>")
    assert prepare_answer("<reasoning>r</reasoning> ans", policy).text == "ans"
    assert prepare_answer("<reasoning>r", policy).status is UNCLOSED
    # The default tags are plain text under other tags.
    assert prepare_answer("<think>r</think> ans", policy).text == "<think>r</think> ans"
    assert strip_reasoning("<think>r", policy) == ("<think>r", False)


def test_strip_reasoning():
    auto = AnswerPolicy()
    assert strip_reasoning("<think>a</think> b", auto) == (" b", True)  # unstripped: prepare_answer strips
    assert strip_reasoning("<think>a", auto) == (None, True)
    assert strip_reasoning("b", auto) == ("b", False)
    assert strip_reasoning("b", AnswerPolicy(strip_reasoning="on")) == (None, True)
    assert strip_reasoning("<think>a", AnswerPolicy(strip_reasoning="off")) == ("<think>a", False)


def test_keep_last_tokens():
    assert keep_last_tokens("one two three four", 2, word_starts) == ("three four", 2)
    assert keep_last_tokens("one two", 2, word_starts) == ("one two", 0)
    assert keep_last_tokens("one two", 5, word_starts) == ("one two", 0)
    assert keep_last_tokens("one  two\nthree ", 1, word_starts) == ("three ", 2)


def test_max_response_tokens():
    policy = AnswerPolicy(max_response_tokens=2)
    a = prepare_answer("<think>long reasoning</think> a b c d", policy, word_starts)
    assert (a.text, a.status, a.reasoning_stripped, a.dropped_tokens) == ("c d", OK, True, 2)
    # Cut after stripping: the reasoning's tokens are never counted.
    assert prepare_answer("<think>" + "r " * 100 + "</think> a b", policy, word_starts).dropped_tokens == 0
    # The last tokens are whitespace: nothing left to judge.
    e = prepare_answer("hello     ", AnswerPolicy(strip_reasoning="off", max_response_tokens=3), char_starts)
    assert (e.text, e.status, e.dropped_tokens) == ("", EMPTY, 7)
    # Degenerate answers are never tokenized.
    assert prepare_answer("<think>x", policy).status is UNCLOSED
    with pytest.raises(ValueError):
        prepare_answer("a b c", policy)  # a token limit needs the judge's tokenizer


_words = st.lists(st.sampled_from(["a", "bb", "<think>", "</think>", " ", "  ", "\n", "word", "é", "日本"]),
                  max_size=40).map("".join)


@given(text=_words, n=st.integers(1, 30), mode=st.sampled_from(["auto", "on", "off"]),
       tokens=st.sampled_from([word_starts, char_starts]))
def test_kept_text_is_a_suffix_of_at_most_n_tokens(text, n, mode, tokens):
    policy = AnswerPolicy(strip_reasoning=mode, max_response_tokens=n)
    a = prepare_answer(text, policy, tokens)
    base, stripped = strip_reasoning(text, policy)
    if a.status is UNCLOSED:
        assert base is None
        return
    base = base.strip() if stripped else base
    assert a.reasoning_stripped == stripped
    if a.status is OK:
        assert base.endswith(a.text) and a.text.strip()
        assert len(tokens(a.text)) <= n
        assert len(tokens(a.text)) + a.dropped_tokens == len(tokens(base))
    else:
        assert a.text == ""
    if a.dropped_tokens == 0:
        assert a.text == (base if base.strip() else "")


# Re-tokenizing the kept suffix on its own may take one token more than it held in context: the
# tokenizer's pre-tokenizer and merges see a different first character (no preceding space or
# character to merge with), so the first kept token can split in two.
BOUNDARY_MERGE = 1


def _encode(tokenizer, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


@pytest.mark.parametrize("text", ["Hello world, this is a test. " * 20, "日本語の文章 " * 50, "🙂 emoji 😀😀 " * 30])
def test_real_tokenizer_keeps_a_clean_suffix(tokenizer, text):
    """With the bundled model's tokenizer: an exact suffix, never a broken character."""
    from rrm_server.prompt.template import PromptBuilder

    text = text.rstrip()  # a trailing space would be the last token: nothing to judge

    starts = PromptBuilder(tokenizer).token_starts
    total = len(_encode(tokenizer, text))
    for n in (1, 2, 5, 10, 33):
        a = prepare_answer(text, AnswerPolicy(strip_reasoning="off", max_response_tokens=n), starts)
        assert a.status is OK and text.endswith(a.text) and "\ufffd" not in a.text
        # Never inside a character: up to 3 more tokens dropped (the pieces of a 4-byte character),
        # or up to 3 more kept when the last character alone is more than n tokens.
        assert total - n - 3 <= a.dropped_tokens <= total - n + 3
    assert prepare_answer(text, AnswerPolicy(max_response_tokens=total), starts).dropped_tokens == 0


def test_real_tokenizer_ascii_fits_n_tokens(tokenizer):
    from rrm_server.prompt.template import PromptBuilder

    starts = PromptBuilder(tokenizer).token_starts
    text = "Hello world, this is a test of the answer policy. " * 20
    for n in range(1, 60):
        kept, _ = keep_last_tokens(text, n, starts)
        assert len(_encode(tokenizer, kept)) <= n + BOUNDARY_MERGE


@pytest.mark.parametrize("text", ["日本語の文章 " * 50, "🙂 emoji 😀😀 " * 30])
def test_real_tokenizer_multibyte_fits_n_tokens(tokenizer, text):
    from rrm_server.prompt.template import PromptBuilder

    starts = PromptBuilder(tokenizer).token_starts
    for n in range(1, 40):
        kept, _ = keep_last_tokens(text, n, starts)
        assert "\ufffd" not in kept
        assert len(_encode(tokenizer, kept)) <= n + BOUNDARY_MERGE, (n, kept)
