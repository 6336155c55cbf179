"""A pool of remote ``vllm serve`` replicas driven over their OpenAI-compatible API.

Prompts go as token ids to ``/v1/completions`` (so the gateway's token-level prompt safety holds
remotely too), with ``return_token_ids`` and, for verdict probes, ``logprobs`` with tokens as ids.

Routing: comparisons that share a prefix (same query, same response shown first: the
``affinity_key`` the comparator sets) go to the same replica, chosen by rendezvous hashing over the
healthy replicas, so that replica's prefix cache is hit; a replica already carrying much more than
its share of in-flight requests hands new keys to the least loaded one (bounded load). Health checks
take replicas out and back in. A request is retried on another replica only when it could not have
run (connection refused or reset before a response) or the replica answered 5xx; never while it
may still be running elsewhere. Cancelling a generation closes its HTTP request, which makes vLLM
abort it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import httpx

from rrm_server.engine.base import (
    EngineClient,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationRequest,
    ModelInfo,
)
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)
LOAD_FACTOR = 1.5  # a replica may carry this much more than the mean in-flight load before spilling


@dataclass
class Replica:
    url: str
    healthy: bool = False
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    missed_checks: int = 0


def rendezvous(key: str, replicas: Sequence[Replica]) -> list[Replica]:
    """Replicas in preference order for ``key`` (highest random weight first): stable per key, and
    only the keys of a replica that leaves move."""
    def weight(r: Replica) -> bytes:
        return hashlib.blake2b(f"{key}|{r.url}".encode(), digest_size=8).digest()

    return sorted(replicas, key=weight, reverse=True)


@dataclass
class OpenAIPoolEngine(EngineClient):
    settings: Settings
    replicas: list[Replica] = field(default_factory=list)
    model: str = ""
    health_interval: float = 2.0
    _http: httpx.AsyncClient | None = None
    _health_task: asyncio.Task | None = None
    _info: ModelInfo | None = None
    _turn: int = 0  # round-robin position

    def __post_init__(self) -> None:
        urls = [u.strip().rstrip("/") for u in (self.settings.engine_url or "").split(",") if u.strip()]
        if not urls:
            raise ValueError("--engine openai needs --engine-url URL[,URL...]")
        self.replicas = [Replica(u) for u in urls]

    @property
    def ready(self) -> bool:
        return self._info is not None and any(r.healthy for r in self.replicas)

    async def start(self) -> ModelInfo:
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0),
                                       limits=httpx.Limits(max_connections=4096, max_keepalive_connections=512))
        deadline = asyncio.get_running_loop().time() + self.settings.engine_start_timeout
        while True:
            await self._check_all()
            if any(r.healthy for r in self.replicas):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise EngineUnavailable(f"no engine replica became healthy: {[r.url for r in self.replicas]}")
            await asyncio.sleep(1.0)
        self._info = await self._model_info()
        self._health_task = asyncio.create_task(self._health_loop())
        return self._info

    async def _model_info(self) -> ModelInfo:
        assert self._http is not None
        for r in self.replicas:
            if not r.healthy:
                continue
            data = (await self._http.get(f"{r.url}/v1/models", timeout=10)).json()["data"]
            wanted = self.settings.engine_model or self.settings.served_model_name or self.settings.model
            card = next((m for m in data if m["id"] == wanted), data[0])
            self.model = card["id"]
            return ModelInfo(name=self.settings.model_name, path=self.settings.model or card["id"],
                             max_model_len=int(card.get("max_model_len") or self.settings.max_model_len or 4096))
        raise EngineUnavailable("no healthy replica to read the model from")

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, r: Replica) -> None:
        """A replica leaves after two failed checks in a row (a busy CPU box can miss one), or at
        once when a request cannot reach it; it comes back with its first good check."""
        assert self._http is not None
        try:
            ok = (await self._http.get(f"{r.url}/health", timeout=5.0)).status_code == 200
        except httpx.HTTPError:
            ok = False
        r.missed_checks = 0 if ok else r.missed_checks + 1
        if not ok and r.healthy and r.missed_checks < 2:
            return
        if ok != r.healthy:
            logger.warning("engine replica %s is %s", r.url, "healthy" if ok else "unhealthy: taken out")
        r.healthy = ok

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await self._check_all()

    def pick(self, key: str, exclude: set[str]) -> Replica | None:
        healthy = [r for r in self.replicas if r.healthy and r.url not in exclude]
        if not healthy:
            return None
        if self.settings.engine_routing == "round_robin":
            self._turn += 1
            return healthy[self._turn % len(healthy)]
        order = rendezvous(key, healthy)
        mean = sum(r.in_flight for r in healthy) / len(healthy)
        first = order[0]
        if first.in_flight > LOAD_FACTOR * mean + 4:  # bounded load: spill to the least busy
            return min(healthy, key=lambda r: r.in_flight)
        return first

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._http is None:
            raise EngineUnavailable("the engine pool is not started")
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(request.prompt_token_ids),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "return_token_ids": True,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if self.settings.engine_ignore_eos and request.logprobs is None:
            body["ignore_eos"] = True
        if request.logprobs is not None:
            body["logprobs"] = request.logprobs
            body["return_tokens_as_token_ids"] = True
        key = request.affinity_key or request.request_id
        tried: set[str] = set()
        last = "no healthy replica"
        while True:
            r = self.pick(key, tried)
            if r is None:
                raise EngineUnavailable(f"no engine replica could take the request ({last})")
            tried.add(r.url)
            r.in_flight += 1
            r.requests += 1
            try:
                resp = await self._http.post(f"{r.url}/v1/completions", json=body,
                                             headers={"X-Request-Id": request.request_id})
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as e:
                # Not delivered, or the replica died under it: it is not running there any more.
                r.failures += 1
                r.healthy = False
                last = f"{r.url}: {type(e).__name__}"
                continue
            finally:
                r.in_flight -= 1
            if resp.status_code >= 500:
                r.failures += 1
                last = f"{r.url}: HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                raise EngineError(f"replica {r.url} refused the request: {resp.text[:300]}")
            return _generation(resp.json(), request)

    async def abort(self, request_ids: Sequence[str]) -> None:
        return None  # cancelling generate() closes the HTTP request; vLLM aborts on disconnect

    async def check_health(self) -> None:
        if not any(r.healthy for r in self.replicas):
            raise EngineUnavailable("no healthy engine replica")

    def stats(self) -> dict[str, int]:
        out = {"healthy_replicas": sum(r.healthy for r in self.replicas),
               "unfinished_requests": sum(r.in_flight for r in self.replicas)}
        for i, r in enumerate(self.replicas):
            out[f"replica_{i}_requests"] = r.requests
            out[f"replica_{i}_healthy"] = int(r.healthy)
        return out

    async def shutdown(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        if self._http is not None:
            await self._http.aclose()


def _generation(data: dict, request: GenerationRequest) -> Generation:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    logprobs = None
    lp = choice.get("logprobs")
    if request.logprobs is not None and lp and lp.get("top_logprobs"):
        logprobs = [{int(t.split(":", 1)[1]): v for t, v in (pos or {}).items() if t.startswith("token_id:")}
                    for pos in lp["top_logprobs"]]
    token_ids = choice.get("token_ids") or []
    details = usage.get("prompt_tokens_details") or {}
    return Generation(
        text=choice.get("text", ""),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens", len(request.prompt_token_ids))),
        generated_tokens=int(usage.get("completion_tokens", len(token_ids))),
        cached_prompt_tokens=details.get("cached_tokens"),
        token_ids=token_ids,
        logprobs=logprobs,
    )
