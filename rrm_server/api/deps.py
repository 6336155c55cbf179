"""Dependency helpers: how routes reach the runtime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import Request

from rrm_server.api.middleware import ARRIVED
from rrm_server.errors import InvalidRequest
from rrm_server.judging.deadlines import check_deadline_s
from rrm_server.serving.judge import JudgeServing
from rrm_server.serving.rewards import RewardServing
from rrm_server.serving.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_serving(request: Request) -> JudgeServing:
    return get_runtime(request).require_serving()


def get_rewards(request: Request) -> RewardServing:
    return get_runtime(request).require_rewards()


DEADLINE_HEADER = "X-Request-Deadline"


@dataclass(frozen=True)
class Timing:
    """When a request arrived and when its caller stops waiting (event-loop clock)."""

    arrived: float
    deadline: float | None


def get_timing(request: Request) -> Timing:
    """``X-Request-Deadline: <seconds>``: how long the caller waits, counted from arrival (a relative
    time, so clocks need not agree); like the body's ``deadline_s``."""
    arrived = request.scope.get("state", {}).get(ARRIVED) or asyncio.get_running_loop().time()
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return Timing(arrived, None)
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidRequest(f"{DEADLINE_HEADER} must be a number of seconds, got {raw[:40]!r}",
                             DEADLINE_HEADER) from None
    limit = get_runtime(request).settings.max_deadline
    try:
        return Timing(arrived, arrived + check_deadline_s(seconds, limit))
    except ValueError as e:
        raise InvalidRequest(f"{DEADLINE_HEADER}: {e}".replace("deadline_s ", ""), DEADLINE_HEADER) from None
