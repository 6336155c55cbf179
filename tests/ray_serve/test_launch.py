"""``rrm-server serve --ray`` start-up failures: a clear message and a non-zero exit, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rrm_server.ray_serve.launch import EXIT_START_FAILED, gcs_endpoint
from tests.support.server import free_port


@pytest.mark.parametrize(("address", "endpoint"), [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)),
    ("[::1]:6379", ("::1", 6379)), ("auto", None), ("ray://head", None),
])
def test_the_gcs_endpoint_of_an_address(address, endpoint):
    assert gcs_endpoint(address) == endpoint


def serve(tokenizer_dir, env: dict[str, str], *flags: str, timeout: float) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "RRM_MODEL": str(tokenizer_dir), "RRM_LOG_FORMAT": "text", **env}
    return subprocess.run([sys.executable, "-m", "rrm_server", "serve", "--ray", "--port", str(free_port()), *flags],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ray
def test_an_unreachable_cluster_fails_fast(tokenizer_dir):
    dead = f"127.0.0.1:{free_port()}"
    r = serve(tokenizer_dir, {"RAY_ADDRESS": dead}, timeout=60)
    assert r.returncode == EXIT_START_FAILED
    assert f"cannot reach the Ray cluster at RAY_ADDRESS={dead}" in r.stderr + r.stdout


@pytest.mark.ray
def test_replicas_that_cannot_be_placed_fail_start_up_within_the_timeout(tokenizer_dir):
    # A local instance with this machine's CPUs: an engine replica asking for 64 is never placed.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_ADDRESS"] = ""
    r = serve(tokenizer_dir, env, "--engine-cpus", "64", "--ray-start-timeout", "20", timeout=240)
    out = r.stderr + r.stdout
    assert r.returncode == EXIT_START_FAILED, out[-2000:]
    assert "not ready within --ray-start-timeout 20 s" in out and "CPUs/GPUs" in out
