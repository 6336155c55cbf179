"""Group mode for one-sample-per-request trainers (OpenRLHF >= 0.10).

Siblings of one prompt arrive as separate requests. They are collected until the group is full or
a wait limit passes, ranked together once, and every waiter gets its sample's share of the result.
A repeated sample (a client retry after a timeout) joins its original instead of adding work, also
after the group finished (results are kept a while). A group that cannot be ranked in time answers
with a flagged neutral score rather than letting the trainer's client time out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleScore:
    score: float
    neutral: bool  # no judged result: the score is the neutral 0.5
    reason: str  # "ok", "alone", "deadline", "no_valid_votes", "error", or a degenerate answer's status
    group_size: int
    valid_votes: int = 0
    invalid_votes: int = 0
    empty: bool = False  # a degenerate answer (empty, or reasoning never closed): lowest reward, not judged


# Ranks one group: (question, responses) -> one SampleScore per response.
RankFn = Callable[[str, list[str]], Awaitable[list[SampleScore]]]


@dataclass
class _Group:
    question: str
    responses: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    arrivals: int = 0
    result: asyncio.Future | None = None
    timer: asyncio.TimerHandle | None = None


class GroupCollector:
    def __init__(self, rank: RankFn, group_size: int, wait: float, deadline: float,
                 keep_results: int = 100_000, keep_seconds: float = 1800.0) -> None:
        self._rank = rank
        self.group_size = group_size
        self.wait = wait
        self.deadline = deadline
        self._open: dict[str, _Group] = {}
        self._done: OrderedDict[tuple[str, str], tuple[float, asyncio.Future, int]] = OrderedDict()
        self._keep = keep_results
        self._keep_seconds = keep_seconds
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, key: str, question: str, response: str) -> SampleScore:
        """``key`` identifies the prompt (its exact text); ``question``/``response`` are for the judge."""
        done = self._done.get((key, response))
        if done is not None and time.monotonic() - done[0] < self._keep_seconds:
            _, fut, i = done
            return (await asyncio.shield(fut))[i]
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Group(question)
            group.result = asyncio.get_running_loop().create_future()
            group.timer = asyncio.get_running_loop().call_later(self.wait, self._close, key, group)
        i = group.index.get(response)
        if i is None:  # a new response; an identical one (a sibling with the same text) shares its slot
            i = group.index[response] = len(group.responses)
            group.responses.append(response)
        # Identical siblings count towards the group size (the trainer sends group_size samples per
        # prompt); a client retry comes long after the group closed and joins its result instead.
        group.arrivals += 1
        if group.arrivals >= self.group_size:
            self._close(key, group)
        fut = group.result
        assert fut is not None
        return (await asyncio.shield(fut))[i]

    def _close(self, key: str, group: _Group) -> None:
        if self._open.get(key) is not group:
            return  # already closed
        del self._open[key]
        if group.timer is not None:
            group.timer.cancel()
        # From now on a retried sample joins this group's result, while it runs and after.
        now = time.monotonic()
        assert group.result is not None
        for response, i in group.index.items():
            self._done[(key, response)] = (now, group.result, i)
        while len(self._done) > self._keep:
            self._done.popitem(last=False)
        task = asyncio.ensure_future(self._run(key, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, group: _Group) -> None:
        fut = group.result
        assert fut is not None
        n = len(group.responses)
        try:
            try:  # a group of one is the rank function's to score (alone, or degenerate)
                scores = await asyncio.wait_for(self._rank(group.question, group.responses), self.deadline)
            except TimeoutError:
                logger.warning("reward group of %d samples missed its %.0f s deadline", n, self.deadline)
                scores = [SampleScore(0.5, True, "deadline", n)] * n
        except Exception as e:  # an engine failure: every waiter gets the error, nothing is scored
            fut.set_exception(e)
            for response in group.index:  # a retry may try again
                self._done.pop((key, response), None)
            return
        fut.set_result(scores)
