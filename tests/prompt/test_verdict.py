"""The lenient verdict parser (the default): every invalid reason, and hostile outputs. The official
parser and where the two differ: tests/prompt/test_verdict_official.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.prompt.verdict import InvalidReason, last_boxed_content, parse_verdict

T, N, M = InvalidReason.truncated, InvalidReason.no_verdict, InvalidReason.malformed


@pytest.mark.parametrize(
    ("output", "finish", "opened", "slot", "reason"),
    [
        # Official shape: reasoning closed by </think>, then the boxed verdict.
        ("I compare...\n</think>\n\\boxed{Assistant 1}", "stop", True, 1, None),
        ("...</think>\n\nAssistant 2 is better. \\boxed{Assistant 2}", "stop", True, 2, None),
        ("...</think>\\boxed{ Assistant 2 }", "stop", True, 2, None),
        ("...</think>\\boxed{Assistant  1\n}", "stop", True, 1, None),
        # The LAST box counts, after the LAST </think>.
        ("\\boxed{Assistant 1}</think>\\boxed{Assistant 2}", "stop", True, 2, None),
        ("</think>\\boxed{Assistant 1} then \\boxed{Assistant 2}", "stop", True, 2, None),
        ("</think>\\boxed{Assistant 2} but </think> \\boxed{Assistant 1}", "stop", True, 1, None),
        # Verdicts inside the reasoning do not count.
        ("\\boxed{Assistant 1} is my guess </think> no box", "stop", True, None, N),
        # Reasoning never closed: cut by the limit, or finished without an answer.
        ("thinking \\boxed{Assistant 1} and more", "length", True, None, T),
        ("thinking \\boxed{Assistant 1}", "stop", True, None, N),
        # Template without a think block: the raw output is parsed.
        ("Assistant 1 wins. \\boxed{Assistant 1}", "stop", False, 1, None),
        ("\\boxed{Assistant 2}", None, False, 2, None),
        ("no verdict here", "stop", False, None, N),
        ("no verdict yet, still", "length", False, None, T),
        # Malformed verdicts.
        ("\\boxed{Assistant 3}", "stop", False, None, M),
        ("\\boxed{assistant 1}", "stop", False, None, M),
        ("\\boxed{Assistant 1 and Assistant 2}", "stop", False, None, M),
        ("\\boxed{Both}", "stop", False, None, M),
        ("\\boxed{}", "stop", False, None, M),
        ("\\boxed{Assistant 1}\\boxed{A}", "stop", False, None, M),
        ("\\boxed{\\text{Assistant 1}}", "stop", False, None, M),
        ("\\boxed{Assistant 1", "stop", False, None, M),
        ("\\boxed{Assistant 1", "length", False, None, T),
        ("\\boxed{Assistant {1}", "stop", False, None, M),
        # Other spellings are not verdicts.
        ("\\boxed {Assistant 1}", "stop", False, None, N),
        ("**Assistant 1**", "stop", False, None, N),
        ("\\fbox{Assistant 1}", "stop", False, None, N),
    ],
)
def test_lenient_and_hostile_cases(output, finish, opened, slot, reason):
    v = parse_verdict(output, finish, reasoning_opened=opened)
    assert (v.slot, v.reason) == (slot, reason)
    assert v.valid == (slot is not None)


def test_brace_matching():
    assert last_boxed_content("\\boxed{a{b}c}") == "a{b}c"
    assert last_boxed_content("\\boxed{a}\\boxed{b}") == "b"
    assert last_boxed_content("\\boxed{a") is None
    assert last_boxed_content("nothing") is None


_plain = st.text(alphabet=st.characters(blacklist_characters="\\"), max_size=60)


@given(reasoning=st.text(max_size=200), tail=_plain, slot=st.sampled_from([1, 2]))
def test_only_text_after_the_last_close_counts(reasoning, tail, slot):
    out = f"{reasoning}</think>{tail}\\boxed{{Assistant {slot}}}"
    v = parse_verdict(out, "stop", reasoning_opened=True)
    if "</think>" in tail:
        return
    assert v.slot == slot
    # Whatever the reasoning said, replacing it changes nothing.
    assert parse_verdict(f"x</think>{tail}\\boxed{{Assistant {slot}}}", "stop", True) == v


@given(text=st.text(max_size=300), finish=st.sampled_from(["stop", "length", None]), opened=st.booleans())
def test_total_and_consistent(text, finish, opened):
    v = parse_verdict(text, finish, reasoning_opened=opened)
    assert (v.slot is None) == (v.reason is not None)
    assert v.slot in (None, 1, 2)
    if v.reason is InvalidReason.truncated:
        assert finish == "length"


def test_verdict_tokens_and_probability(tokenizer, think_tokenizer):
    import math

    from rrm_server.prompt.template import PromptBuilder
    from rrm_server.prompt.verdict import VerdictTokens, slot1_probability

    vt = VerdictTokens.from_tokenizer(tokenizer)
    assert tokenizer.decode(list(vt.prefix_ids)) == "\\boxed{Assistant "
    assert [tokenizer.decode([i]) for i in vt.slot_ids] == ["1", "2"]
    out = tokenizer.encode("I think \\boxed{Assistant 1} is wrong. </think> \\boxed{Assistant 2} 1",
                           add_special_tokens=False)
    i = vt.find(out, 2, tokenizer.decode)
    assert out[i] == vt.slot_ids[1] and tokenizer.decode(out[:i]).endswith("</think> \\boxed{Assistant ")
    assert vt.find(out, 1, tokenizer.decode) < i  # the "1" after the verdict is not preceded by "Assistant"
    assert vt.find(tokenizer.encode("no verdict 1 2"), 1, tokenizer.decode) is None

    assert slot1_probability({vt.slot_ids[0]: math.log(0.6), vt.slot_ids[1]: math.log(0.2)}, vt.slot_ids) == \
        pytest.approx(0.75)
    assert slot1_probability({vt.slot_ids[0]: -0.1}, vt.slot_ids) is None  # never a fake 1.0

    # The forced-verdict cue closes the reasoning with the model's own marker when it is open.
    b = PromptBuilder(think_tokenizer)
    cue = b.verdict_cue_ids(reasoning_closed=False)
    assert think_tokenizer.convert_tokens_to_ids("</think>") in cue
    assert think_tokenizer.decode(cue) == "\n</think>\n\n\\boxed{Assistant "
    assert think_tokenizer.decode(b.verdict_cue_ids(reasoning_closed=True)) == "\n\n\\boxed{Assistant "
