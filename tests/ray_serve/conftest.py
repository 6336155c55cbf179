"""A real local Ray instance for the session (2 CPUs, a small object store) with Serve's HTTP proxy
on a free port, and helpers to run our Serve application on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from rrm_server.settings import Settings
from tests.conftest import REPO
from tests.support.server import free_port


@pytest.fixture(scope="session")
def ray_http() -> Iterator[str]:
    """Serve's HTTP proxy URL on a local Ray instance started for these tests."""
    import ray
    from ray import serve

    # Replicas import tests.support.ray_engines: give the workers the checkout on their path.
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 << 20, namespace="rrm-tests",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@contextmanager
def running(url: str, settings: Settings, model_path: str, engine_factory: str | None = None,
            engine_overrides: dict[str, Any] | None = None, timeout: float = 300) -> Iterator[str]:
    """Our application deployed on the session's Serve (as ``rrm``), until /ready is 200."""
    from ray import serve

    from rrm_server.ray_serve.app import APP_NAME, application

    serve.run(application(settings, model_path, engine_factory, engine_overrides), name=APP_NAME,
              route_prefix="/")
    try:
        deadline = time.monotonic() + timeout
        while (r := httpx.get(f"{url}/ready", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        yield url
    finally:
        serve.delete(APP_NAME)


def engine_replicas() -> dict[str, int]:
    """Replica states of the engine deployment, e.g. {"RUNNING": 2}."""
    from ray import serve

    from rrm_server.ray_serve.app import APP_NAME, ENGINE

    app = serve.status().applications.get(APP_NAME)
    return {} if app is None or ENGINE not in app.deployments else dict(app.deployments[ENGINE].replica_states)


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
