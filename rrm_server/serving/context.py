"""A judging request validated and resolved once (``JudgeContext``): limits, defaults, what the
judge reads of each response, whether the longest comparison fits, and the cache scope. Every
later step reads the context, never the request's raw fields."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from rrm_server.cache.keys import comparison_scope
from rrm_server.engine.base import ModelInfo
from rrm_server.errors import ContextLengthExceeded, InvalidRequest
from rrm_server.judging.deadlines import DeadlinePlan, check_deadline_s
from rrm_server.judging.early_exit import EarlyExit
from rrm_server.judging.strategies import StrategyOptions
from rrm_server.judging.votes import OrderMode
from rrm_server.prompt.answers import AnswerPolicy, PreparedAnswer, prepare_answer
from rrm_server.prompt.template import TOKENIZE_INLINE_CHARS, PromptBuilder
from rrm_server.protocol.judge import AnswerFields, PairwiseRequest, RankRequest, SamplingFields
from rrm_server.serving.config import JudgeConfig
from rrm_server.serving.matches import Budget, JudgmentCodec, MatchPlan
from rrm_server.serving.vote import Sampling, VoteOptions

# A field can tokenize to a few more tokens than its bytes at its boundaries (prefix markers).
FIELD_SLACK_TOKENS = 8


@dataclass(frozen=True)
class JudgeContext:
    request_id: str
    strategy: str  # "pairwise", "elo" or "knockout"
    options: StrategyOptions
    query: str
    answers: list[PreparedAnswer]  # one per response, in request order
    live: list[int]  # the responses the engine judges (degenerate answers lose without a call)
    plan: MatchPlan
    votes: VoteOptions
    codec: JudgmentCodec
    scope: str  # the cache key's prefix: everything besides the texts and the seed that decides a vote
    use_cache: bool
    include_reasoning: bool
    budget_engine_calls: int | None = None
    budget_tokens: int | None = None
    deadline: DeadlinePlan | None = None  # on the event loop's clock

    @property
    def texts(self) -> list[str]:
        """What the engine is shown of each live response."""
        return [self.answers[i].text for i in self.live]

    def budget(self) -> Budget:
        return Budget(self.budget_engine_calls, self.budget_tokens)


class RequestResolver:
    """Validates requests against this server's limits and model, and resolves their defaults."""

    def __init__(self, config: JudgeConfig, builder: PromptBuilder, model: ModelInfo, fingerprint: str) -> None:
        self.config = config
        self.builder = builder
        self.model = model
        self.fingerprint = fingerprint

    async def resolve(self, req: PairwiseRequest | RankRequest, rid: str, arrived: float | None = None,
                      deadline: float | None = None) -> JudgeContext:
        """``arrived``: when the request came in; ``deadline``: when its caller stops waiting, if it
        said so outside the body (both on the event loop's clock; unset: now, none)."""
        options = self._strategy_options(req)
        self.check_options(req)
        early_exit = self._early_exit(req)
        plan = self._deadline(req, arrived, deadline)
        self.check_inputs(req.query, req.responses)
        sampling = self._sampling(req)
        answers = await self.prepare(req, req.responses)
        live = [i for i, a in enumerate(answers) if not a.degenerate]
        texts = [answers[i].text for i in live]
        if len(texts) >= 2 and not self._surely_fits(req.query, texts, req.max_tokens):
            # Exact per-field token counts, for a precise error (and the rare close call).
            await self._check_lengths(req.query, texts, req.max_tokens, live)
        c = self.config
        parser = req.verdict_parser or c.verdict_parser
        # Unset: the server's default; an explicit null: no thinking budget.
        budget = req.max_thinking_tokens if "max_thinking_tokens" in req.model_fields_set else c.max_thinking_tokens
        rescue = req.rescue_invalid if req.rescue_invalid is not None else c.rescue_invalid
        return JudgeContext(
            request_id=rid,
            strategy="pairwise" if isinstance(req, PairwiseRequest) else req.method,
            options=options,
            query=req.query,
            answers=answers,
            live=live,
            plan=MatchPlan(order=self._order(req), seed=options.seed, early_stop=req.early_stop,
                           min_votes=req.min_votes, confidence=req.confidence),
            votes=VoteOptions(sampling=sampling, verdict_parser=parser, verdict_probs=req.verdict_probs,
                              max_thinking_tokens=budget, rescue_invalid=rescue, early_exit=early_exit),
            codec=JudgmentCodec(valid_ttl=c.cache_ttl, invalid_ttl=c.cache_invalid_ttl,
                                store_output=c.cache_store_reasoning, need_output=req.include_reasoning,
                                need_probability=req.verdict_probs),
            scope=self._scope(sampling, budget, rescue, parser, early_exit),
            use_cache=req.cache and c.cache_enabled,
            include_reasoning=req.include_reasoning,
            budget_engine_calls=getattr(req, "budget_engine_calls", None),  # rank only
            budget_tokens=getattr(req, "budget_tokens", None),
            deadline=plan,
        )

    def check_inputs(self, query: str, responses: Sequence[str]) -> None:
        """The texts and their number, against this server's limits."""
        self.check_texts(query, responses)
        if len(responses) > self.config.max_responses:
            raise InvalidRequest(f"{len(responses)} responses given; this server accepts at most "
                                 f"{self.config.max_responses} per request", "responses")

    def check_options(self, req: SamplingFields) -> None:
        """What applies to every comparison of the request: the model, votes, stopping."""
        c = self.config
        self.check_model(getattr(req, "model", None))
        if (req.min_votes is None) != (req.confidence is None):
            raise InvalidRequest("min_votes and confidence go together: give both or neither",
                                 "min_votes" if req.min_votes is None else "confidence")
        if req.votes > c.max_votes:
            raise InvalidRequest(f"votes={req.votes} is above this server's maximum of {c.max_votes}", "votes")

    def _early_exit(self, req: SamplingFields) -> EarlyExit | None:
        c = self.config
        if not (req.early_exit if req.early_exit is not None else c.early_exit):
            for name in ("exit_confidence", "probe_every"):
                if getattr(req, name) is not None:
                    raise InvalidRequest(f"{name} applies to early exit, which is off for this request "
                                         "(set early_exit: true)", name)
            return None
        try:
            return EarlyExit(exit_confidence=req.exit_confidence or c.exit_confidence,
                             probe_every=req.probe_every or c.probe_every, transition_words=c.transition_words)
        except ValueError as e:  # the message starts with the field it is about
            raise InvalidRequest(str(e), str(e).split(" ", 1)[0].rstrip(":")) from None

    def _deadline(self, req: SamplingFields, arrived: float | None, deadline: float | None) -> DeadlinePlan | None:
        """The earliest of the body's deadline_s, the caller's other deadline and the server's
        --request-timeout; closing starts ``deadline_margin`` before it (at most a quarter of it)."""
        c = self.config
        start = arrived if arrived is not None else asyncio.get_running_loop().time()
        ends = [] if deadline is None else [deadline]
        if req.deadline_s is not None:
            try:
                ends.append(start + check_deadline_s(req.deadline_s, c.max_deadline))
            except ValueError as e:
                raise InvalidRequest(str(e), "deadline_s") from None
        if c.request_timeout is not None:
            ends.append(start + c.request_timeout)
        if not ends:
            return None
        end = min(ends)
        return DeadlinePlan(end, min(c.deadline_margin, max(0.0, end - start) / 4))

    def _strategy_options(self, req: PairwiseRequest | RankRequest) -> StrategyOptions:
        seed = req.seed if req.seed is not None else 0
        if isinstance(req, PairwiseRequest):
            return StrategyOptions(votes=req.votes, seed=seed)
        if req.adaptive_votes is not None and not req.votes <= req.adaptive_votes <= self.config.max_votes:
            raise InvalidRequest(f"adaptive_votes={req.adaptive_votes} must be between votes={req.votes} and this "
                                 f"server's maximum of {self.config.max_votes}", "adaptive_votes")
        if req.opponents is not None:
            if req.method != "elo":
                raise InvalidRequest("opponents applies to method=elo (a sparse round robin)", "opponents")
            if req.opponents >= len(req.responses):
                raise InvalidRequest(f"opponents={req.opponents} must be below the number of responses "
                                     f"({len(req.responses)}): each response meets that many others", "opponents")
        return StrategyOptions(votes=req.votes, seed=seed, rating=req.rating, invalid_matches=req.invalid_matches,
                               adaptive_votes=req.adaptive_votes, target_confidence=req.target_confidence,
                               opponents=req.opponents)

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.model.name:
            raise InvalidRequest(f"model {model!r} is not served here; this server serves {self.model.name!r}",
                                 "model")

    def check_texts(self, query: str, responses: Sequence[str]) -> None:
        limit = self.config.max_text_chars
        if len(query) > limit:
            raise InvalidRequest(f"query is {len(query)} characters; the limit is {limit}", "query")
        for i, r in enumerate(responses):
            if len(r) > limit:
                raise InvalidRequest(f"responses[{i}] is {len(r)} characters; the limit is {limit}",
                                     f"responses.{i}")

    async def prepare(self, req: AnswerFields, responses: Sequence[str]) -> list[PreparedAnswer]:
        """What the judge reads of each response (reasoning removed, tail kept), or degenerate."""
        c = self.config
        tags = req.reasoning_tags or c.reasoning_tags
        policy = AnswerPolicy(strip_reasoning=req.strip_reasoning or c.strip_reasoning, open_tag=tags[0],
                              close_tag=tags[1], max_response_tokens=req.max_response_tokens or c.max_response_tokens)
        starts = self.builder.token_starts
        if policy.max_response_tokens is not None and sum(map(len, responses)) > TOKENIZE_INLINE_CHARS:
            return await asyncio.to_thread(lambda: [prepare_answer(r, policy, starts) for r in responses])
        return [prepare_answer(r, policy, starts) for r in responses]

    @staticmethod
    def _order(req: SamplingFields) -> OrderMode:
        """Unset: both orders once there are two votes to balance (position bias), else a seeded coin."""
        if req.order is not None:
            return req.order
        return "both" if req.votes >= 2 else "random"

    def _scope(self, sampling: Sampling, max_thinking_tokens: int | None, rescue_invalid: bool,
               parser: str = "lenient", early_exit: EarlyExit | None = None) -> str:
        exits = {} if early_exit is None else {"early_exit": (early_exit.exit_confidence, early_exit.probe_every,
                                                               early_exit.transition_words, early_exit.min_tokens)}
        return comparison_scope(
            model=self.model.name,
            fingerprint=self.fingerprint,
            max_model_len=self.model.max_model_len,
            prompt=self.builder.spec.version,
            reasoning=(self.builder.opens_reasoning, self.builder.reasoning_close_tag),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            max_thinking_tokens=max_thinking_tokens,
            rescue_invalid=rescue_invalid,
            # Only a non-default parser enters the key, so votes cached before it existed stay valid.
            **({} if parser == "lenient" else {"verdict_parser": parser}),
            **exits,
        )

    def _sampling(self, req: SamplingFields) -> Sampling:
        c = self.config
        limit = c.max_tokens_limit or self.model.max_model_len
        if req.max_tokens is None:
            # Like vLLM's OpenAI server, an unset max_tokens is cut to what fits after each prompt
            # (per vote); the value here stays request-independent for the cache key.
            max_tokens = min(c.max_tokens, limit)
        elif req.max_tokens > limit:
            raise InvalidRequest(f"max_tokens={req.max_tokens} is above this server's limit of {limit}",
                                 "max_tokens")
        else:
            max_tokens = req.max_tokens
        return Sampling(
            temperature=req.temperature if req.temperature is not None else c.temperature,
            top_p=req.top_p if req.top_p is not None else c.top_p,
            max_tokens=max_tokens,
        )

    def _surely_fits(self, query: str, responses: Sequence[str], max_tokens: int | None) -> bool:
        """A bound without tokenizing (tokenizing every text twice was the gateway's largest cost):
        a token covers at least one UTF-8 byte, plus a few for prefix markers and field boundaries.
        Texts that spell control tokens (escaped piecewise) take the exact path."""
        if self.builder.spells_control_token(query, *responses):
            return False
        longest = sorted((len(r.encode()) for r in responses), reverse=True)[:2]
        bound = self.builder.template_tokens + len(query.encode()) + sum(longest) + 3 * FIELD_SLACK_TOKENS
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
        for i in order:
            if len(top) == 2 and top[1][0] >= len(responses[i].encode()) + FIELD_SLACK_TOKENS:
                break  # a token covers at least a byte: no later response can be longer than these
            top = sorted([*top, (await count(responses[i]), i)], reverse=True)[:2]
            if len(top) == 2 and base + top[0][0] + top[1][0] + (max_tokens or 1) > self.model.max_model_len:
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
