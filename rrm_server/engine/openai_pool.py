"""A pool of remote ``vllm serve`` replicas driven over their OpenAI-compatible API.

Prompts go as token ids to ``/v1/completions`` (so the gateway's token-level prompt safety holds
remotely too), with ``return_token_ids`` and, for verdict probes, ``logprobs`` with tokens as ids;
votes with early exit or a deadline stream (``stream: true``, each chunk's token ids).

Routing (``engine/routing.py``, shared with the Ray Serve router): comparisons that share a prefix
(same query, same response shown first: the ``affinity_key`` the vote runner sets) go to the same
replica, chosen by rendezvous hashing over the healthy replicas, so that replica's prefix cache is
hit; a replica already carrying much more than its share of in-flight requests hands new keys to the
least loaded one (bounded load). Health checks
take replicas out and back in. A request is retried on another replica only when it could not have
run (connection refused or reset before a response), the replica answered 5xx, or it did not answer
within the read timeout (the request is closed, which aborts it there); never while it may still be
running elsewhere. When every replica it could go to failed, the comparison fails (``EngineError``:
an invalid vote); only when no replica is healthy is the pool unavailable. Cancelling a generation
closes its HTTP request, which makes vLLM abort it.

What is served is read from the replicas' ``/v1/models`` cards (id, root, max_model_len), not from
local settings: all replicas must serve the same weights under the same id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from rrm_server.engine.base import (
    EngineClient,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
)
from rrm_server.engine.routing import affinity_pick
from rrm_server.settings import Settings

logger = logging.getLogger(__name__)
# Seconds to wait for a replica's answer to one generation (a non-streamed completion sends nothing
# until it is done). Generous: up to max_tokens (8k for the RRM) on a busy GPU, behind vLLM's own
# queue, can take minutes; finite, so a replica that accepts and never answers cannot hold a
# comparison forever; --engine-read-timeout (Settings.engine_read_timeout) sets it.
ENGINE_READ_TIMEOUT = 900.0
CONNECT_TIMEOUT = 5.0
WRITE_TIMEOUT = 60.0  # sending one prompt (at most a few MB of JSON)


@dataclass
class Replica:
    url: str
    healthy: bool = False
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    missed_checks: int = 0
    mismatch: str | None = None  # why its model card keeps it out of the pool (logged once)


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
    read_timeout: float | None = None  # None: settings.engine_read_timeout if any, else ENGINE_READ_TIMEOUT

    def __post_init__(self) -> None:
        urls = [u.strip().rstrip("/") for u in (self.settings.engine_url or "").split(",") if u.strip()]
        if not urls:
            raise ValueError("--engine openai needs --engine-url URL[,URL...]")
        if self.settings.engine_routing == "power_of_two":
            raise ValueError("engine_routing power_of_two is Ray Serve's router (--ray); the --engine openai "
                             "pool routes by prefix_affinity or round_robin")
        self.replicas = [Replica(u) for u in urls]

    @property
    def ready(self) -> bool:
        return self._info is not None and any(r.healthy for r in self.replicas)

    async def start(self, model_path: str | None = None) -> ModelInfo:
        # model_path is the local copy (the tokenizer's); the replicas serve their own weights.
        self._info = None
        read = self.read_timeout or self.settings.engine_read_timeout
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(connect=CONNECT_TIMEOUT, read=read,
                                                             write=WRITE_TIMEOUT, pool=None),
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

    async def _card(self, r: Replica) -> dict:
        """The replica's card of the model this pool drives, from its ``/v1/models``."""
        assert self._http is not None
        data = (await self._http.get(f"{r.url}/v1/models", timeout=10)).json()["data"]
        wanted = self.settings.engine_model or self.settings.served_model_name or self.settings.model
        card = next((m for m in data if m["id"] == wanted), None)
        if card is None:
            if self.settings.engine_model:  # asked for explicitly: serving something else is an error
                served = [m["id"] for m in data]
                raise EngineUnavailable(f"replica {r.url} does not serve --engine-model "
                                        f"{self.settings.engine_model!r}; it serves {served}")
            card = data[0]
        return card

    async def _model_info(self) -> ModelInfo:
        """What the healthy replicas serve. They must agree on the weights (card ``root``) and the
        name requests are sent under (``id``): otherwise votes would depend on which replica a
        comparison was routed to, and share cache keys across different models, so the pool refuses
        to start rather than guess which replicas are right. A different context length alone is a
        harmless configuration difference, made safe by using the smallest (every prompt then fits
        every replica), with a warning."""
        healthy = [r for r in self.replicas if r.healthy]
        results = await asyncio.gather(*(self._card(r) for r in healthy), return_exceptions=True)
        cards: dict[str, dict] = {}
        for r, res in zip(healthy, results):
            if isinstance(res, EngineUnavailable) or not isinstance(res, (Exception, dict)):
                raise res  # a replica serves another model than the one asked for; or cancelled
            if isinstance(res, Exception):
                logger.warning("engine replica %s: no model card (%s: %s): taken out", r.url,
                               type(res).__name__, res)
                r.healthy = False
                continue
            cards[r.url] = res
        if not cards:
            raise EngineUnavailable("no healthy replica to read the model from")
        served = {url: (c["id"], c.get("root") or c["id"]) for url, c in cards.items()}
        if len(set(served.values())) > 1:
            raise EngineUnavailable("engine replicas serve different models (id, root): "
                                    + ", ".join(f"{u}: {v}" for u, v in served.items()))
        model_id, root = next(iter(served.values()))
        lens = {url: int(c["max_model_len"]) for url, c in cards.items() if c.get("max_model_len")}
        if not lens:
            if self.settings.max_model_len is None:
                raise EngineUnavailable(f"the replicas' model cards have no max_model_len (vLLM reports it): "
                                        f"set --max-model-len to theirs; cards: {list(cards.values())}")
            max_model_len = self.settings.max_model_len  # only when the replicas do not say
        else:
            max_model_len = min(lens.values())
            if len(set(lens.values())) > 1:
                logger.warning("engine replicas report different max_model_len %s: using the smallest, %d",
                               lens, max_model_len)
        self.model = model_id  # what requests to the replicas name
        # --served-model-name renames what this service reports (and requests must name); by default
        # the replicas' own name.
        fingerprint = "remote:" + hashlib.sha256(f"{root}\n{model_id}".encode()).hexdigest()[:16]
        return ModelInfo(name=self.settings.served_model_name or model_id, path=root,
                         max_model_len=max_model_len, fingerprint=fingerprint)

    async def _admits(self, r: Replica) -> bool:
        """A replica joining after start serves the same model, with room for the pool's context."""
        assert self._info is not None
        try:
            card = await self._card(r)
            why = None
            if (card["id"], card.get("root") or card["id"]) != (self.model, self._info.path):
                why = (f"serves {card['id']!r} from {card.get('root')!r}, "
                       f"not {self.model!r} from {self._info.path!r}")
            elif card.get("max_model_len") and int(card["max_model_len"]) < self._info.max_model_len:
                why = f"max_model_len {card['max_model_len']} is below the pool's {self._info.max_model_len}"
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, EngineUnavailable) as e:
            why = f"no usable model card ({type(e).__name__}: {e})"
        if why is not None and why != r.mismatch:
            logger.error("engine replica %s kept out of the pool: %s", r.url, why)
        r.mismatch = why
        return why is None

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, r: Replica) -> None:
        """A replica leaves after two failed checks in a row (a busy CPU box can miss one), or at
        once when a request cannot reach it; it comes back with its first good check (after start,
        once its model card matches the pool's)."""
        assert self._http is not None
        try:
            ok = (await self._http.get(f"{r.url}/health", timeout=5.0)).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok and not r.healthy and self._info is not None:
            ok = await self._admits(r)
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
        return affinity_pick(key, healthy, name=lambda r: r.url, load=lambda r: r.in_flight)

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
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
        return body

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._http is None:
            raise EngineUnavailable("the engine pool is not started")
        body = self._body(request)
        key = request.affinity_key or request.request_id
        tried: set[str] = set()
        last = "no healthy replica"
        while True:
            r = self.pick(key, tried)
            if r is None:
                if any(x.healthy for x in self.replicas):  # the pool serves: this comparison failed
                    raise EngineError(f"no engine replica could complete the request ({last})")
                raise EngineUnavailable(f"no engine replica could take the request ({last})")
            tried.add(r.url)
            r.in_flight += 1
            r.requests += 1
            try:
                resp = await self._http.post(f"{r.url}/v1/completions", json=body,
                                             headers={"X-Request-Id": request.request_id})
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
                    httpx.ReadError) as e:
                # Not delivered, or the replica died under it: it is not running there any more.
                r.failures += 1
                r.healthy = False
                last = f"{r.url}: {type(e).__name__}"
                continue
            except httpx.TimeoutException as e:
                # Write: never delivered whole. Read: no answer in time; httpx closes the request,
                # which makes vLLM abort it, so it is not left running there. The replica stays in
                # (it may only be busy): its health checks decide.
                r.failures += 1
                waited = f" after {self._http.timeout.read:g} s" if isinstance(e, httpx.ReadTimeout) else ""
                last = f"{r.url}: {type(e).__name__}{waited}"
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

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """A streamed completion (server-sent events with each step's token ids). Retried on
        another replica like ``generate`` until its first chunk; a replica lost after it fails the
        vote (its tokens are gone). Closing this iterator closes the HTTP request: vLLM aborts."""
        if self._http is None:
            raise EngineUnavailable("the engine pool is not started")
        body = {**self._body(request), "stream": True}
        key = request.affinity_key or request.request_id
        tried: set[str] = set()
        last = "no healthy replica"
        while True:
            r = self.pick(key, tried)
            if r is None:
                if any(x.healthy for x in self.replicas):
                    raise EngineError(f"no engine replica could complete the request ({last})")
                raise EngineUnavailable(f"no engine replica could take the request ({last})")
            tried.add(r.url)
            r.in_flight += 1
            r.requests += 1
            started = False
            try:
                async with self._http.stream("POST", f"{r.url}/v1/completions", json=body,
                                             headers={"X-Request-Id": request.request_id}) as resp:
                    if resp.status_code >= 500:
                        r.failures += 1
                        last = f"{r.url}: HTTP {resp.status_code}"
                        continue
                    if resp.status_code >= 400:
                        raise EngineError(f"replica {r.url} refused the request: {(await resp.aread())[:300]!r}")
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        choices = json.loads(line[6:]).get("choices") or []
                        if choices:
                            c = choices[0]
                            yield GenerationChunk(c.get("token_ids") or [], c.get("finish_reason"),
                                                  0 if started else len(request.prompt_token_ids))
                            started = True
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.TimeoutException) as e:
                if started:
                    raise EngineError(f"replica {r.url} was lost mid-generation ({type(e).__name__})") from None
                r.failures += 1
                if not isinstance(e, httpx.TimeoutException):
                    r.healthy = False
                last = f"{r.url}: {type(e).__name__}"
            finally:
                r.in_flight -= 1

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
