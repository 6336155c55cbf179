"""Recent judgments (``--record-judgments N``): what the judge endpoints returned, kept off the
request's path so that recording can neither fail nor slow a judgment."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from pydantic import ValidationError

from rrm_server.cache.judgment_log import JudgmentLog, LogEntry, open_log
from rrm_server.ops import metrics
from rrm_server.prompt.template import TOKENIZE_INLINE_CHARS
from rrm_server.protocol.judge import PairwiseRequest, PairwiseResponse, RankRequest, RankResponse
from rrm_server.protocol.judgments import JudgmentRecord, JudgmentSummary, Recording, summarize
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingConfig:
    capacity: int = 0  # 0: off
    ttl: float = 86400
    max_bytes: int = 64 << 20
    redis_url: str | None = None  # the cache's Redis, when it has one
    prefix: str = "rrm:"
    timeout: float = 0.25

    @classmethod
    def from_settings(cls, s: Settings) -> RecordingConfig:
        return cls(capacity=s.record_judgments, ttl=s.judgments_ttl, max_bytes=s.judgments_max_bytes,
                   redis_url=s.cache_url, prefix=s.cache_prefix, timeout=s.cache_timeout)


class JudgmentRecorder:
    """``record`` only schedules the write; a failed or refused write is logged and counted
    (``rrm_judgment_records_total{result}``). Reads wait briefly for this process's pending writes, so
    a judgment is listed as soon as its response has been sent."""

    MAX_PENDING = 64  # writes in flight; beyond that (Redis slow or down) new records are dropped
    READ_WAIT = 1.0  # seconds a read waits for pending writes

    def __init__(self, log: JudgmentLog | None, max_bytes: int = 64 << 20) -> None:
        self.log, self.max_bytes = log, max_bytes
        self._pending: set[asyncio.Task[None]] = set()
        self._warned_at = 0.0

    @classmethod
    def open(cls, config: RecordingConfig) -> JudgmentRecorder:
        return cls(open_log(config.capacity, config.ttl, config.max_bytes, config.redis_url, config.prefix,
                            config.timeout), config.max_bytes)

    @property
    def enabled(self) -> bool:
        return self.log is not None

    def recording(self) -> Recording:
        if self.log is None:
            return Recording(enabled=False, backend="off", capacity=0, ttl=0)
        return Recording(enabled=True, backend=self.log.name, capacity=self.log.capacity,  # type: ignore[arg-type]
                         ttl=self.log.ttl)

    # -- writes --------------------------------------------------------------------------------
    def record(self, req: PairwiseRequest | RankRequest, resp: PairwiseResponse | RankResponse) -> None:
        """Keep a request and the response returned for it. Never raises, never waits."""
        if self.log is None:
            return
        if len(self._pending) >= self.MAX_PENDING:
            return self._failed("dropped", "too many records waiting to be written")
        try:
            record = JudgmentRecord(summary=summarize(req, resp), request=req, response=resp)
        except Exception as e:  # a bug here must not fail the judgment that was just returned
            return self._failed("failed", f"{type(e).__name__}: {e}")
        large = sum(map(len, (req.query, *req.responses))) > TOKENIZE_INLINE_CHARS
        task = asyncio.get_running_loop().create_task(self._write(record, large), name="rrm-record-judgment")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, record: JudgmentRecord, large: bool) -> None:
        assert self.log is not None
        try:
            # Encoded here, once: the listing reads the summary, a look-up returns the record's bytes.
            encoded = await asyncio.to_thread(_encode, record) if large else _encode(record)
            if encoded.size > self.max_bytes:
                return self._failed("dropped", f"record of {encoded.size} bytes is over --judgments-max-bytes")
            await self.log.add(encoded)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # CacheUnavailable (Redis), or anything else: the judgment stands
            return self._failed("failed", f"{type(e).__name__}: {e}")
        metrics.JUDGMENT_RECORDS.labels(result="stored").inc()

    def _failed(self, result: str, why: str) -> None:
        metrics.JUDGMENT_RECORDS.labels(result=result).inc()
        now = time.monotonic()
        if now - self._warned_at > 10:  # one line per 10 s, not one per request
            self._warned_at = now
            logger.warning("a judgment was not recorded (%s): %s", result, why)

    # -- reads ---------------------------------------------------------------------------------
    async def _settle(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self.READ_WAIT)

    async def recent(self, limit: int) -> list[JudgmentSummary]:
        """Newest first. Raises ``CacheUnavailable`` when Redis cannot answer."""
        if self.log is None:
            return []
        await self._settle()
        out = []
        for raw in await self.log.recent(limit):
            try:
                out.append(JudgmentSummary.model_validate_json(raw))
            except ValidationError:  # written by another version of the service: not listed
                continue
        return out

    async def get(self, id_: str) -> bytes | None:
        """The record's JSON as stored, or None. Raises ``CacheUnavailable`` when Redis cannot answer."""
        if self.log is None:
            return None
        await self._settle()
        return await self.log.get(id_)

    async def close(self) -> None:
        await self._settle()
        if self.log is not None:
            await self.log.close()


def _encode(record: JudgmentRecord) -> LogEntry:
    return LogEntry(record.summary.id, record.summary.model_dump_json().encode(), record.model_dump_json().encode())
