"""Judging one request's matches: votes in waves (early stopping), an adaptive budget, seeds and
cache keys per vote, and each vote from the cache, a shared in-flight computation, or the engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from rrm_server.cache.keys import text_hash, vote_key
from rrm_server.cache.store import Job, VoteCache
from rrm_server.judging.match import MatchResult, counts, match_from_votes
from rrm_server.judging.policy import VotePolicy
from rrm_server.judging.votes import Judgment, OrderMode, Outcome, Vote, VoteSpec, plan_votes
from rrm_server.prompt.verdict import InvalidReason
from rrm_server.serving.vote import Prompts, Usage, VoteRunner


@dataclass(frozen=True)
class JudgmentCodec:
    """How a judgment is stored in the comparison cache, and whether a stored one answers this request."""

    valid_ttl: float
    invalid_ttl: float
    store_output: bool
    need_output: bool
    need_probability: bool = False

    def dumps(self, j: Judgment) -> bytes:
        d = asdict(j)
        d["reason"] = j.reason.value if j.reason else None
        if not self.store_output:
            d["output"] = None
        return json.dumps(d, separators=(",", ":")).encode()

    def loads(self, raw: bytes) -> Judgment:
        d = json.loads(raw)
        d["reason"] = InvalidReason(d["reason"]) if d["reason"] else None
        return Judgment(**d)

    def ttl(self, j: Judgment) -> float | None:
        if j.reason is InvalidReason.engine_error or j.exit == "deadline":
            return None  # a deadline's verdict is what time allowed, not the vote this key asks for
        ttl = self.valid_ttl if j.slot is not None else self.invalid_ttl
        return ttl or None

    def usable(self, j: Judgment) -> bool:
        # A verdict without its probability does not answer a request that wants one.
        probability_ok = j.probed or j.slot is None or not self.need_probability
        return (j.output is not None or not self.need_output) and probability_ok


@dataclass(frozen=True)
class MatchPlan:
    """Which votes a match draws: orders and seeds, and when it stops."""

    order: OrderMode
    seed: int
    early_stop: bool = True
    min_votes: int | None = None
    confidence: float | None = None

    @property
    def debias(self) -> bool:
        return self.order == "both"

    def pairs(self, wave: int, used: int, limit: int) -> int:
        """With both orders, votes come in swapped pairs: a wave never leaves a pair half drawn."""
        if self.debias and (used + wave) % 2 == 1 and used + wave < limit:
            return wave + 1
        return wave


@dataclass
class Budget:
    """Caps on what adaptive top-ups may bring the request to."""

    engine_calls: int | None = None
    tokens: int | None = None
    committed: int = 0  # votes drawn or reserved so far

    def allows(self, wave: int, usage: Usage, reserve: int = 0) -> bool:
        """Reserve ``wave`` engine calls if the budget has room. Concurrent top-ups check one after
        another on the event loop, so reservations never overshoot (cache hits count as spent)."""
        if self.engine_calls is not None and self.committed + reserve + wave > self.engine_calls:
            return False
        if self.tokens is not None and usage.generated_tokens >= self.tokens:
            return False
        self.committed += wave
        return True


@dataclass(frozen=True)
class VoteLanded:
    """A vote of the match (a, b) is in (computed, cached or shared): a streamed request's event."""

    a: int
    b: int
    vote: Vote


@dataclass(frozen=True)
class MatchPlayed:
    match: MatchResult


Event = VoteLanded | MatchPlayed


@dataclass
class MatchRunner:
    """Judges pairs of one request's responses (the strategies' ``Comparator``)."""

    votes: VoteRunner
    prompts: Prompts
    cache: VoteCache
    codec: JudgmentCodec
    scope: str  # cache scope: model, prompt version and sampling of this request
    plan: MatchPlan
    request_id: str
    use_cache: bool = True
    budget: Budget = field(default_factory=Budget)
    events: Callable[[Event], None] | None = None  # a streamed request's sink

    def played(self, match: MatchResult) -> None:
        if self.events is not None:
            self.events(MatchPlayed(match))

    def __post_init__(self) -> None:
        self._query_hash = text_hash(self.prompts.query)
        self._hashes = [text_hash(r) for r in self.prompts.responses]

    @property
    def usage(self) -> Usage:
        return self.votes.usage

    async def compare(self, a: int, b: int, votes: int) -> MatchResult:
        """Draw votes in waves until the policy stops; the votes are always a prefix of the k
        votes (same seeds, same orders) that drawing them all would give."""
        p = self.plan
        policy = VotePolicy(votes, p.early_stop, p.min_votes, p.confidence)
        drawn: list[Vote] = []
        while wave := p.pairs(policy.next_wave(*counts(drawn), len(drawn)), len(drawn), votes):
            self.budget.committed += wave
            drawn += await self._draw(a, b, len(drawn), wave)
        self.usage.votes_saved += votes - len(drawn)
        return match_from_votes(a, b, drawn, p.debias)

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult:
        """More votes for an uncertain match, one wave at a time, until it is confident or decided,
        has ``max_votes``, or the request's budget is spent (keeping ``reserve`` engine calls for
        base votes still to come). Earlier votes are kept as they are."""
        p = self.plan
        policy = VotePolicy(max_votes, True, min_votes=1, confidence=target_confidence)
        drawn = list(match.votes)
        while True:
            wave = p.pairs(policy.next_wave(*counts(drawn), len(drawn)), len(drawn), max_votes)
            if not wave and match_from_votes(match.a, match.b, drawn, p.debias).position_consistent is False:
                wave = min(2, max_votes - len(drawn))  # the counts look settled, but the orders disagree
            if not wave or not self.budget.allows(wave, self.usage, reserve):
                break
            new = await self._draw(match.a, match.b, len(drawn), wave)
            drawn += new
            self.usage.votes_extra += len(new)
        extended = match_from_votes(match.a, match.b, drawn, p.debias)
        extended.round = match.round
        return extended

    async def _draw(self, a: int, b: int, start: int, k: int) -> list[Vote]:
        """Votes ``start .. start+k-1`` of the pair, counted in the request's usage."""
        specs = plan_votes(k, self.plan.order, self.plan.seed, self._hashes[a], self._hashes[b],
                           context=self._query_hash, start=start)
        jobs = []
        for spec in specs:
            first, second = (b, a) if spec.swapped else (a, b)
            key = vote_key(self.scope, self._query_hash, self._hashes[first], self._hashes[second],
                           spec.seed, spec.index)
            jobs.append(Job(key, lambda first=first, second=second, spec=spec: self._judge(first, second, spec, a, b)))
        results = await self.cache.fetch(jobs, self.codec, self.usage.cache, self.use_cache)
        votes = [Vote(spec, j, source) for spec, (j, source) in zip(specs, results)]
        if self.events is not None:  # computed votes were reported as they landed
            for v in votes:
                if v.source != "computed":
                    self.events(VoteLanded(a, b, v))
        self.usage.votes_used += len(votes)
        self.usage.failed_judgments += sum(v.outcome is Outcome.invalid for v in votes)
        self.usage.forced_verdicts += sum(v.forced for v in votes)
        return votes

    async def _judge(self, first: int, second: int, spec: VoteSpec, a: int, b: int) -> Judgment:
        ids = await self.prompts.ids(first, second)
        # Comparisons showing the same response first under the same query share their prefix.
        affinity = f"{self._query_hash}:{self._hashes[first]}"
        j = await self.votes.judge(ids, f"{self.request_id}-{first}-{second}-{spec.index}", spec.seed, affinity)
        if self.events is not None:
            self.events(VoteLanded(a, b, Vote(spec, j)))
        return j
