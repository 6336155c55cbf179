"""Votes and majorities: pure logic, no I/O."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from rrm_server.prompt.verdict import InvalidReason

OrderMode = Literal["random", "fixed", "both"]


class Outcome(str, Enum):
    """A judgment's result in terms of the compared pair (a, b), whatever order it was shown in."""

    first = "first"  # a is better
    second = "second"  # b is better
    invalid = "invalid"


def derive_seed(base: int, *parts: object) -> int:
    """A stable 31-bit seed from a request seed and a path (pair, vote index ...).

    31 bits so the same seed means the same thing to vLLM, torch and an OpenAI-compatible server.
    """
    h = hashlib.blake2b(repr((base, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFF_FFFF


def tiebreak_order(n: int, seed: int) -> list[int]:
    """A seeded rank per item, for breaking exact ties without favouring low indices."""
    keys = [derive_seed(seed, "tiebreak-order", i) for i in range(n)]
    return sorted(range(n), key=lambda i: keys[i])


@dataclass(frozen=True)
class VoteSpec:
    """One sample to draw: its seed and whether b is shown first ("Assistant 1")."""

    index: int
    seed: int
    swapped: bool


def plan_votes(
    k: int, order: OrderMode, base_seed: int, a_key: object, b_key: object, *, context: object = "",
    start: int = 0,
) -> list[VoteSpec]:
    """Seeds and presentation orders for votes ``start .. start+k-1`` of the pair (a, b).

    ``a_key``/``b_key`` identify the responses by content (hashes) and ``context`` the query: the
    same two texts get the same votes in any request and at any position, so a repeated comparison
    is the same work (and a cache hit). Extending k extends, never reshuffles, the earlier votes.
    """
    # Canonical orientation: the seeds and orders are drawn for (lower key, higher key).
    flip = repr(b_key) < repr(a_key)
    x, y = (b_key, a_key) if flip else (a_key, b_key)
    phase = derive_seed(base_seed, "phase", context, x, y) & 1
    specs = []
    for i in range(start, start + k):
        if order == "fixed":
            swapped = False
        else:
            if order == "both":  # alternate, from a seeded phase so odd k favours neither
                y_first = (i + phase) % 2 == 1
            else:
                y_first = bool(derive_seed(base_seed, "order", context, x, y, i) & 1)
            swapped = y_first != flip
        specs.append(VoteSpec(index=i, seed=derive_seed(base_seed, "vote", context, x, y, i), swapped=swapped))
    return specs


def outcome_from_slot(slot: int | None, swapped: bool) -> Outcome:
    """Map the judge's "Assistant 1/2" back to the pair's first/second response."""
    if slot is None:
        return Outcome.invalid
    first_shown_wins = slot == 1
    return Outcome.first if first_shown_wins != swapped else Outcome.second


Source = Literal["cache", "computed", "coalesced"]


@dataclass
class Judgment:
    """One judge generation and its parsed verdict, in the order shown: what the cache stores."""

    slot: int | None  # 1 or 2: the "Assistant" the judge picked; None: invalid (see reason)
    reason: InvalidReason | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    output: str | None = None
    error: str | None = None
    p_slot1: float | None = None  # p("Assistant 1") at the verdict, from the judge's log probabilities
    forced: bool = False  # the verdict was read after closing the reasoning, not written by the judge
    probed: bool = False  # the verdict probability was looked for (it may still be unavailable)
    exit: str | None = None  # how the thinking ended (a VoteExit value); None: judged before it was recorded


@dataclass(frozen=True)
class Vote:
    """One vote of a match: the sample drawn (spec), what the judge said (judgment, in the order
    shown) and where it came from. Everything about the pair (a, b) is derived from those two."""

    spec: VoteSpec
    judgment: Judgment
    source: Source = "computed"

    @classmethod
    def of(cls, index: int, swapped: bool, outcome: Outcome, *, seed: int = 0,
           reason: InvalidReason | None = None, p_first: float | None = None) -> Vote:
        """A vote from its outcome in pair terms (for pure logic and tests)."""
        slot = None if outcome is Outcome.invalid else 1 if (outcome is Outcome.first) != swapped else 2
        p_slot1 = None if p_first is None else (1.0 - p_first if swapped else p_first)
        return cls(VoteSpec(index, seed, swapped), Judgment(slot, reason, p_slot1=p_slot1))

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def swapped(self) -> bool:
        return self.spec.swapped

    @property
    def outcome(self) -> Outcome:
        return outcome_from_slot(self.judgment.slot, self.spec.swapped)

    @property
    def reason(self) -> InvalidReason | None:
        return self.judgment.reason

    @property
    def forced(self) -> bool:
        return self.judgment.forced

    @property
    def p_first(self) -> float | None:
        """p(the pair's first response is better) from the verdict's log probabilities."""
        p = self.judgment.p_slot1
        return None if p is None else (1.0 - p if self.spec.swapped else p)


@dataclass
class Tally:
    first: int = 0
    second: int = 0
    invalid: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> int:
        return self.first + self.second

    @property
    def winner(self) -> int | None:
        """0 if the first response holds the majority of valid votes, 1 the second, None on a tie."""
        if self.first > self.second:
            return 0
        if self.second > self.first:
            return 1
        return None


def tally(votes: Iterable[Vote]) -> Tally:
    counts = Counter(v.outcome for v in votes)
    reasons = Counter(v.reason.value for v in votes if v.outcome is Outcome.invalid and v.reason)
    return Tally(
        first=counts[Outcome.first],
        second=counts[Outcome.second],
        invalid=counts[Outcome.invalid],
        invalid_reasons=dict(sorted(reasons.items())),
    )


def majority(outcomes: Sequence[Outcome]) -> int | None:
    """Winner (0/1) of a list of outcomes, None when tied or all invalid."""
    return tally(Vote.of(i, False, o) for i, o in enumerate(outcomes)).winner


@dataclass(frozen=True)
class Decision:
    """A match's verdict from its votes."""

    winner: int | None  # 0: the pair's first response, 1: its second, None: tied or no valid vote
    by: Literal["majority", "probability"]
    position_consistent: bool | None  # each order picked the same response; None: an order has no vote
    p_first: float | None  # p(the pair's first response is better), averaged (over orders when debiased)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _pick(share: float | None) -> int | None:
    if share is None or share == 0.5:
        return None
    return 0 if share > 0.5 else 1


def decide(votes: Sequence[Vote], debias: bool = False) -> Decision:
    """The winner of a match.

    Plain: the majority of valid votes, ``p_first`` their mean probability. Debiased (both orders
    shown): each presentation order weighs the same, whatever its number of valid votes, so a judge
    that always answers "Assistant 1" produces a tie, not a winner: with probabilities in both
    orders the winner is the side of 1/2 of the mean over orders of p(first better); otherwise of
    the mean over orders of the first response's vote share. An order without valid votes cannot
    be balanced: the plain rule decides then.
    """
    t = tally(votes)
    by_order: dict[bool, list[Vote]] = {False: [], True: []}
    for v in votes:
        if v.outcome is not Outcome.invalid:
            by_order[v.swapped].append(v)
    shares = [_mean([1.0 if v.outcome is Outcome.first else 0.0 for v in by_order[o]]) for o in (False, True)]
    probs = [_mean([v.p_first for v in by_order[o] if v.p_first is not None]) for o in (False, True)]
    both_orders = all(s is not None for s in shares)
    consistent = None
    if both_orders:
        picks = [_pick(p) if p is not None else _pick(s) for p, s in zip(probs, shares)]
        consistent = picks[0] is not None and picks[0] == picks[1]
    plain_p = _mean([v.p_first for o in (False, True) for v in by_order[o] if v.p_first is not None])
    if debias and both_orders:
        if all(p is not None for p in probs):
            p = (probs[0] + probs[1]) / 2  # type: ignore[operator]
            return Decision(_pick(p), "probability", consistent, p)
        balanced = (shares[0] + shares[1]) / 2  # type: ignore[operator]
        return Decision(_pick(balanced), "majority", consistent, plain_p)
    return Decision(t.winner, "majority", consistent, plain_p)
