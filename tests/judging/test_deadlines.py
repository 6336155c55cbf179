"""Deadline planning (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.deadlines import DeadlinePlan, check_deadline_s


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), 601])
def test_a_deadline_in_the_past_or_beyond_the_limit_names_the_field(value):
    with pytest.raises(ValueError, match="deadline_s"):
        check_deadline_s(value, limit=600)


def test_a_good_deadline_passes():
    assert check_deadline_s(30, limit=600) == 30.0


@given(deadline=st.floats(0, 1e4), margin=st.floats(0, 100), now=st.floats(0, 1e4),
       spt=st.floats(1e-4, 1.0))
def test_votes_close_margin_seconds_before_the_deadline_and_late_matches_think_less(deadline, margin, now, spt):
    plan = DeadlinePlan(deadline, margin)
    assert plan.closing(now) == (now >= deadline - margin)
    budget = plan.think_budget(now, spt)
    assert budget >= 0
    assert (budget == 0) or not plan.closing(now)
    assert plan.think_budget(now + 1, spt) <= budget  # later never buys more thinking
    assert now + budget * spt <= plan.close_at + 1e-6 or budget == 0
