"""Judging logic behind the HTTP routes and the Python API: validate, encode, run a strategy, report."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import fields, replace
from typing import Sequence

from rrm_server.api.judge.protocol import (
    AnswerFields,
    AnswerOut,
    CacheUsageOut,
    MatchOut,
    PairwiseRequest,
    PairwiseResponse,
    RankRequest,
    RankResponse,
    RenderRequest,
    RenderResponse,
    SamplingFields,
    TallyOut,
    UsageOut,
    VoteOut,
)
from rrm_server.engine.base import EngineClient, EngineUnavailable, ModelInfo
from rrm_server.errors import ContextLengthExceeded, EngineFailure, InvalidRequest, NotReady
from rrm_server.cache.keys import comparison_scope
from rrm_server.cache.store import VoteCache
from rrm_server.judging.comparator import EngineComparator, JudgmentCodec, MatchResult, Sampling, Usage
from rrm_server.judging.strategies import RankOutcome, StrategyOptions, get_strategy
from rrm_server.judging.votes import OrderMode, Outcome, Tally, Vote
from rrm_server.ops import metrics
from rrm_server.prompt.answers import AnswerPolicy, PreparedAnswer, prepare_answer
from rrm_server.prompt.template import TOKENIZE_INLINE_CHARS, PromptBuilder
from rrm_server.settings import Settings


# A field can tokenize to a few more tokens than its bytes at its boundaries (prefix markers).
FIELD_SLACK_TOKENS = 8


class JudgeServing:
    def __init__(self, settings: Settings, engine: EngineClient, builder: PromptBuilder, model: ModelInfo,
                 cache: VoteCache, fingerprint: str) -> None:
        self.settings = settings
        self.engine = engine
        self.builder = builder
        self.model = model
        self.cache = cache
        self.fingerprint = fingerprint

    # -- public --------------------------------------------------------------------------------
    async def render(self, req: RenderRequest) -> RenderResponse:
        self._check_model(req.model)
        self._check_texts(req.query, req.responses)
        answers = await self.prepare(req, req.responses)
        shown = [1, 0] if req.order == "swapped" else [0, 1]
        texts = [a.text for a in answers]
        if sum(map(len, (req.query, *texts))) > TOKENIZE_INLINE_CHARS:  # keep the event loop free
            rendered = await asyncio.to_thread(self.builder.render, req.query, texts[shown[0]], texts[shown[1]])
        else:
            rendered = self.builder.render(req.query, texts[shown[0]], texts[shown[1]])
        return RenderResponse(
            model=self.model.name,
            shown_order=shown,
            prompt_text=rendered.text,
            prompt_token_ids=rendered.token_ids,
            num_prompt_tokens=len(rendered.token_ids),
            opens_reasoning=self.builder.opens_reasoning,
            prompt_version=self.builder.spec.version,
            answers=answers_out(answers),
            judged=not any(a.degenerate for a in answers),
        )

    async def prepare(self, req: AnswerFields, responses: Sequence[str]) -> list[PreparedAnswer]:
        """What the judge reads of each response (reasoning removed, tail kept), or degenerate."""
        s = self.settings
        policy = AnswerPolicy(
            strip_reasoning=req.strip_reasoning or s.strip_reasoning,
            open_tag=(req.reasoning_tags or s.reasoning_tags)[0],
            close_tag=(req.reasoning_tags or s.reasoning_tags)[1],
            max_response_tokens=req.max_response_tokens or s.max_response_tokens,
        )
        starts = self.builder.token_starts
        if policy.max_response_tokens is not None and sum(map(len, responses)) > TOKENIZE_INLINE_CHARS:
            return await asyncio.to_thread(lambda: [prepare_answer(r, policy, starts) for r in responses])
        return [prepare_answer(r, policy, starts) for r in responses]

    async def pairwise(self, req: PairwiseRequest, request_id: str | None = None) -> PairwiseResponse:
        rid = request_id or f"pairwise-{uuid.uuid4().hex}"
        outcome, answers, usage = await self._run(req, "pairwise", StrategyOptions(votes=req.votes), rid)
        match = outcome.matches[0]
        return PairwiseResponse(
            id=rid,
            model=self.model.name,
            seed=req.seed,
            winner=outcome.best,
            confidence=match.confidence,
            p_first=match.p_first,
            decided_by=match.decided_by,
            position_consistent=match.position_consistent,
            tally=_tally_out(match.tally),
            votes=[_vote_out(v, match, req.include_reasoning) for v in match.votes],
            answers=answers_out(answers),
            usage=usage_out(usage),
        )

    async def rank(self, req: RankRequest, request_id: str | None = None) -> RankResponse:
        rid = request_id or f"rank-{uuid.uuid4().hex}"
        if req.adaptive_votes is not None and not req.votes <= req.adaptive_votes <= self.settings.max_votes:
            raise InvalidRequest(f"adaptive_votes={req.adaptive_votes} must be between votes={req.votes} and this "
                                 f"server's maximum of {self.settings.max_votes}", "adaptive_votes")
        if req.opponents is not None:
            if req.method != "elo":
                raise InvalidRequest("opponents applies to method=elo (a sparse round robin)", "opponents")
            if req.opponents >= len(req.responses):
                raise InvalidRequest(f"opponents={req.opponents} must be below the number of responses "
                                     f"({len(req.responses)}): each response meets that many others", "opponents")
        options = StrategyOptions(votes=req.votes, rating=req.rating, invalid_matches=req.invalid_matches,
                                  adaptive_votes=req.adaptive_votes, target_confidence=req.target_confidence,
                                  opponents=req.opponents)
        outcome, answers, usage = await self._run(req, req.method, options, rid)
        return RankResponse(
            id=rid,
            model=self.model.name,
            seed=req.seed,
            method=req.method,
            best=outcome.best,
            ranking=outcome.ranking,
            scores=outcome.scores,
            matches=[
                MatchOut(
                    pair=[m.a, m.b],
                    round=m.round,
                    winner=m.winner,
                    confidence=m.confidence,
                    p_first=m.p_first,
                    decided_by=m.decided_by,
                    position_consistent=m.position_consistent,
                    tally=_tally_out(m.tally),
                    votes=[_vote_out(v, m, req.include_reasoning) for v in m.votes],
                )
                for m in outcome.matches
            ],
            answers=answers_out(answers),
            usage=usage_out(usage),
        )

    # -- internals -----------------------------------------------------------------------------
    async def _run(
        self, req: PairwiseRequest | RankRequest, strategy_name: str, options: StrategyOptions, rid: str
    ) -> tuple[RankOutcome, list[PreparedAnswer], Usage]:
        self._check_model(req.model)
        self._check_texts(req.query, req.responses)
        if len(req.responses) > self.settings.max_responses:
            raise InvalidRequest(
                f"{len(req.responses)} responses given; this server accepts at most "
                f"{self.settings.max_responses} per request",
                "responses",
            )
        if (req.min_votes is None) != (req.confidence is None):
            raise InvalidRequest("min_votes and confidence go together: give both or neither",
                                 "min_votes" if req.min_votes is None else "confidence")
        if req.votes > self.settings.max_votes:
            raise InvalidRequest(
                f"votes={req.votes} is above this server's maximum of {self.settings.max_votes}", "votes"
            )
        sampling = self._sampling(req)
        answers = await self.prepare(req, req.responses)
        # Degenerate answers never reach the engine: the strategy plays the others (``live``).
        live = [i for i, a in enumerate(answers) if not a.degenerate]
        texts = [answers[i].text for i in live]
        for a in answers:
            if a.degenerate:
                metrics.DEGENERATE_ANSWERS.labels(status=a.status.value).inc()
        if len(texts) >= 2 and not self._surely_fits(req.query, texts, req.max_tokens):
            # Exact per-field token counts, for a precise error (and the rare close call).
            await self._check_lengths(req.query, texts, req.max_tokens, live)
        if not self.engine.ready:
            raise NotReady("the judge engine is not running (loading, or restarting after a failure); "
                           "retry when GET /ready returns 200")

        seed = req.seed if req.seed is not None else 0
        parser = req.verdict_parser or self.settings.verdict_parser
        comparator = EngineComparator(
            engine=self.engine,
            builder=self.builder,
            cache=self.cache,
            codec=JudgmentCodec(
                valid_ttl=self.settings.cache_ttl,
                invalid_ttl=self.settings.cache_invalid_ttl,
                store_output=self.settings.cache_store_reasoning,
                need_output=req.include_reasoning,
                need_probability=req.verdict_probs,
            ),
            scope=self._scope(sampling, req, parser),
            use_cache=req.cache and self.settings.cache_enabled,
            query=req.query,
            responses=texts,
            max_model_len=self.model.max_model_len,
            sampling=sampling,
            order=self._order(req),
            seed=seed,
            verdict_parser=parser,
            request_id=rid,
            keep_output=req.include_reasoning,
            early_stop=req.early_stop,
            min_votes=req.min_votes,
            confidence=req.confidence,
            verdict_probs=req.verdict_probs,
            max_thinking_tokens=req.max_thinking_tokens,
            rescue_invalid=req.rescue_invalid,
            budget_engine_calls=getattr(req, "budget_engine_calls", None),  # rank only
            budget_tokens=getattr(req, "budget_tokens", None),
        )
        strategy = get_strategy(strategy_name)
        try:
            if len(live) >= 2:
                outcome = await strategy.run(len(live), comparator, replace(options, seed=seed))
            else:
                outcome = RankOutcome(best=0 if live else None, ranking=list(range(len(live))),
                                      scores=[{"index": 0}] if live else [], matches=[])
        except (EngineUnavailable, ExceptionGroup) as e:
            dead = _find(e, EngineUnavailable)
            if dead is None:
                raise
            raise EngineFailure(f"the judge engine failed while this request ran: {dead}") from e
        outcome = _with_degenerate(outcome, live, answers, strategy_name)
        metrics.record_usage(comparator.usage, [v for m in outcome.matches for v in m.votes])
        return outcome, answers, comparator.usage

    @staticmethod
    def _order(req: SamplingFields) -> OrderMode:
        """Unset: both orders once there are two votes to balance (position bias), else a seeded coin."""
        if req.order is not None:
            return req.order
        return "both" if req.votes >= 2 else "random"

    def _scope(self, sampling: Sampling, req: SamplingFields, parser: str = "lenient") -> str:
        """Everything besides the texts and the seed that decides a vote: the cache key's prefix."""
        return comparison_scope(
            model=self.model.name,
            fingerprint=self.fingerprint,
            max_model_len=self.model.max_model_len,
            prompt=self.builder.spec.version,
            reasoning=(self.builder.opens_reasoning, self.builder.reasoning_close_tag),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            max_thinking_tokens=req.max_thinking_tokens,
            rescue_invalid=req.rescue_invalid,
            # Only a non-default parser enters the key, so votes cached before it existed stay valid.
            **({} if parser == "lenient" else {"verdict_parser": parser}),
        )

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.model.name:
            raise InvalidRequest(f"model {model!r} is not served here; this server serves {self.model.name!r}",
                                 "model")

    def _check_texts(self, query: str, responses: Sequence[str]) -> None:
        limit = self.settings.max_text_chars
        if len(query) > limit:
            raise InvalidRequest(f"query is {len(query)} characters; the limit is {limit}", "query")
        for i, r in enumerate(responses):
            if len(r) > limit:
                raise InvalidRequest(f"responses[{i}] is {len(r)} characters; the limit is {limit}",
                                     f"responses.{i}")

    def _sampling(self, req: SamplingFields) -> Sampling:
        s = self.settings
        limit = s.max_tokens_limit or self.model.max_model_len
        if req.max_tokens is None:
            # Like vLLM's OpenAI server, an unset max_tokens is cut to what fits after each prompt
            # (in the comparator); the value here stays request-independent for the cache key.
            max_tokens = min(s.effective_max_tokens, limit)
        elif req.max_tokens > limit:
            raise InvalidRequest(f"max_tokens={req.max_tokens} is above this server's limit of {limit}",
                                 "max_tokens")
        else:
            max_tokens = req.max_tokens
        return Sampling(
            temperature=req.temperature if req.temperature is not None else s.default_temperature,
            top_p=req.top_p if req.top_p is not None else s.default_top_p,
            max_tokens=max_tokens,
        )

    def _surely_fits(self, query: str, responses: Sequence[str], max_tokens: int | None) -> bool:
        """A bound without tokenizing (tokenizing every text twice was the gateway's largest cost):
        a token covers at least one UTF-8 byte, plus a few for prefix markers and field boundaries.
        Texts that spell control tokens (escaped piecewise) take the exact path."""
        if self.builder.spells_control_token(query, *responses):
            return False
        longest = sorted((len(r.encode()) for r in responses), reverse=True)[:2]
        bound = self.builder.template_tokens + len(query.encode()) + sum(longest) + 3 * 8
        return bound + (max_tokens or 1) <= self.model.max_model_len

    async def _check_lengths(self, query: str, responses: Sequence[str], max_tokens: int | None,
                             index: Sequence[int]) -> None:
        """The longest comparison (the two longest responses: every strategy may play it) must fit.

        Long texts are tokenized in a worker thread (the tokenizer releases the GIL), so one huge
        request does not stall every other request on the event loop; responses go longest first
        and the check stops as soon as the answer is known, so a flood of oversized responses is
        rejected after tokenizing two of them, not all."""
        encode = self.builder.encode_untrusted
        big = len(query) + sum(map(len, responses)) > TOKENIZE_INLINE_CHARS

        async def count(text: str) -> int:
            return len(await asyncio.to_thread(encode, text) if big and len(text) > 1000 else encode(text))

        base = self.builder.template_tokens + await count(query)
        order = sorted(range(len(responses)), key=lambda i: -len(responses[i].encode()))
        top: list[tuple[int, int]] = []  # (tokens, index) of the two longest so far
        for rank, i in enumerate(order):
            if len(top) == 2 and top[1][0] >= len(responses[i].encode()) + FIELD_SLACK_TOKENS:
                break  # a token covers at least a byte: no later response can be longer than these
            top = sorted([*top, (await count(responses[i]), i)], reverse=True)[:2]
            if len(top) == 2:
                (ta, a), (tb, b) = top
                if base + ta + tb + (max_tokens or 1) > self.model.max_model_len:
                    break  # already too long: the longest comparison only gets longer
        (ta, a), (tb, b) = top
        a, b = index[a], index[b]  # the caller's response indices
        self._check_context(base + ta + tb, min(a, b), max(a, b), max_tokens)

    def _check_context(self, prompt: int, a: int, b: int, max_tokens: int | None) -> None:
        """``max_tokens``: as requested (must fit in full), or None (at least one token must fit)."""
        ctx = self.model.max_model_len
        need = prompt + (max_tokens or 1)
        if need > ctx:
            asked = f"max_tokens={max_tokens}" if max_tokens else "room for at least 1 generated token"
            raise ContextLengthExceeded(
                f"the prompt comparing responses {a} and {b} is {prompt} tokens (template included); "
                f"with {asked} it needs {need} tokens, above the model's context length of {ctx}",
                "responses",
            )


