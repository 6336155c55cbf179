"""Two engine replicas of the real vLLM CPU engine (bundled model) behind the Serve gateway."""

from __future__ import annotations

import httpx
import pytest

from rrm_server.settings import Settings
from tests.ray_serve.conftest import running

pytestmark = [pytest.mark.ray, pytest.mark.engine]


def test_two_vllm_replicas_answer_every_method(ray_http, model_dir):
    # Each replica on a core of its own with a 1 GiB KV cache: the two fit beside the suite.
    s = Settings(engine_replicas=2, engine_cpus=1, kv_cache_gib=1, cache_enabled=False,
                 log_format="text")
    with running(ray_http, s, str(model_dir), timeout=600) as url:
        body = {"query": "What is 2 + 2?", "responses": ["4", "5", "22"], "votes": 2, "max_tokens": 8, "seed": 1}
        pair = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "responses": ["4", "5"]}, timeout=300)
        assert pair.status_code == 200, pair.text
        assert len(pair.json()["votes"]) >= 1
        for method in ("elo", "knockout"):
            r = httpx.post(f"{url}/v1/judge/rank", json={**body, "method": method}, timeout=300)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["method"] == method and sorted(out["ranking"]) == [0, 1, 2]
            # Real generations: engine errors would be failed judgments with reason engine_error.
            reasons = [v["invalid_reason"] for m in out["matches"] for v in m["votes"]]
            assert "engine_error" not in reasons
        card = httpx.get(f"{url}/v1/models").json()["data"][0]
        assert card["id"] == s.model_name and card["replicas"] == 2
        # The same seeded request twice: the same votes, whichever replica each comparison ran on.
        again = httpx.post(f"{url}/v1/judge/pairwise", json={**body, "responses": ["4", "5"]}, timeout=300)
        assert [v["verdict"] for v in again.json()["votes"]] == [v["verdict"] for v in pair.json()["votes"]]
