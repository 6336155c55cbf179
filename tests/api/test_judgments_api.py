"""Recorded judgments, the status endpoint and the inspector's static files over real HTTP (scripted
engine): auth, 404s in the one error shape, bounded and newest-first listings, recording that never
fails a judgment, the page's security headers and --no-ui."""

from __future__ import annotations

import contextlib
import re

import httpx
import pytest
import redis

from rrm_server.api.app import build_app
from rrm_server.api.ui import CSP, UI_DIR
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import free_port, serve_in_thread

PAIR = {"query": "Which is longer?", "responses": ["a", "bb"], "seed": 1}
RANK = {"query": "Rank them", "responses": ["a", "bbb", "cc", "dddd", "e"], "method": "knockout"}


@contextlib.contextmanager
def service(model_dir, tokenizer, **overrides):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), model_fingerprint="test", **overrides)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url


def post(url: str, path: str, body: dict, headers: dict | None = None) -> dict:
    r = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, type_: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_ and body["error"]["code"] == status
    return body["error"]


@pytest.fixture(scope="module")
def recording(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    with service(model_dir, tokenizer, record_judgments=3) as url:
        yield url


def test_recording_is_off_by_default(base_url, engine):
    post(base_url, "/v1/judge/pairwise", PAIR)
    listing = httpx.get(f"{base_url}/v1/judgments").json()
    assert listing["data"] == []
    assert listing["recording"] == {"enabled": False, "backend": "off", "capacity": 0, "ttl": 0}
    err = assert_error(httpx.get(f"{base_url}/v1/judgments/anything"), 404, "not_found")
    assert "--record-judgments" in err["message"]


def test_a_record_is_the_request_and_the_response_returned(recording):
    sent = {**PAIR, "votes": 3, "include_reasoning": True}
    returned = post(recording, "/v1/judge/pairwise", sent)
    record = httpx.get(f"{recording}/v1/judgments/{returned['id']}").json()
    assert record["object"] == "judgment"
    assert record["response"] == returned
    assert {k: record["request"][k] for k in sent} == sent
    s = record["summary"]
    assert s["id"] == returned["id"] and s["kind"] == "pairwise" and s["method"] == "pairwise"
    assert s["winner"] == returned["winner"] == 1 and s["status"] == "decided"
    assert s["responses"] == 2 and s["votes"] == len(returned["votes"]) and s["query_preview"] == PAIR["query"]


def test_the_listing_is_newest_first_and_keeps_the_last_n(recording):
    ids = [post(recording, "/v1/judge/pairwise", {**PAIR, "seed": 10})["id"],
           post(recording, "/v1/judge/rank", RANK)["id"],
           post(recording, "/v1/judge/rank", {**RANK, "method": "elo"})["id"],
           post(recording, "/v1/judge/pairwise", {**PAIR, "seed": 11})["id"]]
    listing = httpx.get(f"{recording}/v1/judgments").json()
    assert [s["id"] for s in listing["data"]] == ids[:0:-1]  # capacity 3: the oldest is gone
    assert listing["recording"] == {"enabled": True, "backend": "memory", "capacity": 3, "ttl": 86400}
    assert [s["method"] for s in listing["data"]] == ["pairwise", "elo", "knockout"]
    assert listing["data"][2]["responses"] == 5 and listing["data"][2]["winner"] == 3  # the longest
    assert_error(httpx.get(f"{recording}/v1/judgments/{ids[0]}"), 404, "not_found")
    assert httpx.get(f"{recording}/v1/judgments/{ids[1]}").json()["response"]["method"] == "knockout"
    assert [s["id"] for s in httpx.get(f"{recording}/v1/judgments?limit=2").json()["data"]] == ids[:1:-1]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "many"])
def test_the_listing_is_bounded(recording, limit):
    err = assert_error(httpx.get(f"{recording}/v1/judgments", params={"limit": limit}), 400, "invalid_request")
    assert "limit" in err["param"]


def test_unknown_id_is_a_404(recording):
    err = assert_error(httpx.get(f"{recording}/v1/judgments/pairwise-0000"), 404, "not_found")
    assert err["param"] == "judgment_id" and "pairwise-0000" in err["message"]


def test_errors_are_not_recorded(recording):
    before = httpx.get(f"{recording}/v1/judgments").json()["data"]
    assert_error(httpx.post(f"{recording}/v1/judge/pairwise", json={"query": "q", "responses": ["a"]}), 400,
                 "invalid_request")
    assert httpx.get(f"{recording}/v1/judgments").json()["data"] == before


