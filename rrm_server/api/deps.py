"""Dependency helpers: how routes reach the runtime."""

from __future__ import annotations

from fastapi import Request

from rrm_server.serving.judge import JudgeServing
from rrm_server.serving.rewards import RewardServing
from rrm_server.serving.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_serving(request: Request) -> JudgeServing:
    return get_runtime(request).require_serving()


def get_rewards(request: Request) -> RewardServing:
    return get_runtime(request).require_rewards()
