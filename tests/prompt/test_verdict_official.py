"""The ``official`` verdict parser against a literal transcription of the RRM evaluation code."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rrm_server.prompt.verdict import InvalidReason, parse_verdict, parse_verdict_official

T, N, M = InvalidReason.truncated, InvalidReason.no_verdict, InvalidReason.malformed

# --- Reference oracle: microsoft/LMOps @ af6bc85, RRM-evaluation/scripts/run_generative.py and
# rewardbench/generative.py (process_judgement, model_modifier "Skywork"), copied as written. -------
THOUGHT_DELIMITER_START = "<think>"
THOUGHT_DELIMITER_END = "</think>"


def last_boxed_only_string(string):  # type: ignore[no-untyped-def]
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None

    i = idx
    right_brace_idx = None
    num_left_braces_open = 0
    while i < len(string):
        if string[i] == "{":
            num_left_braces_open += 1
        if string[i] == "}":
            num_left_braces_open -= 1
            if num_left_braces_open == 0:
                right_brace_idx = i
                break
        i += 1

    if right_brace_idx == None:  # noqa: E711
        retval = None
    else:
        retval = string[idx:right_brace_idx + 1]

    return retval


def remove_boxed(s):  # type: ignore[no-untyped-def]
    left = "\\boxed{"
    try:
        assert s[:len(left)] == left
        assert s[-1] == "}"
        return s[len(left):-1]
    except:  # noqa: E722
        return None


def extract_boxed_answer(solution):  # type: ignore[no-untyped-def]
    solution = last_boxed_only_string(solution)
    solution = remove_boxed(solution)
    return solution


def extract_answer(passage):  # type: ignore[no-untyped-def]
    if "\\boxed" in passage:
        return extract_boxed_answer(passage)
    return None


def process_judgement(judgment):  # type: ignore[no-untyped-def]
    if judgment is None:
        return "error"
    else:
        if judgment == "Assistant 1":
            return "A"
        elif judgment == "Assistant 2":
            return "B"


def official_slot(output: str) -> int | None:
    """The official pipeline on one generated ``answer``: 1 for "A", 2 for "B", None for error."""
    answer = output
    answer = THOUGHT_DELIMITER_START + answer
    if THOUGHT_DELIMITER_START in answer and THOUGHT_DELIMITER_END in answer:
        model_solution = answer.split(THOUGHT_DELIMITER_END)[1]
        model_answer = extract_answer(model_solution)
    else:
        model_answer = 3
    winner = process_judgement(model_answer)
    return {"A": 1, "B": 2}.get(winner)


# --- Hand-picked cases: (output, official slot, lenient slot with reasoning_opened=True, and with
# reasoning_opened=False). Rows where the two parsers disagree are marked "# differs". ----------------
CASES = [
    ("I compare.\n</think>\n\n\\boxed{Assistant 1}", 1, 1, 1),
    ("...</think>Assistant 2 is better. \\boxed{Assistant 2}", 2, 2, 2),
    ("", None, None, None),
    ("</think>", None, None, None),
    ("</think>\\boxed{Assistant 1} or rather \\boxed{Assistant 2}", 2, 2, 2),  # last box
    ("\\boxed{Assistant 1}</think>no box", None, None, None),  # verdict only inside the reasoning
    ("\\boxed{Assistant 1}</think>", None, None, None),
    ("</think>\\boxed{Assistant 3}", None, None, None),
    ("</think>\\boxed{assistant 1}", None, None, None),
    ("</think>\\boxed{}", None, None, None),
    ("</think>\\boxed{Assistant {1}}", None, None, None),  # nested braces: content "Assistant {1}"
    ("</think>\\boxed{\\boxed{Assistant 2}}", 2, 2, 2),  # the inner box is the last \boxed
    ("</think>\\boxed{Assistant 1", None, None, None),  # never closed
    ("</think>\\boxed{Assistant 1}\\boxed{", None, None, None),  # the last box never closed
    ("</think>\\boxed {Assistant 1}", None, None, None),
    ("</think>\\boxedx{Assistant 1}", None, None, None),  # found by rfind, fails remove_boxed
    ("</think>\\fbox{Assistant 1}", None, None, None),  # \fbox only when there is no \boxed at all
    ("</think>\\boxed{Assistant 2}\\fbox{Assistant 1}", 2, 2, 2),
    ("<think>x</think>\\boxed{Assistant 2}", 2, 2, 2),  # a <think> of its own changes nothing
    ("</think>\\boxed{Assistant 1}}", 1, 1, 1),
    # The text between the first and the second </think> counts, not the text after the last.
    ("a</think>\\boxed{Assistant 1}</think>\\boxed{Assistant 2}", 1, 2, 2),  # differs
    ("a</think>\\boxed{Assistant 1}</think>", 1, None, None),  # differs
    ("a</think>b</think>\\boxed{Assistant 2}", None, 2, 2),  # differs
    # A later \boxed without a brace hides the verdict from the official parser.
    ("</think>\\boxed{Assistant 1} so \\boxed Assistant 1", None, 1, 1),  # differs
    ("</think>\\boxed{Assistant 2}\\boxed", None, 2, 2),  # differs
    ("</think>\\boxed{Assistant 1} \\boxed Assistant 2 {x}", None, 1, 1),  # differs
    # Whitespace in the box: the official wants "Assistant 1" exactly.
    ("</think>\\boxed{ Assistant 1 }", None, 1, 1),  # differs
    ("</think>\\boxed{Assistant  1}", None, 1, 1),  # differs
    ("</think>\\boxed{Assistant\t2\n}", None, 2, 2),  # differs
    # No </think> at all: invalid for the official; the lenient parser without a think block in the
    # template reads the whole output.
    ("\\boxed{Assistant 1}", None, None, 1),  # differs
    ("Assistant 2 wins: \\boxed{Assistant 2}", None, None, 2),  # differs
]


@pytest.mark.parametrize(("output", "official", "opened", "plain"), CASES)
def test_cases_match_the_official_code(output, official, opened, plain):
    assert official_slot(output) == official  # the table itself is checked against the oracle
    assert parse_verdict_official(output, "stop").slot == official
    assert parse_verdict(output, "stop", reasoning_opened=True).slot == opened
    assert parse_verdict(output, "stop", reasoning_opened=False).slot == plain


def test_the_table_has_disagreements():
    """Enough of the table documents where the parsers differ."""
    differ = [c for c in CASES if c[1] != c[2] or c[1] != c[3]]
    assert len(CASES) >= 20 and len(differ) >= 10


@pytest.mark.parametrize(
    ("output", "finish", "reason"),
    [
        ("still thinking \\boxed{Assistant 1}", "length", T),  # no </think>, cut by the limit
        ("still thinking \\boxed{Assistant 1}", "stop", N),
        ("still thinking", None, N),
        ("</think> no box yet", "length", T),
        ("</think> no box", "stop", N),
        ("</think>\\boxed{Both}", "stop", M),
        ("</think>\\boxed{Both}", "length", M),  # a closed box is never "truncated"
        ("</think>\\boxed{ Assistant 1 }", "stop", M),
        ("</think>\\boxedx{Assistant 1}", "stop", M),
        ("</think>\\boxed{Assistant 1", "stop", M),
        ("</think>\\boxed{Assistant 1", "length", T),
        ("</think>\\boxed Assistant 1", "stop", M),
    ],
)
def test_invalid_reasons(output, finish, reason):
    v = parse_verdict_official(output, finish)
    assert (v.slot, v.reason, v.valid) == (None, reason, False)


def test_valid_verdicts_have_no_reason():
    for finish in ("stop", "length", None):
        v = parse_verdict_official("x</think>\\boxed{Assistant 2}", finish)
        assert (v.slot, v.reason, v.valid) == (2, None, True)


_pieces = st.sampled_from([
    "</think>", "<think>", "</", "think>", "\\boxed", "\\boxed{", "\\fbox", "\\fbox{", "\\", "{", "}",
    "Assistant 1", "Assistant 2", "Assistant", " Assistant 1 ", "1", "2", " ", "  ", "\n", "\t", "a", "x",
    "boxed", "\\boxed{Assistant 1}", "\\boxed{Assistant 2}",
])
_noise = st.lists(_pieces, max_size=12).map("".join)
# Free mixtures of the pieces, and the official shape (reasoning, </think>, answer) with noise around.
_outputs = st.lists(_pieces, max_size=24).map("".join) | st.tuples(
    _noise, st.sampled_from(["</think>", ""]), _noise,
    st.sampled_from(["\\boxed{Assistant 1}", "\\boxed{Assistant 2}", "\\boxed{ Assistant 1}", ""]), _noise,
).map("".join)


@settings(max_examples=1000)
@given(out=_outputs)
@example(out="</think>\\boxed}{Assistant 1}")  # a "}" before any "{": the count never returns to 0
@example(out="</think>\\boxed{Assistant 1}\\boxed}")
def test_matches_the_official_code_on_generated_outputs(out):
    assert parse_verdict_official(out, "stop").slot == official_slot(out)


@given(out=st.text(max_size=200) | _outputs, finish=st.sampled_from(["stop", "length", None]))
def test_total_and_consistent(out, finish):
    v = parse_verdict_official(out, finish)
    assert v.slot == official_slot(out)
    assert (v.slot is None) == (v.reason is not None)
    if v.reason is T:
        assert finish == "length"
