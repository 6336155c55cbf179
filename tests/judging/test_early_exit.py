"""Early exit inside a vote: the exit rule and the probe schedule (pure, property-tested)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.early_exit import EarlyExit, ProbeSchedule


@pytest.mark.parametrize("kwargs, field", [
    ({"exit_confidence": 0.5}, "exit_confidence"), ({"exit_confidence": 1.01}, "exit_confidence"),
    ({"exit_confidence": 0.9, "probe_every": 0}, "probe_every"),
    ({"exit_confidence": 0.9, "probe_every": None, "transition_words": ()}, "probe_every"),
    ({"exit_confidence": 0.9, "transition_words": ("Wait", " ")}, "transition_words"),
])
def test_bad_settings_name_their_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EarlyExit(**kwargs)


@given(p=st.floats(0, 1), c=st.floats(0.5, 1, exclude_min=True))
def test_a_probe_settles_exactly_when_the_leading_verdict_reaches_the_threshold(p, c):
    rule = EarlyExit(exit_confidence=c)
    slot = rule.settled(p)
    assert (slot == 0) == (p >= c)
    assert (slot == 1) == (1 - p >= c)  # both cannot hold: c > 0.5
    assert (slot is None) == (max(p, 1 - p) < c)


def test_probes_every_n_tokens_once_per_multiple_passed():
    s = ProbeSchedule(EarlyExit(0.9, probe_every=100, transition_words=()))
    assert [s.feed(t, "x") for t in (50, 99, 100, 150, 250, 299, 300)] == [False, False, True, False, True,
                                                                           False, True]


def test_no_probe_before_min_tokens():
    s = ProbeSchedule(EarlyExit(0.9, probe_every=None, min_tokens=10))
    assert s.feed(3, "Wait, ") is False  # too early: and not probed later for it either
    assert s.feed(8, "so") is False
    assert s.feed(12, " Hmm") is False  # not seen yet: "Hmm" may go on ("Hmmm")
    assert s.feed(13, ".") is True


WORDS = ("Wait", "Hmm")
TEXT = st.text(alphabet=st.sampled_from(list("WaitHm ,.x\n")), max_size=60)


def _expected(text: str) -> list[int]:
    """Index of the character that reveals each transition word (the one after it)."""
    return [m.end() for m in re.finditer(r"(?<!\w)(?:Wait|Hmm)(?=\W)", text)]


@given(text=TEXT, cuts=st.lists(st.integers(0, 60), max_size=8))
def test_transition_words_are_seen_once_in_the_chunk_that_reveals_them_however_the_text_is_cut(text, cuts):
    s = ProbeSchedule(EarlyExit(0.9, probe_every=None, transition_words=WORDS))
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    reveal = _expected(text)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        assert s.feed(i + 1, text[a:b]) == any(a <= r < b for r in reveal), (text, bounds)


def test_a_word_is_not_a_prefix_of_a_longer_one():
    s = ProbeSchedule(EarlyExit(0.9, probe_every=None, transition_words=("Wait",)))
    assert [s.feed(i, c) for i, c in enumerate(["Wai", "t", "ing ", "so. Wait", "!"])] == [False, False, False,
                                                                                          False, True]
