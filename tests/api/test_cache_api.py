"""The comparison cache through the HTTP API: in-memory default and real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx
import pytest
import redis

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread

PAIR = {"query": "q", "responses": ["a", "bb"], "early_stop": False}  # every vote drawn: exact counts


@contextlib.contextmanager
def service(model_dir, tokenizer, **overrides):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), model_fingerprint="test", **overrides)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url, engine


def judge(url: str, body: dict, path: str = "/v1/judge/pairwise") -> dict:
    r = httpx.post(f"{url}{path}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def votes_of(body: dict) -> list[tuple]:
    return [(v["index"], v["seed"], tuple(v["shown_order"]), v["verdict"]) for v in body["votes"]]


def test_repeat_is_free_and_identical(base_url, engine):
    first = judge(base_url, {**PAIR, "votes": 3})
    again = judge(base_url, {**PAIR, "votes": 3})
    assert len(engine.calls) == 3
    assert votes_of(again) == votes_of(first) and again["winner"] == first["winner"]
    assert again["usage"]["engine_calls"] == 0 and again["usage"]["generated_tokens"] == 0
    assert again["usage"]["cache"] == {"status": "ok", "hits": 3, "misses": 0, "coalesced": 0, "errors": 0}
    assert {v["source"] for v in again["votes"]} == {"cache"}
    assert first["usage"]["cache"]["misses"] == 3


def test_more_votes_compute_only_the_missing_ones(base_url, engine):
    small = judge(base_url, {**PAIR, "votes": 2})
    big = judge(base_url, {**PAIR, "votes": 5})
    assert len(engine.calls) == 5
    assert votes_of(big)[:2] == votes_of(small)
    assert [v["source"] for v in big["votes"]] == ["cache"] * 2 + ["computed"] * 3


def test_order_is_part_of_the_key(base_url, engine):
    judge(base_url, {**PAIR, "order": "fixed"})
    swapped = judge(base_url, {"query": "q", "responses": ["bb", "a"], "order": "fixed"})
    assert swapped["usage"]["cache"]["hits"] == 0 and len(engine.calls) == 2
    # With a random order, votes belong to the pair's content: positions in the request do not matter.
    judge(base_url, {**PAIR, "votes": 2})
    moved = judge(base_url, {"query": "q", "responses": ["bb", "a"], "votes": 2})
    assert moved["usage"]["cache"]["hits"] == 2 and moved["winner"] == 0  # "bb" wins wherever it stands


def test_sampling_and_seed_are_part_of_the_key(base_url, engine):
    judge(base_url, PAIR)
    for change in ({"temperature": 0.9}, {"max_tokens": 64}, {"top_p": 0.5}, {"seed": 5}, {"query": "q2"}):
        assert judge(base_url, {**PAIR, **change})["usage"]["cache"]["hits"] == 0
    assert judge(base_url, PAIR)["usage"]["cache"]["hits"] == 1


def test_rank_replay_and_shared_pairs(base_url, engine):
    responses = ["a", "bbbb", "cc", "ddd"]
    judge(base_url, {"query": "q", "responses": responses, "votes": 2}, "/v1/judge/rank")
    replay = judge(base_url, {"query": "q", "responses": responses, "votes": 2}, "/v1/judge/rank")
    assert replay["usage"]["engine_calls"] == 0 and replay["usage"]["cache"]["hits"] == 12
    # A knockout over a subset reuses the ELO's votes of the pairs it plays.
    ko = judge(base_url, {"query": "q", "responses": responses[:2], "votes": 2, "method": "knockout"},
               "/v1/judge/rank")
    assert ko["usage"]["engine_calls"] == 0 and ko["best"] == 1


def test_cache_false_recomputes(base_url, engine):
    judge(base_url, PAIR)
    fresh = judge(base_url, {**PAIR, "cache": False})
    assert fresh["usage"]["engine_calls"] == 1 and fresh["usage"]["cache"]["status"] == "off"
    assert fresh["votes"][0]["source"] == "computed"


def test_concurrent_identical_requests_run_once(base_url, engine):
    engine.delay = 0.3

    async def go():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
            return await asyncio.gather(*(c.post("/v1/judge/pairwise", json={**PAIR, "votes": 3}) for _ in range(6)))

    rs = [r.json() for r in asyncio.run(go())]
    assert len(engine.calls) == 3
    assert sum(r["usage"]["engine_calls"] for r in rs) == 3
    assert sum(r["usage"]["cache"]["coalesced"] for r in rs) == 15
    assert len({tuple(votes_of(r)) for r in rs}) == 1


def test_a_disconnecting_waiter_leaves_shared_work_running(base_url, engine):
    engine.delay = 1.0

    async def go():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
            leaver = asyncio.create_task(c.post("/v1/judge/pairwise", json=PAIR))
            await asyncio.sleep(0.2)
            stayer = asyncio.create_task(c.post("/v1/judge/pairwise", json=PAIR))
            await asyncio.sleep(0.2)
            leaver.cancel()
            return await stayer

    r = asyncio.run(go())
    assert r.status_code == 200 and r.json()["votes"][0]["source"] == "coalesced"
    assert len(engine.calls) == 1 and engine.cancelled == []


def test_invalid_votes_are_cached_briefly_and_engine_errors_never(model_dir, tokenizer):
    with service(model_dir, tokenizer, cache_invalid_ttl=0.3) as (url, engine):
        engine.script = lambda s: "no verdict"
        judge(url, PAIR)
        assert judge(url, PAIR)["usage"]["cache"]["hits"] == 1
        time.sleep(0.4)
        assert judge(url, PAIR)["usage"]["cache"]["hits"] == 0
        from rrm_server.engine import EngineError

        def fail(s):  # type: ignore[no-untyped-def]
            raise EngineError("transient")

        engine.script = fail
        body = {"query": "other", "responses": ["x", "y"]}
        assert judge(url, body)["votes"][0]["invalid_reason"] == "engine_error"
        assert judge(url, body)["usage"]["cache"]["hits"] == 0
    with service(model_dir, tokenizer, cache_invalid_ttl=0) as (url, engine):
        engine.script = lambda s: "no verdict"
        judge(url, PAIR)
        assert judge(url, PAIR)["usage"]["cache"]["hits"] == 0


def test_reasoning_asked_for_but_not_stored_is_a_miss(model_dir, tokenizer):
    with service(model_dir, tokenizer, cache_store_reasoning=False) as (url, engine):
        judge(url, PAIR)
        assert judge(url, PAIR)["usage"]["cache"]["hits"] == 1
        withr = judge(url, {**PAIR, "include_reasoning": True})
        assert withr["usage"]["cache"]["hits"] == 0 and withr["votes"][0]["reasoning"]


@pytest.mark.redis
def test_redis_backend_ttl_and_clear(model_dir, tokenizer, redis_prefix):
    with service(model_dir, tokenizer, cache_url="redis://127.0.0.1:6379/0", cache_prefix=redis_prefix,
                 cache_ttl=1.0) as (url, engine):
        judge(url, {**PAIR, "votes": 2})
        assert judge(url, {**PAIR, "votes": 2})["usage"]["cache"]["hits"] == 2
        keys = list(redis.Redis().scan_iter(match=f"{redis_prefix}vote:*"))
        assert len(keys) == 2
        time.sleep(1.2)
        assert judge(url, {**PAIR, "votes": 2})["usage"]["cache"]["hits"] == 0
        cleared = httpx.delete(f"{url}/v1/cache").json()
        assert cleared == {"deleted": 2, "backend": "redis"}
        assert judge(url, {**PAIR, "votes": 2})["usage"]["cache"]["hits"] == 0


@pytest.mark.redis
def test_redis_stopped_and_restarted_under_load(model_dir, tokenizer, redis_proc):
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    with service(model_dir, tokenizer, cache_url=redis_proc.url, cache_prefix=prefix) as (url, engine):
        engine.delay = 0.01
        statuses: list[str] = []
        codes: list[int] = []

        async def load(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    r = await c.post("/v1/judge/pairwise", json={"query": f"q{i % 7}", "responses": ["a", "bb"]})
                    codes.append(r.status_code)
                    if r.status_code == 200:
                        statuses.append(r.json()["usage"]["cache"]["status"])
                    i += 1

        async def go():
            stop = asyncio.Event()
            workers = [asyncio.create_task(load(stop)) for _ in range(4)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(redis_proc.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(redis_proc.start)
            await asyncio.sleep(2.5)
            stop.set()
            await asyncio.gather(*workers)

        asyncio.run(go())
        assert codes and set(codes) == {200}, "every request is answered"
        assert "degraded" in statuses, statuses  # the outage shows in the usage
        # ... and the cache comes back by itself (on a busy machine a call may still time out once).
        deadline = time.monotonic() + 10
        while True:
            after = judge(url, {"query": "q0", "responses": ["a", "bb"]})["usage"]["cache"]
            if after["status"] == "ok" and after["hits"] == 1:
                break
            assert time.monotonic() < deadline, (after, statuses[-20:])
            time.sleep(0.2)
