"""Reward logic: pairwise verdicts turned into one scalar per sample, for RL trainers and best-of-N.

It reads the judging service's domain result (``Judged``), never its wire response."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from rrm_server.concurrency import gather_all
from rrm_server.errors import InvalidRequest
from rrm_server.judging.strategies import KnockoutScore
from rrm_server.prompt.answers import PreparedAnswer
from rrm_server.protocol.judge import PairwiseRequest, RankRequest, SamplingFields
from rrm_server.protocol.rewards import (
    GetRewardRequest,
    GetRewardResponse,
    GroupRewards,
    RewardGroup,
    RewardsRequest,
    RewardsResponse,
)
from rrm_server.rewards.groups import GroupCollector, SampleScore
from rrm_server.rewards.scoring import (
    NEUTRAL_SCORE,
    degenerate_reward,
    knockout_group_scores,
    reward_from_score,
    round_robin_scores,
    score_from_reward,
    win_rate,
)
from rrm_server.rewards.templates import prompt_to_text, response_to_text, split_query
from rrm_server.serving import wire
from rrm_server.serving.config import RewardConfig
from rrm_server.serving.judge import Judged, JudgeServing
from rrm_server.serving.vote import Usage

_SAMPLING = set(SamplingFields.model_fields)


class RewardServing:
    def __init__(self, config: RewardConfig, judge: JudgeServing) -> None:
        self.config = config
        self.judge = judge
        self.groups = GroupCollector(self._rank_group, config.group_size, config.group_wait, config.group_deadline)

    # -- /v1/rewards ----------------------------------------------------------------------------
    async def rewards(self, req: RewardsRequest, arrived: float | None = None,
                      deadline: float | None = None) -> RewardsResponse:
        rid = f"rewards-{uuid.uuid4().hex}"
        if len(req.groups) > self.config.max_groups:
            raise InvalidRequest(f"{len(req.groups)} groups given; this server accepts at most "
                                 f"{self.config.max_groups} per request", "groups")
        sampling = req.model_dump(include=_SAMPLING, exclude_unset=True)  # unset stays unset: server defaults
        requests = [self._group_request(g, sampling, req.model) for g in req.groups]
        # Validate every group before any engine work (groups run concurrently: a later group's error
        # would leave earlier groups' work running for nothing), naming the group's own field.
        self.judge.resolver.check_options(requests[0])
        most = self.judge.config.max_responses
        for i, r in enumerate(requests):
            if len(r.responses) > most:
                raise InvalidRequest(f"groups[{i}] has {len(r.responses)} responses; the limit is {most}",
                                     f"groups.{i}.responses")
            try:
                self.judge.resolver.check_texts(r.query, r.responses)
            except InvalidRequest as e:
                raise InvalidRequest(f"groups[{i}].{e.message}", f"groups.{i}.{e.param}") from None
        results = await gather_all(self._group(r, f"{rid}-{i}", arrived, deadline) for i, r in enumerate(requests))
        return RewardsResponse(id=rid, model=self.judge.model.name, groups=list(results))

    @staticmethod
    def _group_request(g: RewardGroup, sampling: dict, model: str | None) -> RankRequest:
        fields = dict(query=g.query, responses=g.responses, method=g.method, model=model,
                      opponents=_opponents(g.opponents, len(g.responses)), **sampling)
        # A group of one is never ranked (its reward is neutral, or a degenerate answer's): no
        # two-response minimum for it. Every field was validated as part of the RewardsRequest.
        return RankRequest(**fields) if len(g.responses) >= 2 else RankRequest.model_construct(**fields)

    async def _group(self, req: RankRequest, rid: str, arrived: float | None, deadline: float | None) -> GroupRewards:
        if len(req.responses) == 1:  # nothing to compare: alone (neutral), or degenerate
            answers = await self.judge.resolver.prepare(req, req.responses)
            return self._group_rewards([None], answers, [0], None, Usage())
        judged = await self.judge.judge(req, rid, arrived, deadline)
        o = judged.outcome
        return self._group_rewards(group_scores(judged), judged.context.answers, o.ranking, o.best, judged.usage)

    def _group_rewards(self, judged: list[float | None], answers: list[PreparedAnswer], ranking: list[int],
                       best: int | None, usage: Usage) -> GroupRewards:
        scores = self._with_degenerate(judged, answers)
        return GroupRewards(rewards=[reward_from_score(s) for s, _ in scores], scores=[s for s, _ in scores],
                            neutral=[n for _, n in scores], empty=[a.degenerate for a in answers],
                            ranking=ranking, best=best, answers=wire.answers_out(answers), usage=wire.usage_out(usage))

    def _with_degenerate(self, scores: list[float | None],
                         answers: list[PreparedAnswer]) -> list[tuple[float, bool]]:
        """(score, neutral) per response: judged, neutral for lack of a result, or a degenerate answer's
        lowest score (the one rule for every reward path)."""
        real = [NEUTRAL_SCORE if s is None else s for s, a in zip(scores, answers) if not a.degenerate]
        low = score_from_reward(degenerate_reward(self.config.empty_response_reward,
                                                  [reward_from_score(s) for s in real]))
        return [(low, False) if a.degenerate else (NEUTRAL_SCORE, True) if s is None else (s, False)
                for s, a in zip(scores, answers)]

    # -- /get_reward (OpenRLHF) -----------------------------------------------------------------
    async def get_reward(self, req: GetRewardRequest, arrived: float | None = None,
                         deadline: float | None = None) -> GetRewardResponse:
        """``arrived``, ``deadline``: event-loop clock; reference mode also stops at --reward-deadline."""
        samples = self._samples(req)
        mode = req.mode or self.config.mode
        if mode == "reference":
            labels = self._labels(req)
            start = arrived if arrived is not None else asyncio.get_running_loop().time()
            ends = [e for e in (deadline, None if self.config.deadline is None else start + self.config.deadline)
                    if e is not None]
            end = min(ends) if ends else None
            results = await gather_all(self._against_reference(q, r, label, start, end)
                                       for (q, r), label in zip(samples, labels))
        else:
            results = await asyncio.gather(*(self.groups.submit(p, q, r) for p, (q, r) in zip(req.prompts, samples)))
            if any(r.reason == "deadline" for r in results):
                results = await self._deadline_rule(results, [r for _, r in samples])
        return GetRewardResponse(
            rewards=[reward_from_score(s.score) for s in results],
            scores=[s.score for s in results],
            extra_logs={
                "rrm_neutral": [float(s.neutral) for s in results],
                "rrm_empty": [float(s.empty) for s in results],
                "rrm_valid_votes": [float(s.valid_votes) for s in results],
                "rrm_invalid_votes": [float(s.invalid_votes) for s in results],
                "rrm_group_size": [float(s.group_size) for s in results],
            },
        )

    def _samples(self, req: GetRewardRequest) -> list[tuple[str, str]]:
        """(question, response) per sample, each checked naming this request's own fields before any
        joins work: the texts the judge reads are derived (template stripped), so the judge's own
        checks would name fields this request does not have, or, in group mode, fail every sibling."""
        n = len(req.query)
        if len(req.prompts) != n:
            raise InvalidRequest(f"prompts has {len(req.prompts)} items but query has {n}; they must align",
                                 "prompts")
        if req.labels is not None and len(req.labels) != n:
            raise InvalidRequest(f"labels has {len(req.labels)} items but query has {n}; they must align", "labels")
        tmpl, limit = self.config.template, self.judge.config.max_text_chars
        samples = []
        for i, (q, p) in enumerate(zip(req.query, req.prompts)):
            question = prompt_to_text(p, tmpl)
            if not question.strip():
                raise InvalidRequest(f"prompts[{i}] has no question for the judge (empty, or only chat-template "
                                     "tokens)", f"prompts.{i}")
            if len(question) > limit:
                raise InvalidRequest(f"the question of prompts[{i}] is {len(question)} characters; the limit is "
                                     f"{limit}", f"prompts.{i}")
            response = split_query(q, p)
            if response is None:
                raise InvalidRequest(f"query[{i}] does not start with prompts[{i}]: the response is recovered "
                                     "as query minus its prompt prefix", f"query.{i}")
            text = response_to_text(response, tmpl)
            if len(text) > limit:
                raise InvalidRequest(f"the response in query[{i}] is {len(text)} characters; the limit is "
                                     f"{limit}", f"query.{i}")
            samples.append((question, text))
        return samples

    def _labels(self, req: GetRewardRequest) -> list[str]:
        if req.labels is None:
            raise InvalidRequest("reference mode needs labels: the reference answer of each sample", "labels")
        limit = self.judge.config.max_text_chars
        for i, label in enumerate(req.labels):
            if not isinstance(label, str) or not label.strip():
                raise InvalidRequest(f"labels[{i}] must be a non-empty reference answer (a string)", f"labels.{i}")
            if len(label) > limit:
                raise InvalidRequest(f"labels[{i}] is {len(label)} characters; the limit is {limit}", f"labels.{i}")
        return req.labels  # type: ignore[return-value]

    async def _deadline_rule(self, results: list[SampleScore], responses: list[str]) -> list[SampleScore]:
        """A group that missed its deadline has no judged result, but a degenerate sample still gets
        its rule (capped by the real samples' neutral score), never the neutral one."""
        answers = await self.judge.resolver.prepare(RankRequest.model_construct(), responses)
        rule = self._with_degenerate([None] * len(responses), answers)
        return [replace(r, score=score, neutral=False, reason=a.status.value, empty=True)
                if r.reason == "deadline" and a.degenerate else r
                for r, a, (score, _) in zip(results, answers, rule)]

    async def _against_reference(self, question: str, response: str, reference: str, arrived: float | None = None,
                                 deadline: float | None = None) -> SampleScore:
        judged = await self.judge.judge(PairwiseRequest(
            query=question, responses=[response, reference], votes=self.config.votes, order="both",
            early_stop=False), f"reward-{uuid.uuid4().hex}", arrived, deadline)
        answers = judged.context.answers
        if answers[0].degenerate:  # decided without an engine call
            (score, _), _ = self._with_degenerate([None, None], answers)
            return SampleScore(score, False, answers[0].status.value, 1, empty=True)
        match = judged.outcome.matches[0]
        t = match.tally
        rate = win_rate(t.first, t.second)
        if self.config.score == "probability" and match.p_first is not None and t.valid:
            rate = match.p_first  # p(sample better than the reference), averaged over both orders
        if rate is None:
            return SampleScore(NEUTRAL_SCORE, True, "no_valid_votes", 1, 0, t.invalid)
        return SampleScore(rate, False, "ok", 1, t.valid, t.invalid)

    async def _rank_group(self, question: str, responses: list[str]) -> list[SampleScore]:
        n = len(responses)
        if n == 1:
            answers = await self.judge.resolver.prepare(RankRequest.model_construct(), responses)
            (score, neutral), = self._with_degenerate([None], answers)
            a = answers[0]
            return [SampleScore(score, neutral, a.status.value if a.degenerate else "alone", 1, empty=a.degenerate)]
        c = self.config
        # The group's votes close before the collector's own deadline gives up on it (neutral rewards).
        start = asyncio.get_running_loop().time()
        judged = await self.judge.judge(RankRequest(query=question, responses=responses, method=c.method,
                                                    votes=c.votes, opponents=_opponents(c.opponents, n)),
                                        f"reward-group-{uuid.uuid4().hex}", start, start + c.group_deadline)
        valid, invalid = [0] * n, [0] * n
        for m in judged.outcome.matches:
            for i in (m.a, m.b):
                valid[i] += m.tally.valid
                invalid[i] += m.tally.invalid
        answers = judged.context.answers
        out = []
        for i, ((score, neutral), a) in enumerate(zip(self._with_degenerate(group_scores(judged), answers), answers)):
            reason = a.status.value if a.degenerate else "no_valid_votes" if neutral else "ok"
            out.append(SampleScore(score, neutral, reason, n, valid[i], invalid[i], empty=a.degenerate))
        return out


def _opponents(opponents: int | None, n: int) -> int | None:
    """Reward groups vary in size: a sparse setting at or above a group's size plays all pairs."""
    return opponents if opponents is not None and opponents < n - 1 else None


def group_scores(judged: Judged) -> list[float | None]:
    """Each response's judged score in its group (None: no result; degenerate answers: None here)."""
    o = judged.outcome
    n = len(judged.context.answers)
    if judged.context.strategy == "knockout":
        if not any(m.tally.valid for m in o.matches):
            return [None] * n
        return [knockout_group_scores([s])[0] if isinstance(s, KnockoutScore) else None for s in o.scores]
    return round_robin_scores(n, [(m.a, m.b, m.tally.first, m.tally.second) for m in o.matches])

