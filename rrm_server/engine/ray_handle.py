"""``EngineClient`` over a Ray Serve ``DeploymentHandle`` to the engine deployment (``--ray``).

Routing, autoscaling and queue bounds are Serve's (``rrm_server/ray_serve``); this client adds what
a judge needs on top:

* failover: a comparison whose replica died under it (``RayActorError``) or whose engine died
  (``EngineUnavailable`` from the replica) is re-run on another replica. A vote is seeded, so the
  re-run is the same vote. Serve itself retries only requests no replica accepted yet. With no
  replica left the handle waits for Serve to start one, within the request's deadline;
* backpressure: a full queue (``BackPressureError``) becomes ``EngineBusy`` (our 429);
* health for /ready, from a background check of the deployment (any replica answering).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from rrm_server.engine.base import (
    EngineBusy,
    EngineClient,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
)

logger = logging.getLogger(__name__)
HEALTH_TIMEOUT = 10.0  # seconds for one replica to answer a health check
# Re-runs of one comparison after its replica died: enough to ride out a replica or two being
# replaced, few enough that a comparison which kills every engine it touches fails as one vote.
MAX_RERUNS = 3


def _as_own_request(call: Callable[[GenerationRequest], Any], request: GenerationRequest) -> Any:
    """``call(request)`` as a Serve request of its own. Inside a gateway replica every handle call
    inherits the HTTP request's internal id, and Serve's router matches a chosen replica to the
    pending call by that id: the dozens of comparisons of one rank request would share it, one
    would get the replica and the rest wait for ever (seen with a custom router; the FIFO matching
    of Ray's default router hides it at the cost of giving a replica to whichever call is oldest,
    which would defeat affinity). ray 2.60 has no public option for it, hence the context variable."""
    import uuid

    from ray.serve import context

    current = context._get_serve_request_context()
    token = context._serve_request_context.set(replace(current, _internal_request_id=uuid.uuid4().hex))
    try:
        return call(request)
    finally:
        context._serve_request_context.reset(token)


class RayHandleEngine(EngineClient):
    def __init__(self, handle: Any, start_timeout: float = 600.0, health_interval: float = 2.0,
                 replicas: Callable[[], int] | None = None) -> None:
        self.handle = handle
        self.start_timeout = start_timeout
        self.health_interval = health_interval
        self._count_replicas = replicas  # blocking (asks Serve's controller): run in a thread
        self.running_replicas: int | None = None
        self._info: ModelInfo | None = None
        self._healthy = False
        self._health_task: asyncio.Task[None] | None = None
        self.reruns = 0  # comparisons re-run after their replica died (tests, stats)

    @property
    def ready(self) -> bool:
        return self._info is not None and self._healthy

    async def start(self, model_path: str | None = None) -> ModelInfo:
        # The replicas load their own weights; this waits until one answers (Serve may still be
        # starting them: the handle queues the call until a replica is up).
        try:
            self._info = await asyncio.wait_for(self.handle.model_info.remote(), self.start_timeout)
        except TimeoutError:
            raise EngineUnavailable(f"no engine replica answered within {self.start_timeout:g} s") from None
        self._healthy = True
        self._health_task = asyncio.create_task(self._health_loop(), name="rrm-ray-engine-health")
        return self._info

    async def generate(self, request: GenerationRequest) -> Generation:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        if self._info is None:
            raise EngineUnavailable("the engine deployment is not started")
        for attempt in range(MAX_RERUNS + 1):
            response = _as_own_request(self.handle.generate.remote, request)
            try:
                return await response
            except asyncio.CancelledError:
                response.cancel()  # aborts it on the replica
                raise
            except BackPressureError as e:
                raise EngineBusy(f"the engine replicas' queues are full ({e.message})",
                                 retry_after=getattr(e, "retry_after_s", None) or 1.0) from None
            except (RayActorError, EngineUnavailable) as e:
                # Died under it (or its engine did): not running anywhere now, so a re-run is safe.
                last = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if attempt < MAX_RERUNS:
                    self.reruns += 1
                    logger.warning("engine replica lost a comparison (%s); re-running it", last)
            except EngineError as e:  # this generation failed on a live engine: an invalid vote
                # A replica's exception arrives as Ray's task error (its str is the remote traceback):
                # the vote records the engine's own message.
                cause = getattr(e, "cause", None)
                raise EngineError(str(cause if isinstance(cause, Exception) else e)) from None
            except Exception as e:  # the replica's own failure, not the engine's: one invalid vote
                raise EngineError(f"{type(e).__name__}: {str(e)[:300]}") from e
        raise EngineError(f"the comparison lost its engine replica {MAX_RERUNS + 1} times ({last})")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """The replica's stream through a streaming handle. A replica lost before the first chunk
        is failed over like ``generate``; after it, the vote fails (its tokens are gone)."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        if self._info is None:
            raise EngineUnavailable("the engine deployment is not started")
        for attempt in range(MAX_RERUNS + 1):
            responses = _as_own_request(self.handle.options(stream=True).stream.remote, request)
            started = False
            try:
                async for chunk in responses:
                    started = True
                    yield chunk
                return
            except (asyncio.CancelledError, GeneratorExit):
                responses.cancel()  # aborts it on the replica
                raise
            except BackPressureError as e:
                raise EngineBusy(f"the engine replicas' queues are full ({e.message})",
                                 retry_after=getattr(e, "retry_after_s", None) or 1.0) from None
            except (RayActorError, EngineUnavailable) as e:
                last = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if started:
                    raise EngineError(f"the engine replica was lost mid-generation ({last})") from None
                if attempt < MAX_RERUNS:
                    self.reruns += 1
                    logger.warning("engine replica lost a comparison (%s); re-running it", last)
            except EngineError as e:
                cause = getattr(e, "cause", None)
                raise EngineError(str(cause if isinstance(cause, Exception) else e)) from None
            except Exception as e:  # noqa: BLE001 (the replica's own failure: one invalid vote)
                raise EngineError(f"{type(e).__name__}: {str(e)[:300]}") from e
        raise EngineError(f"the comparison lost its engine replica {MAX_RERUNS + 1} times ({last})")

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await asyncio.wait_for(self.handle.check_health.remote(), HEALTH_TIMEOUT)
                healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 (any failure: no replica answered healthy in time)
                healthy = False
                if self._healthy:
                    logger.warning("no engine replica answered a health check: %s", type(e).__name__)
            self._healthy = healthy
            if self._count_replicas is not None:
                with contextlib.suppress(Exception):
                    self.running_replicas = await asyncio.to_thread(self._count_replicas)

    async def abort(self, request_ids: Sequence[str]) -> None:
        return None  # cancelling generate() cancels the Serve request, which aborts it in vLLM

    async def check_health(self) -> None:
        if not self.ready:
            raise EngineUnavailable("no engine replica answers")

    def stats(self) -> dict[str, int]:
        out = {"engine_reruns": self.reruns}
        if self.running_replicas is not None:
            out["healthy_replicas"] = self.running_replicas
        return out

    async def shutdown(self) -> None:
        task, self._health_task = self._health_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._info = None
