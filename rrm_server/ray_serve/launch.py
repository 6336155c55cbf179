"""``rrm-server serve --ray``: start (or join) Ray, run the Serve application, wait until it is
ready, serve until SIGTERM/SIGINT, then shut Serve down.

A Ray cluster that cannot be reached, an application that fails to deploy, or replicas that are not
ready within --ray-start-timeout (e.g. resources the cluster does not have) end start-up with a
message and a non-zero exit, never a hang.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import httpx

from rrm_server.settings import Settings

logger = logging.getLogger("rrm_server.ray")
EXIT_START_FAILED = 4
CONNECT_TIMEOUT = 5.0  # seconds to reach RAY_ADDRESS


class StartFailed(Exception):
    pass


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a RAY_ADDRESS like ``host:6379`` or ``ray://host:10001``; None for ``auto``."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect() -> None:
    import ray

    address = os.environ.get("RAY_ADDRESS")
    endpoint = gcs_endpoint(address) if address else None
    if endpoint is not None:
        # ray.init retries an unreachable cluster for minutes, logging as it goes: fail fast instead.
        try:
            socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT).close()
        except OSError as e:
            raise StartFailed(f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {e}") from None
    try:
        # A local instance with this machine's CPUs, or the cluster at RAY_ADDRESS (joined as is).
        if address:
            ray.init(address=address, namespace="rrm-server")
        else:  # "local": a new instance, never a cluster some other job started on this machine
            ray.init(address="local", namespace="rrm-server", include_dashboard=False)
    except Exception as e:  # ConnectionError, TimeoutError, ...: the address is wrong or down
        raise StartFailed(f"cannot reach the Ray cluster at {address or 'a new local instance'}: "
                          f"{type(e).__name__}: {e}") from e


def wait_ready(settings: Settings, url: str) -> None:
    """Until the application is RUNNING and the gateway's /ready is 200 (the engines answer)."""
    from ray import serve

    from rrm_server.ray_serve.app import APP_NAME

    deadline = time.monotonic() + settings.ray_start_timeout
    last = "not deployed yet"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        if app is not None:
            last = f"{app.status}: {app.message}" if app.message else str(app.status)
            if app.status == "DEPLOY_FAILED":
                raise StartFailed(f"the Serve application failed to deploy: {app.message}")
            if app.status == "RUNNING":
                try:
                    r = httpx.get(f"{url}/ready", timeout=5)
                    if r.status_code == 200:
                        return
                    last = f"/ready {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    last = f"/ready: {type(e).__name__}"
            else:
                states = {name: dict(d.replica_states) for name, d in app.deployments.items()}
                last = f"{app.status} {states}"
        time.sleep(1.0)
    raise StartFailed(f"not ready within --ray-start-timeout {settings.ray_start_timeout:g} s ({last}); "
                      "does the cluster have the CPUs/GPUs the replicas ask for?")


def serve_on_ray(settings: Settings, engine_factory: str | None = None) -> int:
    """Run until a signal; returns the process exit status."""
    from ray import serve

    from rrm_server.ray_serve.app import APP_NAME, application
    from rrm_server.serving.runtime import resolve_model_path

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    model_path = resolve_model_path(settings)  # once, before any replica looks for it
    joined = bool(os.environ.get("RAY_ADDRESS"))
    try:
        connect()
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run_many([serve.RunTarget(application(settings, model_path, engine_factory), name=APP_NAME,
                                        route_prefix="/")], wait_for_applications_running=False)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        wait_ready(settings, f"http://{host}:{settings.port}")
    except StartFailed as e:
        logger.error("start-up failed: %s", e)
        _shutdown(joined)
        return EXIT_START_FAILED
    logger.info("serving on Ray at http://%s:%d (%d engine replica(s))", settings.host, settings.port,
                settings.engine_replicas)
    stop.wait()
    logger.info("stopping: shutting the application down (in-flight requests get --drain-timeout)")
    _shutdown(joined)
    return 0


def _shutdown(joined: bool) -> None:
    """Our own local instance goes entirely; on a joined cluster only our application (other jobs'
    Serve applications stay)."""
    import ray
    from ray import serve

    from rrm_server.ray_serve.app import APP_NAME

    if not ray.is_initialized():
        return
    try:
        if joined:
            serve.delete(APP_NAME)
        else:
            serve.shutdown()
    finally:
        ray.shutdown()
