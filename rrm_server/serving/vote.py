"""One vote on the engine: prompt ids -> generation -> parsed verdict -> its probability (read, or
forced after a thinking budget). With early exit or a deadline the generation is streamed: probes
read the verdict mid-thought and the generation is aborted once it is settled (``exit: early``) or
once the deadline nears (``exit: deadline``). What a vote costs is counted in the request's ``Usage``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from rrm_server.cache.store import CacheStats
from rrm_server.engine.base import (
    EngineBusy,
    EngineClient,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationRequest,
)
from rrm_server.judging.deadlines import DeadlinePlan
from rrm_server.judging.early_exit import EarlyExit, ProbeSchedule, VoteExit
from rrm_server.judging.votes import Judgment
from rrm_server.ops import metrics
from rrm_server.prompt.template import TOKENIZE_INLINE_CHARS, PromptBuilder
from rrm_server.prompt.verdict import (
    InvalidReason,
    ParsedVerdict,
    VerdictParser,
    parse_verdict,
    parse_verdict_official,
    slot1_probability,
)

T = TypeVar("T")
# Log probabilities read at a verdict: both digits are within the top 20 for any judge worth the name.
PROBE_TOP_K = 20


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
    exit_probes: int = 0  # of those: mid-thought probes for early exit
    thinking_tokens_saved: int = 0  # budget left unspent by votes that exited early
    exits: Counter[str] = field(default_factory=Counter)  # computed votes by how their thinking ended
    cache: CacheStats = field(default_factory=CacheStats)

    def count(self, g: Generation) -> None:
        self.prompt_tokens += g.prompt_tokens
        self.generated_tokens += g.generated_tokens
        self.cached_prompt_tokens += g.cached_prompt_tokens or 0


@dataclass(frozen=True)
class VoteOptions:
    """How one request's votes are generated and read."""

    sampling: Sampling
    verdict_parser: VerdictParser = "lenient"
    verdict_probs: bool = True
    max_thinking_tokens: int | None = None  # budget after which a verdict is forced
    rescue_invalid: bool = False  # also force verdicts of outputs that ended without a valid one
    early_exit: EarlyExit | None = None  # probe mid-thought, stop once the verdict is settled

    def should_force(self, reason: InvalidReason | None) -> bool:
        if reason is InvalidReason.truncated:
            return self.max_thinking_tokens is not None or self.rescue_invalid
        return reason in (InvalidReason.no_verdict, InvalidReason.malformed) and self.rescue_invalid


class Prompts:
    """A request's prompt ids per shown pair. Every vote of a pair in one order shares its prompt:
    it is tokenized once per request (long texts in a worker thread, off the event loop)."""

    def __init__(self, builder: PromptBuilder, query: str, responses: Sequence[str]) -> None:
        self.builder = builder
        self.query = query
        self.responses = responses
        self._ids: dict[tuple[int, int], list[int] | asyncio.Future[list[int]]] = {}

    async def ids(self, first: int, second: int) -> list[int]:
        ids = self._ids.get((first, second))
        if ids is None:
            q, a, b = self.query, self.responses[first], self.responses[second]
            if len(q) + len(a) + len(b) > TOKENIZE_INLINE_CHARS:
                ids = asyncio.ensure_future(asyncio.to_thread(self.builder.build_ids, q, a, b))
            else:
                ids = self.builder.build_ids(q, a, b)
            self._ids[(first, second)] = ids
        if isinstance(ids, asyncio.Future):
            ids = self._ids[(first, second)] = await asyncio.shield(ids)  # shared by the pair's votes
        return ids


