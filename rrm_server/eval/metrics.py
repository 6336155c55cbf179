"""Accuracy, confidence intervals, position consistency and failure rates: pure functions of records.

How items count (also stated in every summary):
- an item is correct iff its pick equals its label: a tie label needs a tie pick, and an invalid
  pick (no valid vote) is never correct, so failed judgments lower ``accuracy`` and are reported
  separately as ``invalid_items`` / ``invalid_judgments``; ``accuracy_valid`` leaves them out;
- ``accuracy_without_ties`` leaves out items labelled tie (PandaLM's second number);
- with both presentation orders the pick pools the valid votes of both (a judge that flips with
  the order gets a tie), and ``position_consistency`` is the share of items, among those decisive
  in both orders, whose two orders pick the same response.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from rrm_server.eval.records import BonRecord, Judgment, PairRecord, Pick, vote_pick

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (good at small n and near 0 or 1)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp float noise so the interval always contains p and stays in [0, 1].
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


class Rate(BaseModel):
    """k of n, with a 95% Wilson interval (null when n = 0)."""

    k: int
    n: int
    value: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        if n == 0:
            return cls(k=0, n=0, value=None, low=None, high=None)
        lo, hi = wilson(k, n)
        return cls(k=k, n=n, value=k / n, low=lo, high=hi)


class Mean(BaseModel):
    """A mean with a 95% normal-approximation interval (null below 2 values), clamped to [lo, hi]."""

    n: int
    value: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, values: Sequence[float], lo: float = 0.0, hi: float = 1.0) -> Mean:
        n = len(values)
        if n == 0:
            return cls(n=0, value=None, low=None, high=None)
        m = sum(values) / n
        if n < 2:
            return cls(n=n, value=m, low=None, high=None)
        sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
        half = Z95 * sd / math.sqrt(n)
        return cls(n=n, value=m, low=max(lo, m - half), high=min(hi, m + half))


class Latency(BaseModel):
    n: int
    mean: float | None
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls(n=0, mean=None, p50=None, p95=None)
        s = sorted(seconds)
        return cls(n=len(s), mean=sum(s) / len(s), p50=quantile(s, 0.5), p95=quantile(s, 0.95))


class Tokens(BaseModel):
    judgments: int = Field(description="Judgments that reached the engine (refused requests excluded).")
    prompt_tokens: int
    generated_tokens: int
    engine_calls: int
    prompt_per_judgment: float | None
    generated_per_judgment: float | None


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# -- pairwise ------------------------------------------------------------------------------------
def pool_pick(judgments: Iterable[Judgment]) -> Pick:
    """The item's pick from all its judgments: the majority of their valid votes pooled. One
    judgment: its own pick. Both orders: a judge that follows position (a in one, b in the other)
    ends in a tie; an invalid order leaves the decision to the other."""
    js = list(judgments)
    return vote_pick(sum(j.votes_a for j in js), sum(j.votes_b for j in js))


def debiased_pick(judgments: Sequence[Judgment]) -> Pick:
    """The item's pick with each presentation order weighing the same (the service's order=both rule):
    the side of 1/2 of the mean over orders of p(a better) when both orders report one; else each
    order's vote share for a, averaged over the orders; an order without valid votes leaves the pooled
    pick."""
    given = [j for j in judgments if not j.swapped]
    swapped = [j for j in judgments if j.swapped]
    if not given or not swapped:
        return pool_pick(judgments)
    ps = [[j.p_a for j in side if j.p_a is not None] for side in (given, swapped)]
    if all(ps):
        p = sum(sum(x) / len(x) for x in ps) / 2
    else:
        shares = []
        for side in (given, swapped):
            a, b = sum(j.votes_a for j in side), sum(j.votes_b for j in side)
            if a + b == 0:
                return pool_pick(judgments)
            shares.append(a / (a + b))
        p = sum(shares) / 2
    return "a" if p > 0.5 else "b" if p < 0.5 else "tie"


def official_credit(pick: Pick, label: str) -> float:
    """The official RRM scoring of one item: 1 right, 0 wrong, 0.5 for a failed judgment ("effectively a
    tie", scripts/run_generative.py); a split of valid votes counts as such a tie too."""
    if pick == label:
        return 1.0
    return 0.5 if pick in ("invalid", "tie") else 0.0


def position_consistent(judgments: Sequence[Judgment]) -> bool | None:
    """Did the as-given and the swapped presentation pick the same response? None unless both
    orders were judged and both picked a response (a tie or invalid order has nothing to compare)."""
    given = [j for j in judgments if not j.swapped]
    swapped = [j for j in judgments if j.swapped]
    if not given or not swapped:
        return None
    x, y = pool_pick(given), pool_pick(swapped)
    if x not in ("a", "b") or y not in ("a", "b"):
        return None
    return x == y


class PairMetrics(BaseModel):
    n: int = Field(description="Items.")
    accuracy: Rate = Field(description="Correct / all items (ties included; invalid picks count as wrong).")
    accuracy_without_ties: Rate | None = Field(description="Items labelled tie left out; null when none are.")
    accuracy_valid: Rate = Field(description="Correct / items with a valid pick (invalid items left out).")
    accuracy_official: Mean = Field(description="The official RRM scoring: an invalid (or tied) pick earns "
                                    "0.5, as in the official evaluation code.")
    accuracy_debiased: Rate | None = Field(None, description="With both orders: the pick that weighs each "
                                           "order the same (mean p over orders, else mean vote share), as "
                                           "order=both does in the service; null without both orders.")
    accuracy_by_order: dict[str, Rate] = Field(default_factory=dict, description="With both orders: each "
                                               "presentation alone (as_given, swapped).")
    picks: dict[str, int] = Field(description="Items by pick: a, b, tie, invalid.")
    labels: dict[str, int]
    invalid_items: Rate = Field(description="Items without a single valid vote.")
    invalid_judgments: Rate = Field(description="Judgments (requests) without a valid vote.")
    invalid_judgment_reasons: dict[str, int]
    invalid_votes: Rate = Field(description="Votes without a verdict, over all votes cast.")
    invalid_vote_reasons: dict[str, int]
    first_slot_rate: Rate = Field(description="Valid votes for the response shown as Assistant 1 (0.5: no "
                                  "position bias).")
    position_consistency: Rate | None = Field(description="Items decisive in both orders that pick the same "
                                              "response in both; null without both orders.")
    not_comparable: int = Field(0, description="Both-order items left out of position_consistency (a tie or "
                                "invalid in at least one order).")
    tokens: Tokens
    latency_s: Latency = Field(description="Wall time per judgment (request), queueing included.")


def pair_metrics(records: Sequence[PairRecord], tie_labels: bool = False) -> PairMetrics:
    """``tie_labels``: the data can label ties (PandaLM), so report accuracy_without_ties even when
    this selection happens to hold none."""
    correct = [r.pick == r.label for r in records]
    untied = [c for r, c in zip(records, correct, strict=True) if r.label != "tie"]
    valid = [c for r, c in zip(records, correct, strict=True) if r.pick != "invalid"]
    judgments = [j for r in records for j in r.judgments]
    reached = [j for j in judgments if not j.failed_request]
    jreasons = Counter(j.reason or "unknown" for j in judgments if j.pick == "invalid")
    vreasons: Counter[str] = Counter()
    for j in judgments:
        vreasons.update(j.invalid_reasons)
    votes_valid = sum(j.votes_a + j.votes_b for j in judgments)
    votes_invalid = sum(j.invalid_votes for j in judgments)
    by_order: dict[str, Rate] = {}
    both = [r for r in records
            if any(j.swapped for j in r.judgments) and any(not j.swapped for j in r.judgments)]
    if both:
        for name, sw in (("as_given", False), ("swapped", True)):
            picks = [(pool_pick(j for j in r.judgments if j.swapped == sw), r.label) for r in both]
            by_order[name] = Rate.of(sum(p == lab for p, lab in picks), len(picks))
    consistent = [position_consistent(r.judgments) for r in both]
    decided = [c for c in consistent if c is not None]
    slot1 = sum(j.slot1_votes for j in judgments)
    slot2 = sum(j.slot2_votes for j in judgments)
    has_ties = tie_labels or any(r.label == "tie" for r in records)
    debiased = [debiased_pick(r.judgments) == r.label for r in both]
    return PairMetrics(
        n=len(records),
        accuracy=Rate.of(sum(correct), len(records)),
        accuracy_official=Mean.of([official_credit(r.pick, r.label) for r in records]),
        accuracy_debiased=Rate.of(sum(debiased), len(debiased)) if both else None,
        accuracy_without_ties=Rate.of(sum(untied), len(untied)) if has_ties else None,
        accuracy_valid=Rate.of(sum(valid), len(valid)),
        accuracy_by_order=by_order,
        picks={p: sum(r.pick == p for r in records) for p in ("a", "b", "tie", "invalid")},
        labels={lab: sum(r.label == lab for r in records) for lab in ("a", "b", "tie")},
        invalid_items=Rate.of(sum(r.pick == "invalid" for r in records), len(records)),
        invalid_judgments=Rate.of(sum(j.pick == "invalid" for j in judgments), len(judgments)),
        invalid_judgment_reasons=dict(jreasons.most_common()),
        invalid_votes=Rate.of(votes_invalid, votes_valid + votes_invalid),
        invalid_vote_reasons=dict(vreasons.most_common()),
        first_slot_rate=Rate.of(slot1, slot1 + slot2),
        position_consistency=Rate.of(sum(decided), len(decided)) if both else None,
        not_comparable=len(consistent) - len(decided),
        tokens=_tokens(reached),
        latency_s=Latency.of([j.seconds for j in reached]),
    )


def subset_groups(subsets: Iterable[str]) -> dict[str, list[str]]:
    """Parent folders with more than one subset (``Adversarial`` for ``Adversarial/*``)."""
    groups: dict[str, list[str]] = {}
    for s in sorted(set(subsets)):
        parts = s.split("/")
        for i in range(1, len(parts)):
            groups.setdefault("/".join(parts[:i]), []).append(s)
    return {g: members for g, members in groups.items() if len(members) > 1}


# -- best-of-N -----------------------------------------------------------------------------------
class BonMethodMetrics(BaseModel):
    n: int
    selection_accuracy: Rate = Field(description="Questions whose chosen candidate is correct "
                                     "(no pick: wrong).")
    no_pick: Rate = Field(description="Questions without a chosen candidate (no decisive match, or refused).")
    lift_over_random: float | None = Field(description="selection_accuracy - the random pick's "
                                           "expected accuracy.")
    matches_decided_by: dict[str, int] = Field(description="majority / tiebreak (knockout coin) / draw / "
                                               "no_result.")
    invalid_votes: Rate
    invalid_vote_reasons: dict[str, int]
    request_errors: dict[str, int]
    tokens: Tokens
    latency_s: Latency = Field(description="Wall time per rank request.")


class BonMetrics(BaseModel):
    n: int
    random: Mean = Field(description="A uniformly random candidate: expected accuracy (fraction correct).")
    oracle: Rate = Field(description="Questions with at least one correct candidate "
                         "(1.0 on mixed questions).")
    methods: dict[str, BonMethodMetrics]


def bon_metrics(records: Sequence[BonRecord], methods: Sequence[str]) -> BonMetrics:
    random = Mean.of([sum(r.correct) / len(r.correct) for r in records])
    out: dict[str, BonMethodMetrics] = {}
    for m in methods:
        rs = [(r, r.methods[m]) for r in records if m in r.methods]
        hits = sum(j.best is not None and r.correct[j.best] for r, j in rs)
        acc = Rate.of(hits, len(rs))
        decided: Counter[str] = Counter()
        vreasons: Counter[str] = Counter()
        for _, j in rs:
            decided.update(j.decided_by)
            vreasons.update(j.invalid_reasons)
        valid = sum(j.valid_votes for _, j in rs)
        invalid = sum(j.invalid_votes for _, j in rs)
        reached = [j for _, j in rs if j.error is None]
        out[m] = BonMethodMetrics(
            n=len(rs), selection_accuracy=acc, no_pick=Rate.of(sum(j.best is None for _, j in rs), len(rs)),
            lift_over_random=None if acc.value is None or random.value is None else acc.value - random.value,
            matches_decided_by=dict(decided.most_common()), invalid_votes=Rate.of(invalid, valid + invalid),
            invalid_vote_reasons=dict(vreasons.most_common()),
            request_errors=dict(Counter(j.reason or "error" for _, j in rs if j.error is not None)),
            tokens=_tokens(reached), latency_s=Latency.of([j.seconds for j in reached]),
        )
    return BonMetrics(n=len(records), random=random,
                      oracle=Rate.of(sum(any(r.correct) for r in records), len(records)), methods=out)


def _tokens(js: Sequence[Judgment] | Sequence) -> Tokens:  # Judgment or RankJudgment
    n = len(js)
    p = sum(j.prompt_tokens for j in js)
    g = sum(j.generated_tokens for j in js)
    return Tokens(judgments=n, prompt_tokens=p, generated_tokens=g,
                  engine_calls=sum(j.engine_calls for j in js),
                  prompt_per_judgment=p / n if n else None, generated_per_judgment=g / n if n else None)
