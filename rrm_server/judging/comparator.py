"""Judging one pair of a request's responses: prompts, cached or concurrent engine calls, votes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, Sequence

from rrm_server.cache.keys import text_hash, vote_key
from rrm_server.cache.store import CacheStats, Job, VoteCache
from rrm_server.engine.base import EngineClient, EngineError, EngineUnavailable, Generation, GenerationRequest
from rrm_server.judging.policy import VotePolicy, majority_confidence
from rrm_server.ops import metrics
from rrm_server.judging.votes import (
    OrderMode, Outcome, Tally, Vote, VoteSpec, decide, outcome_from_slot, plan_votes, tally,
)
from rrm_server.prompt.template import TOKENIZE_INLINE_CHARS, PromptBuilder
from rrm_server.prompt.verdict import (
    InvalidReason, VerdictParser, parse_verdict, parse_verdict_official, slot1_probability,
)

# Log probabilities read at a verdict: both digits are within the top 20 for any judge worth the name.
PROBE_TOP_K = 20

# majority: valid votes (balanced over both orders with order=both); probability: the mean over both
# orders of p(first better); tiebreak: knockout's seeded coin on a tie; coin: ELO's seeded coin for a
# match without a valid vote (invalid_matches=coin, the official script's random winner); forfeit: a
# degenerate answer (empty, or reasoning that never closes) lost without a judgment.
DecidedBy = Literal["majority", "probability", "tiebreak", "draw", "no_result", "coin", "forfeit"]


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int


@dataclass
class Usage:
    """Engine work this request caused (cached and coalesced votes cost nothing)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_prompt_tokens: int = 0
    engine_calls: int = 0
    failed_judgments: int = 0
    votes_used: int = 0
    votes_saved: int = 0  # votes the request allowed but early stopping did not need
    votes_extra: int = 0  # votes beyond `votes` spent on uncertain matches (adaptive allocation)
    forced_verdicts: int = 0
    probe_calls: int = 0  # one-token engine calls reading verdict probabilities
    cache: CacheStats = field(default_factory=CacheStats)


@dataclass
class Judgment:
    """One judge generation and its parsed verdict, in the order shown: what the cache stores."""

    slot: int | None
    reason: InvalidReason | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    output: str | None = None
    error: str | None = None
    p_slot1: float | None = None  # p("Assistant 1") at the verdict, from the judge's log probabilities
    forced: bool = False  # the verdict was read after closing the reasoning, not written by the judge
    probed: bool = False  # the verdict probability was looked for (it may still be unavailable)


@dataclass(frozen=True)
class JudgmentCodec:
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
        if j.reason is InvalidReason.engine_error:
            return None
        ttl = self.valid_ttl if j.slot is not None else self.invalid_ttl
        return ttl or None

    def usable(self, j: Judgment) -> bool:
        # A verdict stored without its probability does not answer a request that wants one.
        probability_ok = j.probed or j.slot is None or not self.need_probability
        return (j.output is not None or not self.need_output) and probability_ok


@dataclass
class MatchResult:
    a: int
    b: int
    votes: list[Vote]
    tally: Tally
    winner: int | None  # a, b, or None (tied / all invalid) before any strategy rule
    round: int | None = None
    decided_by: DecidedBy = "majority"
    position_consistent: bool | None = None  # both orders picked the same response (None: not both shown)
    p_first: float | None = None  # p(a better): mean over votes, or over orders when debiased

    @property
    def confidence(self) -> float:
        """From the vote counts; a match whose two orders disagree is a coin flip, whatever the counts."""
        if self.position_consistent is False:
            return 0.5
        return majority_confidence(self.tally.first, self.tally.second)


class Comparator(Protocol):
    """What strategies need: judge responses a and b with up to k votes (early-stopped), and add
    votes to an uncertain match while the request's budget lasts."""

    async def compare(self, a: int, b: int, votes: int) -> MatchResult: ...

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult: ...


