"""Serve options from the command line's settings, and the CPU binding of engine replicas (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.ray_serve.app import ROUTER, engine_options, gateway_options
from rrm_server.ray_serve.engine_replica import cpu_binding
from rrm_server.settings import Settings


@given(st.integers(0, 64), st.integers(1, 4), st.integers(1, 16))
def test_a_replica_gets_its_own_cores_while_there_are_enough(rank, per_replica, ncores):
    cores = list(range(100, 100 + ncores))
    chosen = [int(c) for c in cpu_binding(rank, per_replica, cores).split(",")]
    assert len(chosen) == min(per_replica, ncores) and set(chosen) <= set(cores)
    if (rank + 1) * per_replica <= ncores:  # no wrap-around: disjoint from every lower rank's
        for other in range(rank):
            assert not set(chosen) & {int(c) for c in cpu_binding(other, per_replica, cores).split(",")}


def test_fixed_replicas_with_affinity_routing_and_bounded_queues():
    o = engine_options(Settings(ray=True, engine_replicas=3, engine_max_ongoing=64, engine_max_queued=10), gpu=False)
    assert o["num_replicas"] == 3 and "autoscaling_config" not in o
    assert (o["max_ongoing_requests"], o["max_queued_requests"]) == (64, 10)
    assert o["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0}
    assert o["request_router_config"].request_router_class == ROUTER


def test_autoscaling_between_the_minimum_and_the_maximum():
    o = engine_options(Settings(ray=True, engine_replicas=2, engine_max_replicas=5, engine_target_ongoing=8),
                       gpu=True)
    a = o["autoscaling_config"]
    assert o["num_replicas"] == "auto"
    assert (a.min_replicas, a.initial_replicas, a.max_replicas, a.target_ongoing_requests) == (2, 2, 5, 8)
    assert o["ray_actor_options"]["num_gpus"] == 1


def test_tensor_parallel_replicas_get_a_packed_placement_group():
    o = engine_options(Settings(ray=True, tensor_parallel_size=4, engine_cpus=2), gpu=True)
    assert o["placement_group_bundles"] == [{"CPU": 2.0, "GPU": 1}, {"GPU": 1}, {"GPU": 1}, {"GPU": 1}]
    assert o["placement_group_strategy"] == "STRICT_PACK"
    assert "placement_group_bundles" not in engine_options(Settings(ray=True, tensor_parallel_size=4), gpu=False)


def test_rays_default_router_when_asked_and_no_round_robin():
    assert "request_router_config" not in engine_options(Settings(engine_routing="power_of_two"), False)
    with pytest.raises(ValueError, match="pool's"):
        engine_options(Settings(engine_routing="round_robin"), False)


def test_the_pool_refuses_rays_router():
    from rrm_server.engine.openai_pool import OpenAIPoolEngine

    with pytest.raises(ValueError, match="Ray Serve's router"):
        OpenAIPoolEngine(Settings(engine="openai", engine_url="http://x", engine_routing="power_of_two"))


def test_the_gateway_leaves_admission_to_our_middleware():
    s = Settings(ray=True, gateway_replicas=3, max_concurrent_requests=10, max_queued_requests=20)
    g = gateway_options(s)
    assert g["num_replicas"] == 3 and g["max_ongoing_requests"] > 30  # our 429 comes first, with our shape


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ray": True, "engine": "openai", "engine_url": "http://x"}, "does not combine"),
    ({"ray": True, "engine_routing": "round_robin"}, "--engine openai"),
    ({"ray": True, "engine_replicas": 3, "engine_max_replicas": 2}, "at least"),
])
def test_settings_that_do_not_fit_together_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Settings(**kwargs)
