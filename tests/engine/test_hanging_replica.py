"""A remote `vllm serve` replica that hangs: the request deadline holds (504, the replica's requests
closed), and a replica whose health check hangs too is taken out of the pool."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.fake_replica import FakeReplica
from tests.support.server import serve_in_thread


@pytest.fixture
def gateway(model_dir, tokenizer) -> Iterator[tuple[str, FakeReplica]]:  # type: ignore[no-untyped-def]
    replica = FakeReplica(cards=[{"id": "hung", "max_model_len": 4096}], hang=True)
    settings = Settings(engine="openai", engine_url=replica.url, model=str(model_dir), request_timeout=1.5,
                        cache_enabled=False, max_model_len=4096)
    app = build_app(settings, tokenizer=tokenizer)
    app.state.runtime.engine.health_interval = 0.2
    with serve_in_thread(app) as url:
        yield url, replica


def test_the_request_deadline_holds_against_a_hung_replica(gateway):
    url, replica = gateway
    body = {"query": "q", "responses": ["a", "b"], "votes": 2, "early_stop": False, "verdict_probs": False}
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/judge/pairwise", json=body, timeout=30)
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "timeout" and err["code"] == 504 and "1.5 s" in err["message"]
    assert time.monotonic() - started < 30
    # Both votes reached the replica and were closed when the deadline neared; their forced verdict
    # reads hung too and were closed at the deadline (vLLM aborts a request whose client closes it).
    deadline = time.monotonic() + 10
    while replica.closed_by_client < 4:
        assert time.monotonic() < deadline, (len(replica.bodies), replica.closed_by_client)
        time.sleep(0.05)
    assert sorted(b["max_tokens"] == 1 for b in replica.bodies) == [False, False, True, True]
    assert httpx.get(f"{url}/health").status_code == 200  # the gateway itself is fine


# waits out real health-check timeouts: ~10 s
@pytest.mark.slow
def test_a_replica_whose_health_check_hangs_leaves_the_pool(gateway):
    url, replica = gateway
    assert httpx.get(f"{url}/ready").status_code == 200
    replica.hang_health = True
    deadline = time.monotonic() + 30  # two missed checks of 5 s each
    while (r := httpx.get(f"{url}/ready")).status_code == 200:
        assert time.monotonic() < deadline, "a hung replica stayed in the pool"
        time.sleep(0.2)
    assert r.json()["error"]["type"] == "engine_unavailable"
    r = httpx.post(f"{url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b"]}, timeout=30)
    assert r.status_code == 503 and r.json()["error"]["code"] == 503