def counts(votes: Sequence[Vote]) -> tuple[int, int]:
    """(votes for the pair's first response, votes for its second)."""
    return (sum(v.outcome is Outcome.first for v in votes), sum(v.outcome is Outcome.second for v in votes))


def match_from_votes(a: int, b: int, votes: list[Vote], debias: bool = False) -> MatchResult:
    d = decide(votes, debias)
    return MatchResult(a=a, b=b, votes=votes, tally=tally(votes), winner=None if d.winner is None else (a, b)[d.winner],
                       decided_by=d.by, position_consistent=d.position_consistent, p_first=d.p_first)


@dataclass
class EngineComparator:
    """Judges pairs of one request's responses: each vote from the cache, a shared in-flight
    computation, or its own concurrent engine call."""

    engine: EngineClient
    builder: PromptBuilder
    cache: VoteCache
    codec: JudgmentCodec
    scope: str  # cache scope: model, prompt version and sampling of this request
    query: str
    responses: Sequence[str]
    max_model_len: int
    sampling: Sampling
    order: OrderMode
    seed: int
    request_id: str
    use_cache: bool = True
    keep_output: bool = False
    early_stop: bool = True
    min_votes: int | None = None
    confidence: float | None = None
    verdict_probs: bool = True
    max_thinking_tokens: int | None = None  # budget after which a verdict is forced
    rescue_invalid: bool = False  # also force verdicts of outputs that ended without a valid one
    budget_engine_calls: int | None = None  # caps on what adaptive top-ups may bring the request to
    budget_tokens: int | None = None
    verdict_parser: VerdictParser = "lenient"
    usage: Usage = field(default_factory=Usage)

    _committed: int = 0  # votes drawn or reserved so far (for the adaptive budget)
    _prompts: dict[tuple[int, int], "list[int] | asyncio.Future[list[int]]"] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._query_hash = text_hash(self.query)
        self._hashes = [text_hash(r) for r in self.responses]

    async def compare(self, a: int, b: int, votes: int) -> MatchResult:
        """Draw votes in waves until the policy stops; the votes are always a prefix of the k
        votes (same seeds, same orders) that drawing them all would give."""
        policy = VotePolicy(votes, self.early_stop, self.min_votes, self.confidence)
        drawn: list[Vote] = []
        while wave := self._pairs(policy.next_wave(*counts(drawn), len(drawn)), len(drawn), votes):
            self._committed += wave
            drawn += await self._draw(a, b, len(drawn), wave)
        self.usage.votes_saved += votes - len(drawn)
        return match_from_votes(a, b, drawn, self.debias)

    @property
    def debias(self) -> bool:
        return self.order == "both"

    def _pairs(self, wave: int, used: int, limit: int) -> int:
        """With both orders, votes come in swapped pairs: a wave never leaves a pair half drawn."""
        if self.debias and (used + wave) % 2 == 1 and used + wave < limit:
            return wave + 1
        return wave

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult:
        """More votes for an uncertain match, one wave at a time, until it is confident or decided,
        has ``max_votes``, or the request's budget is spent (keeping ``reserve`` engine calls for
        base votes still to come). Earlier votes are kept as they are."""
        policy = VotePolicy(max_votes, True, min_votes=1, confidence=target_confidence)
        drawn = list(match.votes)
        while True:
            wave = self._pairs(policy.next_wave(*counts(drawn), len(drawn)), len(drawn), max_votes)
            if not wave and match_from_votes(match.a, match.b, drawn, self.debias).position_consistent is False:
                wave = min(2, max_votes - len(drawn))  # the counts look settled, but the orders disagree
            if not wave or not self._budget_allows(wave, reserve):
                break
            new = await self._draw(match.a, match.b, len(drawn), wave)
            drawn += new
            self.usage.votes_extra += len(new)
        extended = match_from_votes(match.a, match.b, drawn, self.debias)
        extended.round = match.round
        return extended

    def _budget_allows(self, wave: int, reserve: int = 0) -> bool:
        """Reserve ``wave`` engine calls if the budget has room. Concurrent top-ups check one after
        another on the event loop, so reservations never overshoot (cache hits count as spent)."""
        if self.budget_engine_calls is not None and self._committed + reserve + wave > self.budget_engine_calls:
            return False
        if self.budget_tokens is not None and self.usage.generated_tokens >= self.budget_tokens:
            return False
        self._committed += wave
        return True

    async def _draw(self, a: int, b: int, start: int, k: int) -> list[Vote]:
        """Votes ``start .. start+k-1`` of the pair, counted in the request's usage."""
        specs = plan_votes(k, self.order, self.seed, self._hashes[a], self._hashes[b],
                           context=self._query_hash, start=start)
        jobs = []
        for spec in specs:
            first, second = (b, a) if spec.swapped else (a, b)
            key = vote_key(self.scope, self._query_hash, self._hashes[first], self._hashes[second],
                           spec.seed, spec.index)
            jobs.append(Job(key, lambda first=first, second=second, spec=spec: self._judge(first, second, spec)))
        results = await self.cache.fetch(jobs, self.codec, self.usage.cache, self.use_cache)
        votes = [self._vote(spec, j, source) for spec, (j, source) in zip(specs, results)]
        self.usage.votes_used += len(votes)
        self.usage.failed_judgments += sum(v.outcome is Outcome.invalid for v in votes)
        self.usage.forced_verdicts += sum(v.forced for v in votes)
        return votes

    async def prompt_ids(self, first: int, second: int) -> list[int]:
        # Every vote of a pair in one order shares its prompt: tokenize it once per request.
        ids = self._prompts.get((first, second))
        if ids is None:
            q, a, b = self.query, self.responses[first], self.responses[second]
            if len(q) + len(a) + len(b) > TOKENIZE_INLINE_CHARS:
                ids = asyncio.ensure_future(asyncio.to_thread(self.builder.build_ids, q, a, b))
            else:
                ids = self.builder.build_ids(q, a, b)
            self._prompts[(first, second)] = ids
        if isinstance(ids, asyncio.Future):
            ids = self._prompts[(first, second)] = await asyncio.shield(ids)  # shared by the pair's votes
        return ids

    async def _judge(self, first: int, second: int, spec: VoteSpec) -> Judgment:
        ids = await self.prompt_ids(first, second)
        rid = f"{self.request_id}-{first}-{second}-{spec.index}"
        budget = self.sampling.max_tokens
        if self.max_thinking_tokens is not None:
            budget = min(budget, self.max_thinking_tokens)
        request = GenerationRequest(
            request_id=rid,
            prompt_token_ids=ids,
            # The request was checked against the context with per-field token counts; whole-prompt
            # tokenization can differ by a few tokens at field boundaries, so never ask past the end.
            max_tokens=max(1, min(budget, self.max_model_len - len(ids))),
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=spec.seed,
            affinity_key=self._affinity(first),
        )
        self.usage.engine_calls += 1
        try:
            g = await self._generate(request)
        except EngineUnavailable:
            raise
        except EngineError as e:
            return Judgment(None, InvalidReason.engine_error, error=str(e))
        self._count(g)
        answer, closed = self._answer_text(g)
        if self.verdict_parser == "official":
            parsed = parse_verdict_official(g.text, g.finish_reason)
        else:
            parsed = parse_verdict(answer, g.finish_reason, self.builder.opens_reasoning,
                                   self.builder.reasoning_close_tag)
        j = Judgment(parsed.slot, parsed.reason, g.finish_reason, g.prompt_tokens, g.generated_tokens, g.text)
        vt = self.builder.verdict_tokens
        if vt is None or not g.token_ids:
            return j
        out_ids = list(g.token_ids)
        if parsed.valid and self.verdict_probs:
            # Re-read the judge's distribution at its verdict digit: one token of prefill on top of
            # vLLM's prefix cache, instead of log probabilities for every reasoning token.
            j.probed = True
            i = vt.find(out_ids, parsed.slot, self.builder.tokenizer.decode)
            if i is not None:
                pair = vt.twins[out_ids[i]]
                j.p_slot1 = await self._probe(f"{rid}-p", ids + out_ids[:i], pair, request.affinity_key)
        elif self._should_force(parsed.reason):
            j.probed = True
            while out_ids and self.builder.is_control(out_ids[-1]):  # the end-of-sequence token
                out_ids.pop()
            cue = self.builder.verdict_cue_ids(reasoning_closed=closed) or []
            room = self.max_model_len - 1 - len(ids) - len(cue)
            p = await self._probe(f"{rid}-f", ids + out_ids[: max(0, room)] + cue, vt.slot_ids, request.affinity_key)
            if p is not None:
                j.slot, j.reason, j.forced, j.p_slot1 = (1 if p >= 0.5 else 2), None, True, p
        return j

    def _answer_text(self, g: Generation) -> tuple[str, bool]:
        """The text the verdict parser reads, and whether the judge closed its reasoning.

        With a tokenizer that has the end-of-reasoning marker as a token of its own, only that token
        ends the reasoning: the same characters in plain tokens are text the judge copied (from a
        response that spells ``</think>\boxed{Assistant 1}``, say), never its own marker."""
        tag, close_id = self.builder.reasoning_close_tag, self.builder.reasoning_close_id
        if close_id is None or not g.token_ids:
            return g.text, bool(tag) and tag in g.text
        ids = list(g.token_ids)
        if close_id not in ids:
            return g.text.replace(tag, ""), False
        k = len(ids) - 1 - ids[::-1].index(close_id)
        tail = self.builder.tokenizer.decode(ids[k + 1 :], skip_special_tokens=True)
        return tag + tail.replace(tag, ""), True

    def _should_force(self, reason: InvalidReason | None) -> bool:
        if reason is InvalidReason.truncated:
            return self.max_thinking_tokens is not None or self.rescue_invalid
        return reason in (InvalidReason.no_verdict, InvalidReason.malformed) and self.rescue_invalid

    async def _probe(self, rid: str, context: list[int], pair: tuple[int, int],
                     affinity_key: str | None) -> float | None:
        """p("Assistant 1") for the token after ``context`` (on the replica that holds its prefix);
        None when unavailable."""
        request = GenerationRequest(rid, context, max_tokens=1, temperature=0.0, top_p=1.0, logprobs=PROBE_TOP_K,
                                    affinity_key=affinity_key)
        self.usage.probe_calls += 1
        try:
            g = await self._generate(request)
        except EngineUnavailable:
            raise
        except EngineError:
            return None
        self._count(g)
        return slot1_probability(g.logprobs[0], pair) if g.logprobs else None

    async def _generate(self, request: GenerationRequest) -> Generation:
        metrics.COMPARISONS_IN_FLIGHT.inc()
        try:
            return await self.engine.generate(request)
        except asyncio.CancelledError:
            metrics.ENGINE_CALLS_ABORTED.inc()  # nobody wants it any more; the engine aborts it
            raise
        finally:
            metrics.COMPARISONS_IN_FLIGHT.dec()

    def _affinity(self, first: int) -> str:
        """Comparisons showing the same response first under the same query share their prefix."""
        return f"{self._query_hash}:{self._hashes[first]}"

    def _count(self, g: Generation) -> None:
        self.usage.prompt_tokens += g.prompt_tokens
        self.usage.generated_tokens += g.generated_tokens
        self.usage.cached_prompt_tokens += g.cached_prompt_tokens or 0

    def _vote(self, spec: VoteSpec, j: Judgment, source: str) -> Vote:
        return Vote(
            index=spec.index,
            seed=spec.seed,
            swapped=spec.swapped,
            outcome=outcome_from_slot(j.slot, spec.swapped),
            slot=j.slot,
            reason=j.reason,
            finish_reason=j.finish_reason,
            prompt_tokens=j.prompt_tokens,
            generated_tokens=j.generated_tokens,
            output=j.output if self.keep_output else None,
            error=j.error,
            source=source,
            p_first=None if j.p_slot1 is None else (1.0 - j.p_slot1 if spec.swapped else j.p_slot1),
            forced=j.forced,
        )
