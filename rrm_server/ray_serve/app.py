"""The Serve application: the gateway (our FastAPI app) as ingress over the engine deployment.

``application(settings, model_path)`` is what ``rrm-server serve --ray`` runs; ``build_app(args)`` is
the builder for Serve config files (``serve run deploy/ray/serve.yaml``, KubeRay's ``serveConfigV2``),
taking the same options as the command line (``Settings`` field names; RRM_* environment variables
fill the rest).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.config import AutoscalingConfig, RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from rrm_server.api.app import build_app as build_fastapi_app
from rrm_server.engine.ray_handle import RayHandleEngine
from rrm_server.protocol.judge import PairwiseRequest, PairwiseResponse, RankRequest, RankResponse
from rrm_server.ray_serve.engine_replica import EngineReplica
from rrm_server.serving.runtime import Runtime, State, resolve_model_path
from rrm_server.settings import Settings

APP_NAME = "rrm"
ENGINE = "JudgeEngine"
GATEWAY = "Gateway"
ROUTER = "rrm_server.ray_serve.router:AffinityRouter"


@serve.ingress()
class Gateway:
    """One HTTP gateway replica: the same app as ``rrm-server serve``, its engine the handle."""

    def __init__(self, settings: dict[str, Any], engine: DeploymentHandle) -> None:
        self.settings = Settings(**settings)
        self.engine = RayHandleEngine(engine, start_timeout=self.settings.ray_start_timeout,
                                      replicas=running_engine_replicas)
        self.fastapi_app: Any = None  # (`app` is Serve's, on the ingress wrapper)

    def __serve_build_asgi_app__(self) -> Any:
        self.fastapi_app = build_fastapi_app(self.settings, engine=self.engine)
        return self.fastapi_app

    # In-cluster callers skip HTTP (rrm_server/ray_serve/client.py): the serving layer directly, with
    # the same records the HTTP routes send. No API keys or admission queue on this path (callers are
    # inside the cluster; Serve's max_ongoing_requests bounds them); judgments metrics still count.
    async def pairwise(self, request: PairwiseRequest) -> PairwiseResponse:
        return await self._runtime().require_serving().pairwise(request)

    async def rank(self, request: RankRequest) -> RankResponse:
        return await self._runtime().require_serving().rank(request)

    def _runtime(self) -> Runtime:
        return self.fastapi_app.state.runtime  # built before Serve routes calls to this replica

    def check_health(self) -> None:
        state = self.fastapi_app.state.runtime.state if self.fastapi_app is not None else State.loading
        if not state.alive:  # failed for good: Serve replaces this replica
            raise RuntimeError(f"gateway {state.value}: {self.fastapi_app.state.runtime.error}")


def running_engine_replicas() -> int:
    """Engine replicas Serve reports RUNNING (for /ready and /v1/models)."""
    app = serve.status().applications.get(serve.get_replica_context().app_name)
    deployment = app.deployments.get(ENGINE) if app is not None else None
    return 0 if deployment is None else deployment.replica_states.get("RUNNING", 0)


def gpu_cluster(settings: Settings) -> bool:
    if settings.device != "auto":
        return settings.device == "cuda"
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def engine_options(settings: Settings, gpu: bool) -> dict[str, Any]:
    """Serve options of the engine deployment, from the command line's settings."""
    tp = settings.tensor_parallel_size
    options: dict[str, Any] = {
        "name": ENGINE,
        "max_ongoing_requests": settings.engine_max_ongoing,  # vLLM batches them
        "max_queued_requests": settings.engine_max_queued,
        "ray_actor_options": {"num_cpus": settings.engine_cpus, "num_gpus": 1 if gpu else 0},
        # A replica loads its model in __init__: minutes for a large one.
        "health_check_timeout_s": 60,
        "graceful_shutdown_timeout_s": settings.drain_timeout,
    }
    if gpu and tp > 1:  # one replica's GPUs on one node; vLLM's Ray executor puts its workers there
        options["placement_group_bundles"] = [{"CPU": settings.engine_cpus, "GPU": 1}] + [{"GPU": 1}] * (tp - 1)
        options["placement_group_strategy"] = "STRICT_PACK"
    if settings.engine_max_replicas is not None and settings.engine_max_replicas > settings.engine_replicas:
        options["num_replicas"] = "auto"
        options["autoscaling_config"] = AutoscalingConfig(
            min_replicas=settings.engine_replicas, initial_replicas=settings.engine_replicas,
            max_replicas=settings.engine_max_replicas, target_ongoing_requests=settings.engine_target_ongoing)
    else:
        options["num_replicas"] = settings.engine_replicas
    if settings.engine_routing == "round_robin":
        raise ValueError("engine_routing round_robin is the --engine openai pool's; on Ray Serve: "
                         "prefix_affinity or power_of_two")
    if settings.engine_routing == "prefix_affinity":
        options["request_router_config"] = RequestRouterConfig(request_router_class=ROUTER)
    return options


def gateway_options(settings: Settings) -> dict[str, Any]:
    return {
        "name": GATEWAY,
        "num_replicas": settings.gateway_replicas,
        # Our own admission control answers 429 beyond these (api/middleware.py).
        "max_ongoing_requests": settings.max_concurrent_requests + settings.max_queued_requests + 16,
        "ray_actor_options": {"num_cpus": 0},  # mostly waiting on the engines; tokenizing is light
        "graceful_shutdown_timeout_s": settings.drain_timeout,
    }


def application(settings: Settings, model_path: str, engine_factory: str | None = None,
                engine_overrides: dict[str, Any] | None = None) -> Application:
    """Gateway -> engine deployment, ready for ``serve.run``. ``engine_factory`` (``module:function``
    taking ``Settings``) replaces the vLLM engine in each replica (tests use a scripted one);
    ``engine_overrides`` are Serve options of the engine deployment that win over ours."""
    wire = settings.model_dump(mode="json")
    gpu = gpu_cluster(settings)
    # TP > 1 inside a replica: vLLM's Ray executor places its workers in the replica's placement group.
    executor = "ray" if gpu and settings.tensor_parallel_size > 1 else None
    engine = serve.deployment(EngineReplica).options(**{**engine_options(settings, gpu), **(engine_overrides or {})})
    gateway = serve.deployment(Gateway).options(**gateway_options(settings))
    return gateway.bind(wire, engine.bind(wire, model_path, engine_factory, executor))


def settings_from_args(args: dict[str, Any]) -> Settings:
    """A config file's ``args``: Settings field names (a typo is an error, not a silent default)."""
    unknown = sorted(set(args) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"unknown rrm-server options in the Serve config's args: {', '.join(unknown)} "
                         "(they are Settings field names: `rrm-server serve --help` with - as _)")
    return Settings(**args)


def build_app(args: dict[str, Any]) -> Application:
    """Builder for Serve config files: ``args`` are Settings fields (``model``, ``engine_replicas``,
    ...), plus ``engine_factory`` (tests)."""
    args = dict(args)
    factory = args.pop("engine_factory", None)
    settings = settings_from_args(args)
    return application(settings, resolve_model_path(settings), factory)
