"""Metrics: intervals, picks, consistency and how ties and invalid items count (pure functions)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.eval.metrics import (
    Mean,
    Rate,
    bon_metrics,
    debiased_pick,
    official_credit,
    pair_metrics,
    pool_pick,
    position_consistent,
    wilson,
)
from rrm_server.eval.records import (
    BonRecord,
    Judgment,
    PairRecord,
    RankJudgment,
    main_reason,
    vote_pick,
)


# -- intervals -----------------------------------------------------------------------------------
def test_wilson_known_values():
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and round(lo, 4) == 0.7225
    with pytest.raises(ValueError):
        wilson(3, 2)
    with pytest.raises(ValueError):
        wilson(0, 0)


@given(st.integers(1, 100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_bounds(kn):
    k, n = kn
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert (lo == 0.0) == (k == 0)
    assert (hi == 1.0) == (k == n)
    # Symmetric: the interval for failures mirrors the one for successes.
    lo2, hi2 = wilson(n - k, n)
    assert math.isclose(lo2, 1 - hi, abs_tol=1e-12) and math.isclose(hi2, 1 - lo, abs_tol=1e-12)


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_narrows_with_more_data(kn):
    k, n = kn
    lo, hi = wilson(k, n)
    lo4, hi4 = wilson(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


def test_rate_and_mean():
    assert Rate.of(0, 0).value is None and Rate.of(0, 0).low is None
    r = Rate.of(3, 4)
    assert (r.k, r.n, r.value) == (3, 4, 0.75) and r.low < 0.75 < r.high
    m = Mean.of([0.25, 0.5, 0.75, 0.5])
    assert m.value == 0.5 and 0 <= m.low < 0.5 < m.high <= 1
    assert Mean.of([1.0]).low is None and Mean.of([]).value is None
    assert Mean.of([1.0, 1.0, 1.0]).high == 1.0  # clamped, never above 1


# -- picks and consistency -----------------------------------------------------------------------
def J(a: int = 0, b: int = 0, invalid: int = 0, swapped: bool = False, reasons: dict | None = None,
      error: str | None = None, seconds: float = 1.0, **kw) -> Judgment:  # type: ignore[no-untyped-def]
    pick = vote_pick(a, b)
    reasons = reasons if reasons is not None else ({"no_verdict": invalid} if invalid else {})
    reason = None
    if pick == "invalid":  # as judgment_from_pairwise / failed_judgment set it
        reason = "context_length_exceeded" if error else main_reason(reasons) or "no_votes"
    return Judgment(swapped=swapped, order="fixed", pick=pick, votes_a=a, votes_b=b, invalid_votes=invalid,
                    invalid_reasons=reasons, reason=reason, error=error, seconds=seconds, **kw)


def R(label: str, *judgments: Judgment, subset: str = "all", id: str = "x") -> PairRecord:
    pick = pool_pick(judgments)
    return PairRecord(id=id, subset=subset, label=label, judgments=list(judgments),  # type: ignore[arg-type]
                      pick=pick, correct=pick == label)


def test_vote_pick():
    assert vote_pick(2, 1) == "a" and vote_pick(0, 1) == "b" and vote_pick(1, 1) == "tie"
    assert vote_pick(0, 0) == "invalid"


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=4))
def test_pool_pick_is_symmetric(votes):
    js = [J(a, b) for a, b in votes]
    mirrored = [J(b, a) for a, b in votes]
    flip = {"a": "b", "b": "a", "tie": "tie", "invalid": "invalid"}
    assert pool_pick(mirrored) == flip[pool_pick(js)]


def test_pool_pick_both_orders():
    assert pool_pick([J(1, 0), J(0, 1, swapped=True)]) == "tie"  # follows position: a tie
    assert pool_pick([J(1, 0), J(1, 0, swapped=True)]) == "a"
    assert pool_pick([J(invalid=1), J(0, 1, swapped=True)]) == "b"  # one invalid order: the other decides
    assert pool_pick([J(invalid=1), J(invalid=1, swapped=True)]) == "invalid"


def test_position_consistency_is_about_responses_not_slots():
    # Same response in both orders (the slots differ): consistent.
    assert position_consistent([J(1, 0), J(1, 0, swapped=True)]) is True
    # Same slot in both orders (a shown first, then b shown first): inconsistent.
    assert position_consistent([J(1, 0), J(0, 1, swapped=True)]) is False
    # Nothing to compare: one order only, or a tie/invalid order.
    assert position_consistent([J(1, 0)]) is None
    assert position_consistent([J(1, 1), J(1, 0, swapped=True)]) is None
    assert position_consistent([J(1, 0), J(invalid=1, swapped=True)]) is None


# -- pair metrics --------------------------------------------------------------------------------
def test_pair_metrics_counts_ties_and_invalids_as_documented():
    recs = [
        R("a", J(1, 0)),                        # correct
        R("b", J(1, 0)),                        # wrong
        R("a", J(invalid=1)),                   # invalid: wrong in accuracy
        R("tie", J(1, 1)),                      # tie label, tie pick: correct
        R("tie", J(1, 0)),                      # tie label, decisive pick: wrong
        R("b", J(error="too long", reasons={})),  # refused request: invalid
    ]
    m = pair_metrics(recs)
    assert m.n == 6
    assert (m.accuracy.k, m.accuracy.n) == (2, 6)
    assert (m.accuracy_without_ties.k, m.accuracy_without_ties.n) == (1, 4)
    assert (m.accuracy_valid.k, m.accuracy_valid.n) == (2, 4)
    assert m.picks == {"a": 3, "b": 0, "tie": 1, "invalid": 2}
    assert m.labels == {"a": 2, "b": 2, "tie": 2}
    assert (m.invalid_items.k, m.invalid_judgments.k) == (2, 2)
    assert m.invalid_judgment_reasons == {"no_verdict": 1, "context_length_exceeded": 1}
    assert (m.invalid_votes.k, m.invalid_votes.n) == (1, 6)
    assert m.invalid_vote_reasons == {"no_verdict": 1}
    assert m.position_consistency is None and m.accuracy_by_order == {}
    # Refused requests never reached the engine: left out of tokens and latency.
    assert m.tokens.judgments == 5 and m.latency_s.n == 5


def test_pair_metrics_without_tie_labels_has_no_tie_accuracy():
    m = pair_metrics([R("a", J(1, 0)), R("b", J(1, 0))])
    assert m.accuracy_without_ties is None and m.accuracy.value == 0.5


def test_pair_metrics_both_orders():
    recs = [
        R("a", J(1, 0, slot1_votes=1), J(1, 0, swapped=True, slot2_votes=1)),   # consistent, right
        R("b", J(1, 0, slot1_votes=1), J(0, 1, swapped=True, slot1_votes=1)),   # position: tie, wrong
        R("b", J(0, 1, slot2_votes=1), J(invalid=1, swapped=True)),             # not comparable, right
        R("a", J(0, 1, slot2_votes=1), J(0, 1, swapped=True, slot1_votes=1)),   # consistent, wrong
    ]
    m = pair_metrics(recs)
    assert (m.position_consistency.k, m.position_consistency.n) == (2, 3)
    assert m.not_comparable == 1
    assert (m.accuracy.k, m.accuracy.n) == (2, 4)
    assert m.picks == {"a": 1, "b": 2, "tie": 1, "invalid": 0}
    assert (m.accuracy_by_order["as_given"].k, m.accuracy_by_order["swapped"].k) == (2, 2)
    assert (m.first_slot_rate.k, m.first_slot_rate.n) == (4, 7)


def test_official_accuracy_gives_invalid_picks_half_credit():
    recs = [R("a", J(2, 0)), R("b", J(2, 0)), R("a", J(invalid=2)), R("b", J(1, 1))]
    m = pair_metrics(recs)
    assert m.accuracy.k == 1 and m.accuracy_official.value == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert official_credit("tie", "tie") == 1.0 and official_credit("a", "tie") == 0.0


def test_debiased_pick_weighs_each_order_the_same():
    # A slot-1 judge: 3 of 4 votes as given for a, 1 swapped vote for b (its slot 1): pooled a wins 3-1,
    # balanced it is a tie.
    js = [J(3, 0, slot1_votes=3), J(0, 1, swapped=True, slot1_votes=1)]
    assert pool_pick(js) == "a" and debiased_pick(js) == "tie"
    # Probabilities in both orders decide: (0.9 + 0.4) / 2 > 0.5.
    assert debiased_pick([J(1, 0, p_a=0.9), J(0, 1, swapped=True, p_a=0.4)]) == "a"
    assert debiased_pick([J(1, 0, p_a=0.7), J(0, 1, swapped=True, p_a=0.2)]) == "b"
    # One order only, or an order without valid votes: the pooled pick.
    assert debiased_pick([J(2, 1)]) == "a"
    assert debiased_pick([J(0, 2), J(invalid=1, swapped=True)]) == "b"
    m = pair_metrics([R("a", *js), R("a", J(1, 0, p_a=0.9), J(0, 1, swapped=True, p_a=0.4))])
    assert (m.accuracy.k, m.accuracy_debiased.k, m.accuracy_debiased.n) == (1, 1, 2)
    assert pair_metrics([R("a", J(1, 0))]).accuracy_debiased is None


judgment_st = st.builds(
    lambda a, b, inv, sw: J(a, b, invalid=inv, swapped=sw),
    st.integers(0, 3), st.integers(0, 3), st.integers(0, 2), st.booleans())
record_st = st.builds(lambda label, js: R(label, *js), st.sampled_from(["a", "b", "tie"]),
                      st.lists(judgment_st, min_size=1, max_size=2))


@given(st.lists(record_st, min_size=1, max_size=30))
def test_pair_metrics_invariants(records):
    m = pair_metrics(records)
    n = len(records)
    assert sum(m.picks.values()) == n and sum(m.labels.values()) == n
    # An invalid pick is never correct, so leaving invalid items out keeps every correct one.
    assert m.accuracy.k == m.accuracy_valid.k
    assert m.accuracy_valid.n == n - m.invalid_items.k == n - m.picks["invalid"]
    assert m.accuracy.k == sum(r.pick == r.label for r in records)
    if m.accuracy_without_ties is not None:
        assert m.accuracy_without_ties.n == n - m.labels["tie"]
        assert m.accuracy_without_ties.k == m.accuracy.k - sum(r.label == r.pick == "tie" for r in records)
    assert sum(m.invalid_judgment_reasons.values()) == m.invalid_judgments.k
    assert sum(m.invalid_vote_reasons.values()) == m.invalid_votes.k
    for rate in (m.accuracy, m.accuracy_valid, m.invalid_items):
        if rate.n:
            assert rate.low <= rate.value <= rate.high


# -- best-of-N -----------------------------------------------------------------------------------
def test_bon_metrics():
    def rj(method: str, best: int | None, **kw) -> RankJudgment:  # type: ignore[no-untyped-def]
        return RankJudgment(method=method, best=best, **kw)

    recs = [
        BonRecord(id="1", correct=[True, False, False, False],
                  methods={"elo": rj("elo", 0, valid_votes=6), "knockout": rj("knockout", 1, valid_votes=3)}),
        BonRecord(id="2", correct=[False, True, True, False],
                  methods={"elo": rj("elo", None, invalid_votes=6, invalid_reasons={"truncated": 6},
                                     decided_by={"no_result": 6}),
                           "knockout": rj("knockout", 2, decided_by={"tiebreak": 3}, invalid_votes=3,
                                          invalid_reasons={"truncated": 3})}),
        BonRecord(id="3", correct=[False, False, False, True],
                  methods={"elo": rj("elo", 3),
                           "knockout": rj("knockout", None, reason="context_length_exceeded",
                                          error="too long")}),
    ]
    m = bon_metrics(recs, ["elo", "knockout"])
    assert m.n == 3
    assert math.isclose(m.random.value, (0.25 + 0.5 + 0.25) / 3)
    assert (m.oracle.k, m.oracle.n) == (3, 3)
    elo, ko = m.methods["elo"], m.methods["knockout"]
    assert (elo.selection_accuracy.k, elo.selection_accuracy.n) == (2, 3)
    assert (elo.no_pick.k, ko.no_pick.k) == (1, 1)
    # The refused question counts as wrong.
    assert (ko.selection_accuracy.k, ko.selection_accuracy.n) == (1, 3)
    assert math.isclose(elo.lift_over_random, 2 / 3 - 1 / 3)
    assert elo.matches_decided_by == {"no_result": 6} and ko.matches_decided_by == {"tiebreak": 3}
    assert (elo.invalid_votes.k, elo.invalid_votes.n) == (6, 12)
    assert ko.request_errors == {"context_length_exceeded": 1}
    assert ko.tokens.judgments == 2  # the refused request is not a judgment that reached the engine


def test_tie_labels_flag_reports_accuracy_without_ties_anyway():
    m = pair_metrics([R("a", J(1, 0)), R("b", J(1, 0))], tie_labels=True)
    assert m.accuracy_without_ties == m.accuracy
