"""The judgment log (memory and real Redis) and the recorder that keeps it off the request's path."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from rrm_server.cache.backends import CacheUnavailable
from rrm_server.cache.judgment_log import JudgmentLog, LogEntry, MemoryJudgmentLog, RedisJudgmentLog, open_log
from rrm_server.ops import metrics
from rrm_server.protocol.judge import PairwiseRequest, PairwiseResponse, TallyOut, UsageOut
from rrm_server.protocol.judgments import JudgmentRecord, summarize
from rrm_server.serving.judgments import JudgmentRecorder


def entry(i: int, size: int = 10) -> LogEntry:
    return LogEntry(f"id-{i}", f"summary-{i}".encode(), b"r" * size)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_memory_keeps_the_newest_n_newest_first() -> None:
    log = MemoryJudgmentLog(capacity=3, ttl=60, max_bytes=1 << 20)
    for i in range(5):
        await log.add(entry(i))
    assert await log.recent(10) == [b"summary-4", b"summary-3", b"summary-2"]
    assert await log.recent(2) == [b"summary-4", b"summary-3"]
    assert await log.get("id-1") is None and await log.get("id-2") == b"r" * 10


async def test_memory_expires_and_is_bounded_in_bytes() -> None:
    clock = Clock()
    log = MemoryJudgmentLog(capacity=10, ttl=60, max_bytes=100, clock=clock)
    await log.add(entry(0, size=40))
    clock.now = 30
    await log.add(entry(1, size=40))
    await log.add(entry(2, size=40))  # over 100 bytes: the oldest goes
    assert [await log.get(f"id-{i}") is not None for i in range(3)] == [False, True, True]
    clock.now = 90.5  # id-1 was added at 30: expired; id-2 too
    assert await log.recent(10) == [] and len(log) == 0


async def test_memory_adding_an_id_again_moves_it_first() -> None:
    log = MemoryJudgmentLog(capacity=3, ttl=60, max_bytes=1 << 20)
    for i in (0, 1, 0):
        await log.add(entry(i))
    assert await log.recent(10) == [b"summary-0", b"summary-1"]


@pytest.mark.redis
async def test_redis_trims_to_n_deletes_what_falls_off_and_expires(redis_prefix) -> None:
    log = RedisJudgmentLog("redis://127.0.0.1:6379/0", capacity=2, ttl=30, prefix=redis_prefix)
    try:
        for i in (0, 1, 2, 1):
            await log.add(entry(i))
        assert await log.recent(10) == [b"summary-1", b"summary-2"]
        assert await log.get("id-0") is None and await log.get("id-2") == b"r" * 10
    finally:
        await log.close()
    client = redis.Redis()
    assert client.lrange(f"{redis_prefix}judgments", 0, -1) == [b"id-1", b"id-2"]
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{redis_prefix}*"))
    assert keys == [f"{redis_prefix}judgment:id-1", f"{redis_prefix}judgment:id-2", f"{redis_prefix}judgments"]
    assert all(0 < client.pttl(k) <= 30_000 for k in keys)


@pytest.mark.redis
async def test_redis_lists_only_records_still_there(redis_prefix) -> None:
    log = RedisJudgmentLog("redis://127.0.0.1:6379/0", capacity=5, ttl=30, prefix=redis_prefix)
    try:
        for i in range(3):
            await log.add(entry(i))
        redis.Redis().delete(f"{redis_prefix}judgment:id-1")  # expired (or evicted) before the list
        assert await log.recent(10) == [b"summary-2", b"summary-0"]
    finally:
        await log.close()


def test_recording_is_off_without_a_capacity() -> None:
    assert open_log(0, 60, 1 << 20) is None
    assert isinstance(open_log(5, 60, 1 << 20), MemoryJudgmentLog)
    assert not JudgmentRecorder(None).enabled


# -- the recorder -------------------------------------------------------------------------------------
def wire_pair(id_: str = "pairwise-1", query: str = "q") -> tuple[PairwiseRequest, PairwiseResponse]:
    req = PairwiseRequest(query=query, responses=["a", "bb"], votes=2)
    usage = UsageOut(prompt_tokens=0, generated_tokens=0, cached_prompt_tokens=0, engine_calls=0,
                     failed_judgments=0, votes_used=0, votes_saved=0, forced_verdicts=0, probe_calls=0,
                     cache={"status": "off", "hits": 0, "misses": 0, "coalesced": 0, "errors": 0})
    resp = PairwiseResponse(id=id_, model="m", seed=None, winner=None, confidence=0.5, p_first=None,
                            decided_by="no_result", position_consistent=None, tally=TallyOut(first=0, second=0,
                            invalid=2), votes=[], answers=[], usage=usage)
    return req, resp


class Broken(JudgmentLog):
    name = "memory"

    async def add(self, entry: LogEntry) -> None:
        raise CacheUnavailable("down")

    async def recent(self, limit: int) -> list[bytes]:
        return []

    async def get(self, id_: str) -> bytes | None:
        return None


class Slow(MemoryJudgmentLog):
    async def add(self, entry: LogEntry) -> None:
        await asyncio.sleep(0.05)
        await super().add(entry)


def failures(result: str) -> float:
    return metrics.current(metrics.JUDGMENT_RECORDS).get(result, 0.0)


async def test_a_failed_write_is_counted_not_raised() -> None:
    recorder = JudgmentRecorder(Broken(5, 60))
    before = failures("failed")
    recorder.record(*wire_pair())  # returns at once; the write fails in the background
    await recorder.close()
    assert failures("failed") == before + 1


async def test_reads_see_this_process_writes_and_records_round_trip() -> None:
    recorder = JudgmentRecorder(Slow(5, 60, 1 << 20))
    req, resp = wire_pair("pairwise-7", query="  a\n query  ")
    recorder.record(req, resp)
    assert [s.id for s in await recorder.recent(5)] == ["pairwise-7"]  # waited for the slow write
    raw = await recorder.get("pairwise-7")
    assert raw is not None
    record = JudgmentRecord.model_validate_json(raw)
    assert record.response == resp and record.request == req
    assert record.summary == summarize(req, resp) and record.summary.query_preview == "a query"
    assert record.summary.status == "undecided" and record.summary.invalid_votes == 2
    await recorder.close()


async def test_too_large_or_too_many_pending_are_dropped() -> None:
    recorder = JudgmentRecorder(Slow(100, 60, 1 << 20), max_bytes=2000)
    before = failures("dropped")
    req, resp = wire_pair(query="x" * 5000)
    recorder.record(req, resp)
    for i in range(JudgmentRecorder.MAX_PENDING + 3):
        recorder.record(*wire_pair(f"p-{i}"))
    await recorder.close()
    assert failures("dropped") == before + 1 + 4  # the large one, and the 4 past MAX_PENDING in flight
    kept = [json.loads(s.model_dump_json())["id"] for s in await recorder.recent(100)]
    assert len(kept) == JudgmentRecorder.MAX_PENDING - 1 and "pairwise-1" not in kept
