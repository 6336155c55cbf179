"""Python client for rrm-server: sync and async, typed results, bounded concurrency, retries.

    from rrm_server.client import AsyncRRMClient
    async with AsyncRRMClient("http://judge:8000", max_concurrency=64) as c:
        res = await c.pairwise("What is 2+2?", ["4", "5"], votes=3)
        groups = await c.rewards([{"query": q, "responses": samples}])
        async for e in c.stream_rank(q, samples, method="knockout"):  # events as they happen
            print(e.event, e.data)  # vote (VoteEvent), match (MatchOut), then result (RankResponse)

Retries (with exponential backoff and jitter, honouring ``Retry-After``) happen only where a retry
cannot do harm: 429, 503, connection errors and timeouts. Other errors raise ``RRMError`` at once
with the server's error type and message. ``max_concurrency`` caps requests in flight from this
client, so a trainer cannot flood the service.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from rrm_server.protocol.judge import MatchOut, PairwiseResponse, RankResponse, VoteEvent
from rrm_server.protocol.rewards import GetRewardResponse, RewardsResponse

T = TypeVar("T", bound=BaseModel)
RETRY_STATUS = {429, 503}


class RRMError(Exception):
    def __init__(self, status: int, type_: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{status} {type_}: {message}")
        self.status, self.type, self.message, self.param = status, type_, message, param


def _error(r: httpx.Response) -> RRMError:
    try:
        e = r.json()["error"]
        return RRMError(r.status_code, e.get("type", "error"), e.get("message", r.text), e.get("param"))
    except Exception:
        return RRMError(r.status_code, "http_error", r.text[:500])


def _delay(attempt: int, r: httpx.Response | None, base: float, cap: float) -> float:
    if r is not None and (after := r.headers.get("retry-after")):
        try:
            return min(cap, float(after))
        except ValueError:
            pass
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)


class _Base:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 600.0, retries: int = 5,
                 backoff: float = 0.5, backoff_cap: float = 30.0, max_concurrency: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.max_concurrency = max_concurrency

    # Each API call as (path, body, result type); the sync and async clients only differ in I/O.
    @staticmethod
    def _pairwise(query: str, responses: Sequence[str], **fields: Any) -> tuple[str, dict, type[BaseModel]]:
        return "/v1/judge/pairwise", {"query": query, "responses": list(responses), **fields}, PairwiseResponse

    @staticmethod
    def _rank(query: str, responses: Sequence[str], method: str = "elo",
              **fields: Any) -> tuple[str, dict, type[BaseModel]]:
        body = {"query": query, "responses": list(responses), "method": method, **fields}
        return "/v1/judge/rank", body, RankResponse

    @staticmethod
    def _rewards(groups: Sequence[dict], **fields: Any) -> tuple[str, dict, type[BaseModel]]:
        return "/v1/rewards", {"groups": list(groups), **fields}, RewardsResponse

    @staticmethod
    def _get_reward(query: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None,
                    **fields: Any) -> tuple[str, dict, type[BaseModel]]:
        body = {"query": list(query), "prompts": list(prompts), **fields}
        if labels is not None:
            body["labels"] = list(labels)
        return "/get_reward", body, GetRewardResponse

    def _outcome(self, attempt: int, r: httpx.Response | None) -> float:
        """Seconds to wait before retrying; raises when this failure is final."""
        if r is not None and (r.status_code not in RETRY_STATUS or attempt == self.retries):
            raise _error(r)
        return _delay(attempt, r, self.backoff, self.backoff_cap)


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event of a streamed request: ``vote`` (VoteEvent), ``match`` (MatchOut) or
    ``result`` (the request's response, last)."""

    event: str
    data: BaseModel