def _find(e: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(e, kind):
        return e
    if isinstance(e, BaseExceptionGroup):
        for sub in e.exceptions:
            found = _find(sub, kind)
            if found is not None:
                return found
    return None


def _with_degenerate(outcome: RankOutcome, live: list[int], answers: list[PreparedAnswer],
                     strategy: str) -> RankOutcome:
    """The strategy's outcome over the live responses, in the caller's indices, with every degenerate
    answer ranked last. A pairwise request with one degenerate answer is a forfeit."""
    alive = set(live)
    dead = [i for i in range(len(answers)) if i not in alive]
    if not dead:
        return outcome
    matches = [replace(m, a=live[m.a], b=live[m.b], winner=None if m.winner is None else live[m.winner])
               for m in outcome.matches]
    if strategy == "pairwise":
        winner = live[0] if live else None
        matches = [MatchResult(a=0, b=1, votes=[], tally=Tally(), winner=winner,
                               decided_by="forfeit" if live else "no_result")]
    scores = [{**s, "index": live[s["index"]]} for s in outcome.scores]
    scores += [{"index": i, "status": answers[i].status.value} for i in dead]
    scores.sort(key=lambda s: s["index"])
    return RankOutcome(
        best=None if outcome.best is None else live[outcome.best],
        ranking=[live[i] for i in outcome.ranking] + dead,
        scores=scores,
        matches=matches,
    )


def answers_out(answers: Sequence[PreparedAnswer]) -> list[AnswerOut]:
    return [AnswerOut(index=i, status=a.status.value, reasoning_stripped=a.reasoning_stripped,  # type: ignore[arg-type]
                      dropped_tokens=a.dropped_tokens) for i, a in enumerate(answers)]


def _tally_out(t: Tally) -> TallyOut:
    return TallyOut(first=t.first, second=t.second, invalid=t.invalid, invalid_reasons=t.invalid_reasons)


def usage_out(u: Usage) -> UsageOut:
    counters = {f.name: getattr(u, f.name) for f in fields(u) if f.name != "cache"}
    c = u.cache
    return UsageOut(**counters, cache=CacheUsageOut(status=c.status, hits=c.hits, misses=c.misses,  # type: ignore[arg-type]
                                                    coalesced=c.coalesced, errors=c.errors))


def _vote_out(v: Vote, m: MatchResult, include_reasoning: bool) -> VoteOut:
    a, b = m.a, m.b
    winner = a if v.outcome is Outcome.first else b if v.outcome is Outcome.second else None
    return VoteOut(
        index=v.index,
        seed=v.seed,
        shown_order=[b, a] if v.swapped else [a, b],
        verdict=None if v.slot is None else f"Assistant {v.slot}",  # type: ignore[arg-type]
        status=v.outcome.value,
        winner=winner,
        invalid_reason=v.reason.value if v.reason else None,
        finish_reason=v.finish_reason,
        prompt_tokens=v.prompt_tokens,
        generated_tokens=v.generated_tokens,
        reasoning=v.output if include_reasoning else None,
        error=v.error,
        source=v.source,  # type: ignore[arg-type]
        p_first=v.p_first,
        forced=v.forced,
    )