def test_api_keys_cover_the_data_but_not_the_page(model_dir, tokenizer):
    with service(model_dir, tokenizer, api_keys="k1", record_judgments=5) as url:
        key = {"Authorization": "Bearer k1"}
        judged = post(url, "/v1/judge/pairwise", PAIR, headers=key)
        for path in ("/v1/judgments", f"/v1/judgments/{judged['id']}", "/v1/status"):
            assert_error(httpx.get(f"{url}{path}"), 401, "unauthorized")
            assert_error(httpx.get(f"{url}{path}", headers={"Authorization": "Bearer k2"}), 401, "unauthorized")
            assert httpx.get(f"{url}{path}", headers=key).status_code == 200
        for path in ("/ui/", "/ui/app.js", "/ui/style.css"):  # files without data: no key needed
            assert httpx.get(f"{url}{path}").status_code == 200
        assert httpx.get(f"{url}/ui").status_code == 307  # to /ui/, not a 401
        assert_error(httpx.get(f"{url}/uix"), 401, "unauthorized")  # only the tree itself is open


def test_the_page_has_strict_security_headers(base_url, engine):
    r = httpx.get(f"{base_url}/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe" not in CSP and "frame-ancestors 'none'" in CSP
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    js = httpx.get(f"{base_url}/ui/app.js")
    assert js.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert js.headers["content-security-policy"] == CSP
    assert_error(httpx.get(f"{base_url}/ui/missing.js"), 404, "not_found")
    assert httpx.get(f"{base_url}/ui/", follow_redirects=True).text == (UI_DIR / "index.html").read_text()


def test_the_page_needs_nothing_the_csp_forbids():
    html = (UI_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    for f in UI_DIR.iterdir():
        text = f.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text) if f.suffix == ".html" else True, f  # no inline handlers
        assert "style=" not in text or f.suffix == ".css", f
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, f


def test_no_ui_removes_the_page(model_dir, tokenizer):
    with service(model_dir, tokenizer, ui=False) as url:
        assert_error(httpx.get(f"{url}/ui/"), 404, "not_found")
        assert_error(httpx.get(f"{url}/ui/app.js"), 404, "not_found")
        assert httpx.get(f"{url}/v1/status").status_code == 200  # the JSON API stays


def test_status_reads_the_service_state(recording):
    post(recording, "/v1/judge/pairwise", {**PAIR, "seed": 77})
    post(recording, "/v1/judge/pairwise", {**PAIR, "seed": 77})  # the same votes: cache hits
    s = httpx.get(f"{recording}/v1/status").json()
    assert s["state"] == "ready" and s["ready"] is True and s["model"] == "scripted-judge"
    assert s["replicas"] == 1 and s["queue"]["waiting"] == 0 and s["queue"]["max_waiting"] == 1024
    assert s["cache"]["backend"] == "memory" and s["cache"]["hits"] >= 1 and 0 < s["cache"]["hit_rate"] <= 1
    assert s["recording"]["enabled"] is True and s["recording"]["capacity"] == 3


def test_redis_down_never_fails_a_judgment(model_dir, tokenizer):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with service(model_dir, tokenizer, record_judgments=5, cache_url=dead, cache_timeout=0.05) as url:
        for seed in range(3):
            assert post(url, "/v1/judge/pairwise", {**PAIR, "seed": seed})["winner"] == 1
        assert_error(httpx.get(f"{url}/v1/judgments"), 503, "cache_unavailable")
        assert httpx.get(f"{url}/v1/status").json()["recording"]["backend"] == "redis"
        metrics = httpx.get(f"{url}/metrics").text
        assert re.search(r'rrm_judgment_records_total\{result="failed"\} [1-9]', metrics)


@pytest.mark.redis
def test_records_in_redis_expire_and_are_trimmed(model_dir, tokenizer, redis_prefix):
    with service(model_dir, tokenizer, record_judgments=2, cache_url="redis://127.0.0.1:6379/0",
                 cache_prefix=redis_prefix, judgments_ttl=600) as url:
        ids = [post(url, "/v1/judge/pairwise", {**PAIR, "seed": 100 + i})["id"] for i in range(3)]
        listing = httpx.get(f"{url}/v1/judgments").json()
        assert [s["id"] for s in listing["data"]] == ids[:0:-1] and listing["recording"]["backend"] == "redis"
        assert httpx.get(f"{url}/v1/judgments/{ids[2]}").json()["summary"]["id"] == ids[2]
        assert_error(httpx.get(f"{url}/v1/judgments/{ids[0]}"), 404, "not_found")
    client = redis.Redis()
    records = sorted(k.decode() for k in client.scan_iter(match=f"{redis_prefix}judgment:*"))
    assert records == sorted(f"{redis_prefix}judgment:{i}" for i in ids[1:])  # the trimmed one is deleted
    assert all(0 < client.pttl(k) <= 600_000 for k in [*records, f"{redis_prefix}judgments"])
