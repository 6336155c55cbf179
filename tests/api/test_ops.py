"""Metrics, request ids, API keys, body limits, admission control and deadlines over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rrm_server.api.app import build_app
from rrm_server.ops.logging import REQUEST_ID, configure_logging
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread

OK = {"query": "q", "responses": ["a", "bb"]}


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    out = {}
    text = httpx.get(f"{url}/metrics").text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@contextlib.contextmanager
def service(model_dir, tokenizer, wait_ready: bool = True, **overrides):  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), model_fingerprint="test", **overrides)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer), wait_ready=wait_ready) as url:
        yield url, engine


def test_metrics_move_after_requests(base_url, engine):
    before = scrape(base_url)
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={**OK, "votes": 3, "early_stop": False})
    assert r.status_code == 200
    httpx.post(f"{base_url}/v1/judge/pairwise", json={**OK, "votes": 3, "early_stop": False})  # all cached
    httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q"})  # a 400
    after = scrape(base_url)
    ep = "/v1/judge/pairwise"
    assert value(after, "rrm_requests_total", endpoint=ep, status="200") - \
        value(before, "rrm_requests_total", endpoint=ep, status="200") == 2
    assert value(after, "rrm_requests_total", endpoint=ep, status="400") - \
        value(before, "rrm_requests_total", endpoint=ep, status="400") == 1
    assert value(after, "rrm_request_duration_seconds_count", endpoint=ep) - \
        value(before, "rrm_request_duration_seconds_count", endpoint=ep) == 3
    assert value(after, "rrm_judgments_total", outcome="second", reason="none") - \
        value(before, "rrm_judgments_total", outcome="second", reason="none") == 3
    lookups = "rrm_cache_lookups_total"
    hits = value(after, lookups, result="hit") - value(before, lookups, result="hit")
    assert hits == 3
    assert value(after, "rrm_votes_used_total") - value(before, "rrm_votes_used_total") == 6
    assert value(after, "rrm_generated_tokens_total") > value(before, "rrm_generated_tokens_total")
    assert value(after, "rrm_engine_ready") == 1
    assert any(k[0] == "rrm_build_info" for k in after)
    # The histogram's buckets reach hours, for reasoning judges.
    assert value(after, "rrm_request_duration_seconds_bucket", endpoint=ep, le="14400.0") > 0
    # No high-cardinality labels: unknown paths collapse into one.
    httpx.get(f"{base_url}/some/random/path/123")
    assert value(scrape(base_url), "rrm_requests_total", endpoint="other", status="404") >= 1


def test_request_id_is_echoed_or_generated(base_url, engine):
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json=OK, headers={"X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    generated = httpx.get(f"{base_url}/health").headers["x-request-id"]
    assert len(generated) == 32


def test_json_logs_carry_the_request_id():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("info", "json")
    root.handlers[0].stream = stream  # type: ignore[attr-defined]
    token = REQUEST_ID.set("abc")
    try:
        logging.getLogger("rrm_server.test").info("hello")
    finally:
        REQUEST_ID.reset(token)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["message"] == "hello" and line["request_id"] == "abc" and line["level"] == "INFO"


def test_api_keys(model_dir, tokenizer, tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text("from-file\n")
    with service(model_dir, tokenizer, api_keys="k1, k2", api_key_file=keyfile) as (url, _):
        assert httpx.get(f"{url}/health").status_code == 200  # probes stay open
        r = httpx.post(f"{url}/v1/judge/pairwise", json=OK)
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(f"{url}/v1/judge/pairwise", json=OK, headers=wrong).status_code == 401
        assert httpx.post(f"{url}/v1/judge/pairwise", json=OK, headers={"Authorization": "Basic k1"}).status_code == 401
        for key in ("k1", "k2", "from-file"):
            r = httpx.post(f"{url}/v1/judge/pairwise", json=OK, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert r.status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 200  # scrapers: open unless metrics_auth


def test_body_size_limit(model_dir, tokenizer):
    with service(model_dir, tokenizer, max_body_bytes=2048) as (url, engine):
        big = {"query": "q", "responses": ["a" * 3000, "b"]}
        r = httpx.post(f"{url}/v1/judge/pairwise", json=big)
        assert r.status_code == 413 and "limit is 2048" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: counted as it streams in
            yield b'{"query": "q", "responses": ["'
            yield b"a" * 3000
            yield b'", "b"]}'

        r = httpx.post(f"{url}/v1/judge/pairwise", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
        assert engine.calls == []
        assert httpx.post(f"{url}/v1/judge/pairwise", json=OK, timeout=30).status_code == 200


def test_flood_beyond_the_queue_gets_429_and_admitted_requests_are_answered(model_dir, tokenizer):
    with service(model_dir, tokenizer, max_concurrent_requests=2, max_queued_requests=3) as (url, engine):
        engine.delay = 0.5

        async def go():
            async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                bodies = [{"query": f"q{i}", "responses": ["a", "bb"]} for i in range(20)]
                return await asyncio.gather(*(c.post("/v1/judge/pairwise", json=b) for b in bodies))

        rs = asyncio.run(go())
        codes = [r.status_code for r in rs]
        assert set(codes) == {200, 429}
        assert codes.count(200) >= 5  # 2 running + 3 queued at least
        assert all(r.headers["retry-after"] == "1" for r in rs if r.status_code == 429)
        assert all(r.json()["winner"] == 1 for r in rs if r.status_code == 200)
        m = scrape(url)
        assert value(m, "rrm_requests_rejected_total", reason="queue_full") == codes.count(429)
        assert value(m, "rrm_requests_queued") == 0


def test_request_deadline(model_dir, tokenizer):
    with service(model_dir, tokenizer, request_timeout=0.3) as (url, engine):
        engine.delay = 2.0
        r = httpx.post(f"{url}/v1/judge/pairwise", json={**OK, "votes": 2, "early_stop": False}, timeout=10)
        # The votes were closed before the deadline, but even their forced verdicts (2 s each here)
        # could not arrive in time: the hard deadline answers 504 and aborts all of it.
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout", r.text
        assert len([c for c in engine.cancelled if not c.endswith("-f")]) == 2  # both generations aborted


def test_queued_requests_hold_no_body(model_dir, tokenizer):
    """Admission comes before the body is read: a request waiting for a slot has not had its
    (possibly huge, chunked) body buffered, so a flood costs connections, not memory."""
    with service(model_dir, tokenizer, max_concurrent_requests=1, max_queued_requests=4) as (url, engine):
        engine.delay = 1.5

        async def go():  # type: ignore[no-untyped-def]
            release = asyncio.Event()

            async def body():  # type: ignore[no-untyped-def]
                yield b'{"query": "q", "responses": ["a", '
                await release.wait()  # the rest arrives only when we say so
                yield b'"bb"]}'

            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                busy = asyncio.create_task(c.post("/v1/judge/pairwise", json=OK))
                await asyncio.sleep(0.3)  # the one slot is taken
                queued = asyncio.create_task(c.post("/v1/judge/pairwise", content=body(),
                                                    headers={"content-type": "application/json"}))
                await asyncio.sleep(0.3)
                waiting = value(await asyncio.to_thread(scrape, url), "rrm_requests_queued")
                release.set()
                return waiting, await busy, await queued

        waiting, busy, queued = asyncio.run(go())
        assert waiting == 1  # queued with its body still unread (before the fix: 0, stuck reading it)
        assert busy.status_code == 200 and queued.status_code == 200 and queued.json()["winner"] == 1


def test_a_body_that_never_arrives_gets_408(model_dir, tokenizer):
    """Content-Length larger than what is sent: the request must not hold its slot for ever."""
    import socket

    with service(model_dir, tokenizer, body_timeout=0.5) as (url, engine):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /v1/judge/pairwise HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: 100\r\n\r\n{\"query\": ")
            raw = b""
            while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), raw
        err = json.loads(body)["error"]
        assert err["type"] == "request_timeout" and err["code"] == 408 and "Content-Length" in err["message"]
        assert value(scrape(url), "rrm_requests_rejected_total", reason="body_timeout") == 1
        assert engine.calls == []
        assert httpx.post(f"{url}/v1/judge/pairwise", json=OK, timeout=30).status_code == 200
