"""The Python client: typed results, retries only where safe, bounded concurrency."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.client import AsyncRRMClient, RRMClient, RRMError
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread


def test_sync_client_typed_results_and_errors(service):
    url, _ = service
    with RRMClient(url) as c:
        pw = c.pairwise("q", ["a", "bb"], votes=2)
        assert pw.winner == 1 and pw.usage.votes_used >= 1
        rk = c.rank("q", ["a", "bbb", "cc"], method="knockout")
        assert rk.best == 1
        rw = c.rewards([{"query": "q", "responses": ["a", "bb"]}])
        assert rw.groups[0].rewards == [-1.0, 1.0]
        with pytest.raises(RRMError) as e:
            c.pairwise("q", ["only one"])
        assert e.value.status == 400 and e.value.param == "responses"


def test_async_client_caps_concurrency(service):
    url, engine = service
    engine.delay = 0.2
    engine.max_in_flight = 0

    async def go():
        async with AsyncRRMClient(url, max_concurrency=3) as c:
            return await asyncio.gather(*(c.pairwise(f"q{i}", ["a", "bb"], cache=False) for i in range(9)))

    try:
        out = asyncio.run(go())
    finally:
        engine.delay = 0.0
    assert [r.winner for r in out] == [1] * 9
    assert engine.max_in_flight <= 3 * 1  # 1 vote per request, 3 requests at a time


def test_retries_503_until_ready(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, start_delay=1.0)
    app = build_app(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer)
    with serve_in_thread(app, wait_ready=False) as url:
        assert httpx.post(f"{url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b"]}).status_code == 503
        with RRMClient(url, backoff=0.1) as c:
            assert c.pairwise("q", ["a", "bb"]).winner == 1  # retried through the 503s
        with RRMClient(url, retries=0) as c:
            with pytest.raises(RRMError):
                c.pairwise("q", ["a"])  # 400: never retried
