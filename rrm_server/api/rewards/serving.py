"""Reward logic: pairwise verdicts turned into one scalar per sample, for RL trainers and best-of-N."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Awaitable, Iterable, TypeVar

from rrm_server.api.judge.protocol import AnswerOut, PairwiseRequest, RankRequest, SamplingFields, UsageOut
from rrm_server.api.judge.serving import JudgeServing, answers_out, usage_out
from rrm_server.api.rewards.protocol import (
    GetRewardRequest,
    GetRewardResponse,
    GroupRewards,
    RewardGroup,
    RewardsRequest,
    RewardsResponse,
)
from rrm_server.errors import InvalidRequest
from rrm_server.judging.comparator import Usage
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
from rrm_server.settings import Settings

T = TypeVar("T")

_SAMPLING = set(SamplingFields.model_fields)


class RewardServing:
    def __init__(self, settings: Settings, judge: JudgeServing) -> None:
        self.settings = settings
        self.judge = judge
        self.groups = GroupCollector(self._rank_group, settings.reward_group_size, settings.reward_group_wait,
                                     settings.reward_group_deadline)

    # -- /v1/rewards ----------------------------------------------------------------------------
    async def rewards(self, req: RewardsRequest) -> RewardsResponse:
        sampling = req.model_dump(include=_SAMPLING)
        limit = self.settings.max_text_chars
        # Validate every group before any engine work (groups run concurrently: a later group's error
        # would leave earlier groups' work running for nothing), naming the group's own field.
        for i, g in enumerate(req.groups):
            if len(g.responses) > self.settings.max_responses:
                raise InvalidRequest(f"groups[{i}] has {len(g.responses)} responses; the limit is "
                                     f"{self.settings.max_responses}", f"groups.{i}.responses")
            texts = [("query", "query", g.query), *((f"responses[{j}]", f"responses.{j}", r)
                                                    for j, r in enumerate(g.responses))]
            for name, param, text in texts:
                if len(text) > limit:
                    raise InvalidRequest(f"groups[{i}].{name} is {len(text)} characters; the limit is {limit}",
                                         f"groups.{i}.{param}")
        results = await _all(self._group(g, sampling, req.model) for g in req.groups)
        return RewardsResponse(id=f"rewards-{uuid.uuid4().hex}", model=self.judge.model.name, groups=list(results))

    async def _group(self, g: RewardGroup, sampling: dict, model: str | None) -> GroupRewards:
        if len(g.responses) == 1:  # nothing to compare: alone (neutral), or degenerate
            answers = await self._answers(g.responses, sampling)
            return self._group_rewards([None], answers, [0], None, usage_out(Usage()))
        res = await self.judge.rank(RankRequest(
            query=g.query, responses=g.responses, method=g.method, model=model,
            opponents=_opponents(g.opponents, len(g.responses)), **sampling))
        return self._group_rewards(group_scores(res), res.answers, res.ranking, res.best, res.usage)

    def _group_rewards(self, judged: list[float | None], answers: list[AnswerOut], ranking: list[int],
                       best: int | None, usage: UsageOut) -> GroupRewards:
        scores = self._with_degenerate(judged, answers)
        return GroupRewards(rewards=[reward_from_score(s) for s, _ in scores], scores=[s for s, _ in scores],
                            neutral=[n for _, n in scores], empty=[a.status != "ok" for a in answers],
                            ranking=ranking, best=best, answers=answers, usage=usage)

    async def _answers(self, responses: list[str], fields: dict | None = None) -> list[AnswerOut]:
        """What the judge reads of responses it will not rank (a group of one, a missed deadline)."""
        return answers_out(await self.judge.prepare(RankRequest.model_construct(**(fields or {})), responses))

    def _with_degenerate(self, scores: list[float | None], answers: list[AnswerOut]) -> list[tuple[float, bool]]:
        """(score, neutral) per response: judged, neutral for lack of a result, or a degenerate answer's
        lowest score (the one rule for every reward path)."""
        real = [NEUTRAL_SCORE if s is None else s for s, a in zip(scores, answers) if a.status == "ok"]
        low = score_from_reward(degenerate_reward(self.settings.empty_response_reward,
                                                  [reward_from_score(s) for s in real]))
        return [(low, False) if a.status != "ok" else (NEUTRAL_SCORE, True) if s is None else (s, False)
                for s, a in zip(scores, answers)]

    # -- /get_reward (OpenRLHF) -----------------------------------------------------------------
    async def get_reward(self, req: GetRewardRequest) -> GetRewardResponse:
        n = len(req.query)
        if len(req.prompts) != n:
            raise InvalidRequest(f"prompts has {len(req.prompts)} items but query has {n}; they must align",
                                 "prompts")
        if req.labels is not None and len(req.labels) != n:
            raise InvalidRequest(f"labels has {len(req.labels)} items but query has {n}; they must align", "labels")
        tmpl = self.settings.reward_template
        limit = self.settings.max_text_chars
        # Every sample is checked, naming this request's own fields, before any joins work: the texts
        # the judge reads are derived (template stripped), so the judge's own checks would name fields
        # this request does not have, or, in group mode, fail every sibling's ranking.
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
            samples.append((p, question, text))
        mode = req.mode or self.settings.reward_mode
        if mode == "reference":
            if req.labels is None:
                raise InvalidRequest("reference mode needs labels: the reference answer of each sample", "labels")
            for i, label in enumerate(req.labels):
                if not isinstance(label, str) or not label.strip():
                    raise InvalidRequest(f"labels[{i}] must be a non-empty reference answer (a string)",
                                         f"labels.{i}")
                if len(label) > limit:
                    raise InvalidRequest(f"labels[{i}] is {len(label)} characters; the limit is {limit}",
                                         f"labels.{i}")
            results = await _all(self._against_reference(q, r, label)
                                 for (_, q, r), label in zip(samples, req.labels))
        else:
            results = await asyncio.gather(*(self.groups.submit(key, q, r) for key, q, r in samples))
            if any(r.reason == "deadline" for r in results):
                # A group that missed its deadline has no judged result, but a degenerate sample
                # still gets its rule (capped by the real samples' neutral score), never the neutral one.
                answers = await self._answers([t for _, _, t in samples])
                rule = self._with_degenerate([None] * len(samples), answers)
                results = [replace(r, score=score, neutral=False, reason=a.status, empty=True)
                           if r.reason == "deadline" and a.status != "ok" else r
                           for r, a, (score, _) in zip(results, answers, rule)]
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

    async def _against_reference(self, question: str, response: str, reference: str) -> SampleScore:
        res = await self.judge.pairwise(PairwiseRequest(
            query=question, responses=[response, reference], votes=self.settings.reward_votes, order="both",
            early_stop=False))
        if res.answers[0].status != "ok":  # decided without an engine call
            (score, _), _ = self._with_degenerate([None, None], res.answers)
            return SampleScore(score, False, res.answers[0].status, 1, empty=True)
        t = res.tally
        rate = win_rate(t.first, t.second)
        if self.settings.reward_score == "probability" and res.p_first is not None and t.first + t.second:
            # p(sample better than the reference), averaged over both orders (order=both).
            rate = res.p_first
        if rate is None:
            return SampleScore(NEUTRAL_SCORE, True, "no_valid_votes", 1, 0, t.invalid)
        return SampleScore(rate, False, "ok", 1, t.first + t.second, t.invalid)

    async def _rank_group(self, question: str, responses: list[str]) -> list[SampleScore]:
        n = len(responses)
        if n == 1:
            answers = await self._answers(responses)
            (score, neutral), = self._with_degenerate([None], answers)
            empty = answers[0].status != "ok"
            return [SampleScore(score, neutral, answers[0].status if empty else "alone", 1, empty=empty)]
        res = await self.judge.rank(RankRequest(query=question, responses=responses,
                                                method=self.settings.reward_method,
                                                votes=self.settings.reward_votes,
                                                opponents=_opponents(self.settings.reward_opponents, n)))
        valid = [0] * n
        invalid = [0] * n
        for m in res.matches:
            for i in m.pair:
                valid[i] += m.tally.first + m.tally.second
                invalid[i] += m.tally.invalid
        out = []
        for i, ((score, neutral), a) in enumerate(zip(self._with_degenerate(group_scores(res), res.answers),
                                                      res.answers)):
            reason = a.status if a.status != "ok" else "no_valid_votes" if neutral else "ok"
            out.append(SampleScore(score, neutral, reason, n, valid[i], invalid[i], empty=a.status != "ok"))
        return out


def _opponents(opponents: int | None, n: int) -> int | None:
    """Reward groups vary in size: a sparse setting at or above a group's size plays all pairs."""
    return opponents if opponents is not None and opponents < n - 1 else None


def group_scores(res) -> list[float | None]:  # type: ignore[no-untyped-def]
    """Each response's judged score in its group (None: no result; degenerate answers: None here)."""
    n = len(res.answers)
    live = [a.status == "ok" for a in res.answers]
    if res.method == "knockout":
        decided = any(m.tally.first + m.tally.second for m in res.matches)
        if not decided:
            return [None] * n
        return [knockout_group_scores([s])[0] if ok else None for s, ok in zip(res.scores, live)]
    return round_robin_scores(n, [(m.pair[0], m.pair[1], m.tally.first, m.tally.second) for m in res.matches])


async def _all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; the first failure cancels the rest (a request that fails must not leave
    engine work running for nobody) and is raised as itself, so it keeps its status code."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None
    return [t.result() for t in tasks]