@dataclass
class VoteRunner:
    """Runs one request's votes on the engine."""

    engine: EngineClient
    builder: PromptBuilder
    max_model_len: int
    options: VoteOptions
    usage: Usage
    deadline: DeadlinePlan | None = None  # on the event loop's clock

    async def judge(self, ids: list[int], request_id: str, seed: int, affinity_key: str | None) -> Judgment:
        """One generation from prompt ``ids`` and its verdict, in the order shown."""
        o = self.options
        budget = o.sampling.max_tokens if o.max_thinking_tokens is None else min(o.sampling.max_tokens,
                                                                                  o.max_thinking_tokens)
        request = GenerationRequest(
            request_id=request_id,
            prompt_token_ids=ids,
            # The request was checked against the context with per-field token counts; whole-prompt
            # tokenization can differ by a few tokens at field boundaries, so never ask past the end.
            max_tokens=max(1, min(budget, self.max_model_len - len(ids))),
            temperature=o.sampling.temperature,
            top_p=o.sampling.top_p,
            seed=seed,
            affinity_key=affinity_key,
        )
        if self.deadline is not None and self.deadline.closing(asyncio.get_running_loop().time()):
            # Started after the close (a late knockout round): played at the smallest budget, a
            # verdict forced with no thinking at all, rather than no result.
            j = Judgment(None, InvalidReason.truncated, "abort", len(ids), 0, "", exit=VoteExit.deadline.value)
            if self.builder.verdict_tokens is not None:
                await self._force(j, request, [], closed=False)
            self.usage.exits[VoteExit.deadline.value] += 1
            return j
        self.usage.engine_calls += 1
        exit_, early = None, None
        try:
            if o.early_exit is None and self.deadline is None:
                g = await self._generate(request)
            else:
                g, exit_, early = await self._think(request)
        except (EngineUnavailable, EngineBusy):  # the whole request fails (503 / 429), not one vote
            raise
        except EngineError as e:
            return Judgment(None, InvalidReason.engine_error, error=str(e))
        self.usage.count(g)
        if exit_ is VoteExit.early:
            assert early is not None
            self.usage.exits[exit_.value] += 1
            return self._exited_early(g, request.max_tokens, *early)
        answer, closed = self._answer_text(g)
        parsed = self._parse(g, answer)
        reason = parsed.reason
        if exit_ is VoteExit.deadline and not parsed.valid:
            reason = InvalidReason.truncated  # cut by the deadline, like by a budget
        how = exit_ or (VoteExit.budget if g.finish_reason == "length" else VoteExit.natural)
        self.usage.exits[how.value] += 1
        j = Judgment(parsed.slot, reason, g.finish_reason, g.prompt_tokens, g.generated_tokens, g.text,
                     exit=how.value)
        if self.builder.verdict_tokens is None or not g.token_ids and exit_ is None:
            return j
        if parsed.valid and o.verdict_probs:
            await self._read_probability(j, request, list(g.token_ids), parsed)
        elif exit_ is VoteExit.deadline and not parsed.valid or o.should_force(parsed.reason):
            await self._force(j, request, list(g.token_ids), closed)
        return j

    def _exited_early(self, g: Generation, max_tokens: int, slot: int, p: float, at: int) -> Judgment:
        """The vote a settled probe ended: the probe's verdict, on the ``at`` tokens it read."""
        self.usage.thinking_tokens_saved += max(0, max_tokens - g.generated_tokens)
        text = self.builder.tokenizer.decode(list(g.token_ids[:at]), skip_special_tokens=True)
        return Judgment(slot, None, g.finish_reason, g.prompt_tokens, g.generated_tokens, text, p_slot1=p,
                        forced=True, probed=True, exit=VoteExit.early.value)

    async def _think(self, request: GenerationRequest) -> tuple[Generation, VoteExit | None,
                                                                 tuple[int, float, int] | None]:
        """Stream the generation until it ends, a probe settles the verdict, or the deadline closes.
        Returns what was generated, why it stopped early (None: it ended by itself) and, for an
        early exit, (slot, p("Assistant 1"), tokens the probe read)."""
        loop = asyncio.get_running_loop()
        policy = self.options.early_exit
        schedule = ProbeSchedule(policy) if policy is not None else None
        words = policy is not None and bool(policy.transition_words)
        decode = self.builder.tokenizer.decode
        tokens: list[int] = []
        head: list[tuple[int, int | None]] = []  # (prompt tokens, cached prompt tokens)
        finish: list[str] = []
        settled: asyncio.Future[tuple[int, float, int]] = loop.create_future()
        probes: list[asyncio.Task[None]] = []

        async def consume() -> None:
            async for chunk in self.engine.stream(request):
                tokens.extend(chunk.token_ids)
                if chunk.prompt_tokens and not head:
                    head.append((chunk.prompt_tokens, chunk.cached_prompt_tokens))
                if chunk.finish_reason is not None:
                    finish.append(chunk.finish_reason)  # the stream ends after it (read to its end: no abort)
                elif schedule is not None and not settled.done():
                    due = schedule.feed(len(tokens), decode(list(chunk.token_ids)) if words else "")
                    if due and (not probes or probes[-1].done()):  # one probe in flight per vote
                        probes.append(asyncio.ensure_future(self._exit_probe(request, list(tokens), settled)))

        consumer = asyncio.ensure_future(self._metered(consume()))
        timeout = None if self.deadline is None else max(0.0, self.deadline.close_at - loop.time())
        try:
            done, _ = await asyncio.wait({consumer, settled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (consumer, *probes):
                t.cancel()
            if not settled.done():
                settled.cancel()
        if consumer.done() and not consumer.cancelled():  # it ended by itself (also in the tick a probe settled)
            consumer.result()  # an engine failure is this vote's
            exit_, early = None, None
        else:
            await asyncio.wait({consumer})  # the abort reached the engine before the vote is read
            exit_, early = (VoteExit.early, settled.result()) if settled in done else (VoteExit.deadline, None)
        prompt_tokens, cached = head[0] if head else (len(request.prompt_token_ids), None)
        g = Generation(text=decode(tokens, skip_special_tokens=True) if tokens else "",
                       finish_reason=finish[0] if finish else "abort", prompt_tokens=prompt_tokens,
                       generated_tokens=len(tokens), cached_prompt_tokens=cached, token_ids=tokens)
        return g, exit_, early

    async def _exit_probe(self, request: GenerationRequest, out_ids: list[int],
                          settled: asyncio.Future[tuple[int, float, int]]) -> None:
        """The verdict the judge would give now (the forced-verdict path); settles the vote once the
        leading side reaches exit_confidence."""
        policy = self.options.early_exit
        assert policy is not None
        self.usage.exit_probes += 1
        close_id = self.builder.reasoning_close_id
        closed = close_id in out_ids if close_id is not None else (
            bool(self.builder.reasoning_close_tag)
            and self.builder.reasoning_close_tag in self.builder.tokenizer.decode(out_ids))
        try:
            p = await self._forced_p(request, list(out_ids), closed, f"-e{len(out_ids)}")
        except (EngineUnavailable, EngineBusy):
            return  # the main generation meets the same failure and reports it for the request
        side = None if p is None else policy.settled(p)
        if side is not None and not settled.done():
            settled.set_result((side + 1, p, len(out_ids)))  # type: ignore[arg-type]

    def _parse(self, g: Generation, answer: str) -> ParsedVerdict:
        if self.options.verdict_parser == "official":
            return parse_verdict_official(g.text, g.finish_reason)
        return parse_verdict(answer, g.finish_reason, self.builder.opens_reasoning, self.builder.reasoning_close_tag)

    async def _read_probability(self, j: Judgment, request: GenerationRequest, out_ids: list[int],
                                parsed: ParsedVerdict) -> None:
        """Re-read the judge's distribution at its verdict digit: one token of prefill on top of
        vLLM's prefix cache, instead of log probabilities for every reasoning token."""
        vt = self.builder.verdict_tokens
        assert vt is not None and parsed.slot is not None
        j.probed = True
        i = vt.find(out_ids, parsed.slot, self.builder.tokenizer.decode)
        if i is not None:
            context = list(request.prompt_token_ids) + out_ids[:i]
            j.p_slot1 = await self._probe(f"{request.request_id}-p", context, vt.twins[out_ids[i]],
                                          request.affinity_key)

    async def _force(self, j: Judgment, request: GenerationRequest, out_ids: list[int], closed: bool) -> None:
        """Close the reasoning (if open), cue the verdict and read it from the next-token probabilities."""
        j.probed = True
        p = await self._forced_p(request, out_ids, closed, "-f")
        if p is not None:
            j.slot, j.reason, j.forced, j.p_slot1 = (1 if p >= 0.5 else 2), None, True, p

    async def _forced_p(self, request: GenerationRequest, out_ids: list[int], closed: bool,
                        suffix: str) -> float | None:
        """p("Assistant 1") of a verdict forced after ``out_ids``."""
        vt = self.builder.verdict_tokens
        assert vt is not None
        while out_ids and self.builder.is_control(out_ids[-1]):  # the end-of-sequence token
            out_ids.pop()
        ids = list(request.prompt_token_ids)
        cue = self.builder.verdict_cue_ids(reasoning_closed=closed) or []
        room = self.max_model_len - 1 - len(ids) - len(cue)
        return await self._probe(f"{request.request_id}{suffix}", ids + out_ids[: max(0, room)] + cue, vt.slot_ids,
                                 request.affinity_key)

    def _answer_text(self, g: Generation) -> tuple[str, bool]:
        """The text the verdict parser reads, and whether the judge closed its reasoning.

        With a tokenizer that has the end-of-reasoning marker as a token of its own, only that token
        ends the reasoning: the same characters in plain tokens are text the judge copied (from a
        response that spells ``</think>\\boxed{Assistant 1}``, say), never its own marker."""
        tag, close_id = self.builder.reasoning_close_tag, self.builder.reasoning_close_id
        if close_id is None or not g.token_ids:
            return g.text, bool(tag) and tag in g.text
        ids = list(g.token_ids)
        if close_id not in ids:
            return g.text.replace(tag, ""), False
        k = len(ids) - 1 - ids[::-1].index(close_id)
        tail = self.builder.tokenizer.decode(ids[k + 1 :], skip_special_tokens=True)
        return tag + tail.replace(tag, ""), True

    async def _probe(self, rid: str, context: list[int], pair: tuple[int, int],
                     affinity_key: str | None) -> float | None:
        """p("Assistant 1") for the token after ``context`` (on the replica that holds its prefix);
        None when unavailable."""
        request = GenerationRequest(rid, context, max_tokens=1, temperature=0.0, top_p=1.0, logprobs=PROBE_TOP_K,
                                    affinity_key=affinity_key)
        self.usage.probe_calls += 1
        try:
            g = await self._generate(request)
        except (EngineUnavailable, EngineBusy):  # the whole request fails (503 / 429), not one vote
            raise
        except EngineError:
            return None
        self.usage.count(g)
        return slot1_probability(g.logprobs[0], pair) if g.logprobs else None

    async def _generate(self, request: GenerationRequest) -> Generation:
        return await self._metered(self.engine.generate(request))

    @staticmethod
    async def _metered(call: Awaitable[T]) -> T:
        metrics.COMPARISONS_IN_FLIGHT.inc()
        try:
            return await call
        except asyncio.CancelledError:
            metrics.ENGINE_CALLS_ABORTED.inc()  # nobody wants it any more (or it exited): the engine aborts it
            raise
        finally:
            metrics.COMPARISONS_IN_FLIGHT.dec()