async def _sse(r: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of a text/event-stream body (the subset the server writes)."""
    event, data = "message", []
    async for line in r.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class AsyncRRMClient(_Base):
    def __init__(self, base_url: str, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, headers=self.headers,
                                       limits=limits)
        self._sem = asyncio.Semaphore(self.max_concurrency)

    async def __aenter__(self) -> AsyncRRMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict, model: type[T]) -> T:
        async with self._sem:
            for attempt in range(self.retries + 1):
                r = None
                try:
                    r = await self._http.post(path, json=body)
                    if r.status_code < 400:
                        return model.model_validate(r.json())
                except (httpx.TimeoutException, httpx.TransportError):
                    if attempt == self.retries:
                        raise
                await asyncio.sleep(self._outcome(attempt, r))
        raise AssertionError("unreachable")

    async def _stream(self, path: str, body: dict, result: type[BaseModel]) -> AsyncIterator[StreamEvent]:
        """Retried like any call until the stream starts; after that a failure is its last event
        (raised as RRMError). Leaving the loop early closes the stream, which aborts the work."""
        models: dict[str, type[BaseModel]] = {"vote": VoteEvent, "match": MatchOut, "result": result}
        async with self._sem:
            for attempt in range(self.retries + 1):
                try:
                    async with self._http.stream("POST", path, json={**body, "stream": True}) as r:
                        if r.status_code >= 400:
                            await r.aread()
                            wait = self._outcome(attempt, r)
                        else:
                            async for event, data in _sse(r):
                                if event == "error":
                                    e = json.loads(data)["error"]
                                    raise RRMError(e["code"], e["type"], e["message"], e.get("param"))
                                if event in models:
                                    yield StreamEvent(event, models[event].model_validate_json(data))
                            return
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    if attempt == self.retries:
                        raise
                    wait = _delay(attempt, None, self.backoff, self.backoff_cap)
                await asyncio.sleep(wait)

    def stream_pairwise(self, query: str, responses: Sequence[str], **fields: Any) -> AsyncIterator[StreamEvent]:
        path, body, model = self._pairwise(query, responses, **fields)
        return self._stream(path, body, model)

    def stream_rank(self, query: str, responses: Sequence[str], method: str = "elo",
                    **fields: Any) -> AsyncIterator[StreamEvent]:
        path, body, model = self._rank(query, responses, method, **fields)
        return self._stream(path, body, model)

    async def pairwise(self, query: str, responses: Sequence[str], **fields: Any) -> PairwiseResponse:
        return await self._post(*self._pairwise(query, responses, **fields))  # type: ignore[return-value]

    async def rank(self, query: str, responses: Sequence[str], method: str = "elo", **fields: Any) -> RankResponse:
        return await self._post(*self._rank(query, responses, method, **fields))  # type: ignore[return-value]

    async def rewards(self, groups: Sequence[dict], **fields: Any) -> RewardsResponse:
        return await self._post(*self._rewards(groups, **fields))  # type: ignore[return-value]

    async def get_reward(self, query: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None,
                         **fields: Any) -> GetRewardResponse:
        return await self._post(*self._get_reward(query, prompts, labels, **fields))  # type: ignore[return-value]


class RRMClient(_Base):
    """The synchronous client (thread-safe; concurrency is bounded across threads)."""

    def __init__(self, base_url: str, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=self.headers, limits=limits)
        self._sem = threading.BoundedSemaphore(self.max_concurrency)

    def __enter__(self) -> RRMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict, model: type[T]) -> T:
        with self._sem:
            for attempt in range(self.retries + 1):
                r = None
                try:
                    r = self._http.post(path, json=body)
                    if r.status_code < 400:
                        return model.model_validate(r.json())
                except (httpx.TimeoutException, httpx.TransportError):
                    if attempt == self.retries:
                        raise
                time.sleep(self._outcome(attempt, r))
        raise AssertionError("unreachable")

    def pairwise(self, query: str, responses: Sequence[str], **fields: Any) -> PairwiseResponse:
        return self._post(*self._pairwise(query, responses, **fields))  # type: ignore[return-value]

    def rank(self, query: str, responses: Sequence[str], method: str = "elo", **fields: Any) -> RankResponse:
        return self._post(*self._rank(query, responses, method, **fields))  # type: ignore[return-value]

    def rewards(self, groups: Sequence[dict], **fields: Any) -> RewardsResponse:
        return self._post(*self._rewards(groups, **fields))  # type: ignore[return-value]

    def get_reward(self, query: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None,
                   **fields: Any) -> GetRewardResponse:
        return self._post(*self._get_reward(query, prompts, labels, **fields))  # type: ignore[return-value]


__all__ = ["AsyncRRMClient", "RRMClient", "RRMError"]
