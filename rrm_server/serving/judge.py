"""The judging service behind the HTTP routes and the Python API: resolve a request once, run its
strategy over a ``MatchRunner``, and convert the domain result to its response once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from rrm_server.cache.store import VoteCache
from rrm_server.concurrency import first_error
from rrm_server.engine.base import EngineBusy, EngineClient, EngineUnavailable, ModelInfo
from rrm_server.errors import EngineFailure, Overloaded, Unavailable
from rrm_server.judging.match import MatchResult
from rrm_server.judging.strategies import RankOutcome, Score, UnrankedScore, get_strategy
from rrm_server.judging.votes import Tally
from rrm_server.ops import metrics
from rrm_server.prompt.answers import PreparedAnswer
from rrm_server.prompt.template import TOKENIZE_INLINE_CHARS, PromptBuilder
from rrm_server.protocol.judge import (
    PairwiseRequest,
    PairwiseResponse,
    RankRequest,
    RankResponse,
    RenderRequest,
    RenderResponse,
    VoteEvent,
)
from rrm_server.serving import wire
from rrm_server.serving.config import JudgeConfig
from rrm_server.serving.context import JudgeContext, RequestResolver
from rrm_server.serving.judgments import JudgmentRecorder
from rrm_server.serving.matches import Event, MatchRunner
from rrm_server.serving.vote import Prompts, Usage, VoteRunner


@dataclass
class Judged:
    """A judged request: its context, the strategy's outcome (in the caller's indices, degenerate
    answers last) and the engine work it caused."""

    context: JudgeContext
    outcome: RankOutcome
    usage: Usage


class JudgeServing:
    def __init__(self, config: JudgeConfig, engine: EngineClient, builder: PromptBuilder, model: ModelInfo,
                 cache: VoteCache, fingerprint: str, recorder: JudgmentRecorder | None = None) -> None:
        self.config = config
        self.engine = engine
        self.builder = builder
        self.model = model
        self.cache = cache
        self.fingerprint = fingerprint
        self.resolver = RequestResolver(config, builder, model, fingerprint)
        self.recorder = recorder or JudgmentRecorder(None)  # --record-judgments: what the wire got, kept

    # -- wire ----------------------------------------------------------------------------------
    async def pairwise(self, req: PairwiseRequest, request_id: str | None = None, arrived: float | None = None,
                       deadline: float | None = None) -> PairwiseResponse:
        judged = await self.judge(req, request_id or f"pairwise-{uuid.uuid4().hex}", arrived, deadline)
        resp = wire.pairwise_response(judged, self.model.name, req.seed)
        self.recorder.record(req, resp)
        return resp

    async def rank(self, req: RankRequest, request_id: str | None = None, arrived: float | None = None,
                   deadline: float | None = None) -> RankResponse:
        judged = await self.judge(req, request_id or f"rank-{uuid.uuid4().hex}", arrived, deadline)
        resp = wire.rank_response(judged, self.model.name, req.seed)
        self.recorder.record(req, resp)
        return resp

    async def stream(self, req: PairwiseRequest | RankRequest, arrived: float | None = None,
                     deadline: float | None = None) -> AsyncIterator[tuple[str, object]]:
        """A streamed request: checked and resolved here (bad input raises before any event), then
        its events as ("vote" | "match", record) while it is judged and ("result", response) last.
        Closing the iterator cancels the judging, which aborts its engine work."""
        pairwise = isinstance(req, PairwiseRequest)
        rid = f"{'pairwise' if pairwise else 'rank'}-{uuid.uuid4().hex}"
        ctx = await self.resolver.resolve(req, rid, arrived, deadline)
        return self._events(req, ctx, pairwise)

    async def _events(self, req: PairwiseRequest | RankRequest, ctx: JudgeContext,
                      pairwise: bool) -> AsyncIterator[tuple[str, object]]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        work = asyncio.ensure_future(self._judge(ctx, queue.put_nowait))

        def out(e: Event) -> tuple[str, object]:
            record = wire.event_out(e, ctx.live, ctx.include_reasoning)
            return ("vote" if isinstance(record, VoteEvent) else "match"), record

        getter: asyncio.Future[Event] | None = None
        try:
            while not work.done() or not queue.empty():
                if not queue.empty():
                    yield out(queue.get_nowait())
                    continue
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield out(getter.result())
                else:
                    getter.cancel()
            judged = work.result()  # the request's failure, if it failed
            resp = (wire.pairwise_response(judged, self.model.name, req.seed) if pairwise
                    else wire.rank_response(judged, self.model.name, req.seed))
            self.recorder.record(req, resp)
            yield "result", resp
        finally:
            if getter is not None:
                getter.cancel()
            if not work.done():  # the client went away: stop the work, and see it stopped
                work.cancel()
                await asyncio.wait({work})

    async def render(self, req: RenderRequest) -> RenderResponse:
        self.resolver.check_model(req.model)
        self.resolver.check_texts(req.query, req.responses)
        answers = await self.resolver.prepare(req, req.responses)
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
            answers=wire.answers_out(answers),
            judged=not any(a.degenerate for a in answers),
        )

    # -- domain --------------------------------------------------------------------------------
    async def judge(self, req: PairwiseRequest | RankRequest, request_id: str, arrived: float | None = None,
                    deadline: float | None = None) -> Judged:
        """Judge a request; the domain result (the reward service reads it as it is). ``arrived`` and
        ``deadline`` (event-loop clock): when it came in and when its caller stops waiting."""
        return await self._judge(await self.resolver.resolve(req, request_id, arrived, deadline))

    async def _judge(self, ctx: JudgeContext, events: Callable[[Event], None] | None = None) -> Judged:
        for a in ctx.answers:
            if a.degenerate:
                metrics.DEGENERATE_ANSWERS.labels(status=a.status.value).inc()
        if not self.engine.ready:  # it died a moment ago, or a pool lost its last replica
            raise Unavailable("engine_unavailable", "the judge engine is not running (it failed, or is "
                              "restarting); retry when GET /ready returns 200")
        runner = self.match_runner(ctx, events)
        try:
            if len(ctx.live) >= 2:
                outcome = await get_strategy(ctx.strategy).run(len(ctx.live), runner, ctx.options)
            else:
                outcome = RankOutcome(best=0 if ctx.live else None, ranking=list(range(len(ctx.live))),
                                      scores=[Score(0)] if ctx.live else [], matches=[])
        except Exception as e:  # an exception group from a strategy's task group, or one error
            cause = first_error(e)
            if isinstance(cause, EngineUnavailable):
                raise EngineFailure(f"the judge engine failed while this request ran: {cause}") from cause
            if isinstance(cause, EngineBusy):
                raise Overloaded(f"the judge engines are at capacity: {cause}; retry later",
                                 cause.retry_after) from cause
            raise cause from None
        outcome = with_degenerate(outcome, ctx.live, ctx.answers, ctx.strategy)
        metrics.record_usage(runner.usage, [v for m in outcome.matches for v in m.votes])
        return Judged(ctx, outcome, runner.usage)

    def match_runner(self, ctx: JudgeContext, events: Callable[[Event], None] | None = None) -> MatchRunner:
        votes = VoteRunner(self.engine, self.builder, self.model.max_model_len, ctx.votes, Usage(), ctx.deadline)
        return MatchRunner(votes=votes, prompts=Prompts(self.builder, ctx.query, ctx.texts), cache=self.cache,
                           codec=ctx.codec, scope=ctx.scope, plan=ctx.plan, request_id=ctx.request_id,
                           use_cache=ctx.use_cache, budget=ctx.budget(), events=events)


def with_degenerate(outcome: RankOutcome, live: list[int], answers: list[PreparedAnswer],
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
    scores: list[Score] = [replace(s, index=live[s.index]) for s in outcome.scores]
    scores += [UnrankedScore(i, answers[i].status.value) for i in dead]
    scores.sort(key=lambda s: s.index)
    return RankOutcome(
        best=None if outcome.best is None else live[outcome.best],
        ranking=[live[i] for i in outcome.ranking] + dead,
        scores=scores,
        matches=matches,
    )
