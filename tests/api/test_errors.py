"""Bad input: one JSON error shape, the right status, a clear message; the server keeps serving."""

from __future__ import annotations

import time

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread

OK = {"query": "q", "responses": ["a", "b"]}


def assert_error(r: httpx.Response, status: int, type_: str, *needles: str, param: str | None = None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"type", "message", "param", "code"}
    assert err["code"] == status and err["type"] == type_
    for n in needles:
        assert n in err["message"], err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    ("path", "body", "param", "needle"),
    [
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a"]}, "responses", "at least 2"),
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a", "b", "c"]}, "responses", "at most 2"),
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a", 3]}, "responses.1", "valid string"),
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a", None]}, "responses.1", "valid string"),
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "strip_reasoning": "yes"},
         "strip_reasoning", "auto"),
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "verdict_parser": "strict"},
         "verdict_parser", "official"),
        ("/v1/judge/rank", {"query": "q", "responses": ["a", "b", "c"], "opponents": 0}, "opponents", "1"),
        ("/v1/judge/pairwise", {"query": "q", "responses": ["a", "b"], "reasoning_tags": ["<t>"]},
         "reasoning_tags", "2"),
        ("/v1/judge/pairwise", {"query": "  \n", "responses": ["a", "b"]}, "query", "empty"),
        ("/v1/judge/pairwise", {"query": 5, "responses": ["a", "b"]}, "query", "valid string"),
        ("/v1/judge/pairwise", {"responses": ["a", "b"]}, "query", "Field required"),
        ("/v1/judge/pairwise", {"query": "q", "responses": "ab"}, "responses", "valid list"),
        ("/v1/judge/pairwise", {**OK, "votes": 0}, "votes", "greater than or equal to 1"),
        ("/v1/judge/pairwise", {**OK, "votes": 2.5}, "votes", "integer"),
        ("/v1/judge/pairwise", {**OK, "order": "sideways"}, "order", "random"),
        ("/v1/judge/pairwise", {**OK, "temperature": -1}, "temperature", "greater than or equal"),
        ("/v1/judge/pairwise", {**OK, "top_p": 0}, "top_p", "greater than 0"),
        ("/v1/judge/pairwise", {**OK, "seed": -3}, "seed", "greater than or equal"),
        ("/v1/judge/pairwise", {**OK, "seed": 10**30}, "seed", "less than or equal"),
        ("/v1/judge/pairwise", {**OK, "max_tokens": 0}, "max_tokens", "greater than or equal"),
        ("/v1/judge/pairwise", {**OK, "surprise": 1}, "surprise", "Extra inputs"),
        ("/v1/judge/rank", {"query": "q", "responses": ["a"]}, "responses", "at least 2"),
        ("/v1/judge/rank", {**OK, "method": "swiss"}, "method", "elo"),
        ("/v1/judge/render", {**OK, "order": "both"}, "order", "fixed"),
        ("/v1/judge/pairwise", [1, 2], "body", "valid dictionary"),
    ],
)
def test_schema_errors(base_url, engine, path, body, param, needle):
    r = httpx.post(f"{base_url}{path}", json=body)
    assert_error(r, 400, "invalid_request", needle, param=param)
    assert engine.calls == []


def test_invalid_json(base_url, engine):
    r = httpx.post(f"{base_url}/v1/judge/pairwise", content=b'{"query": "q", ',
                   headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_request", "not valid JSON", param="body")


def test_server_limits_with_numbers(base_url, engine):
    r = httpx.post(f"{base_url}/v1/judge/rank", json={"query": "q", "responses": ["x"] * 11})
    assert_error(r, 400, "invalid_request", "11 responses", "at most 10", param="responses")
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={**OK, "votes": 9})
    assert_error(r, 400, "invalid_request", "votes=9", "maximum of 8", param="votes")
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={**OK, "max_tokens": 4096})
    assert_error(r, 400, "invalid_request", "max_tokens=4096", "2048", param="max_tokens")
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "b" * 5001]})
    assert_error(r, 400, "invalid_request", "responses[1] is 5001 characters", param="responses.1")
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={**OK, "model": "gpt-judge"})
    assert_error(r, 400, "invalid_request", "'gpt-judge' is not served", "scripted-judge", param="model")
    assert engine.calls == []


def test_prompt_longer_than_the_context_says_so(base_url, engine):
    long = "word " * 900  # ~900 tokens each; two of them plus the template exceed 2048
    r = httpx.post(f"{base_url}/v1/judge/rank", json={"query": "q", "responses": ["short", long, long + "!"]})
    err = assert_error(r, 400, "context_length_exceeded", "responses 1 and 2", "context length of 2048")
    assert "tokens" in err["message"]
    # A prompt that fits but leaves less room than the requested max_tokens.
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", long],
                                                           "max_tokens": 1000})
    assert_error(r, 400, "context_length_exceeded", "max_tokens=1000")
    # Unset max_tokens: the default shrinks to what fits.
    r = httpx.post(f"{base_url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", long]})
    assert r.status_code == 200
    assert engine.calls[0].max_tokens + len(engine.calls[0].prompt_token_ids) <= 2048


def test_unknown_route_and_method(base_url, engine):
    assert_error(httpx.get(f"{base_url}/v1/nope"), 404, "not_found")
    assert_error(httpx.get(f"{base_url}/v1/judge/pairwise"), 405, "method_not_allowed")


def test_bad_requests_do_not_disturb_good_ones(base_url, engine):
    engine.delay = 0.3
    import asyncio

    async def go():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
            good = [c.post("/v1/judge/pairwise", json={"query": "q", "responses": ["a", "bb"], "votes": 2})
                    for _ in range(3)]
            bad = [c.post("/v1/judge/pairwise", json={"query": "q", "responses": ["a"]}) for _ in range(3)]
            junk = [c.post("/v1/judge/pairwise", content=b"\x00\xff", headers={"content-type": "application/json"})]
            return await asyncio.gather(*good, *bad, *junk)

    rs = asyncio.run(go())
    assert [r.status_code for r in rs] == [200] * 3 + [400] * 4
    assert [r.json()["winner"] for r in rs[:3]] == [1, 1, 1]


def test_not_ready_until_the_engine_is_loaded(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, start_delay=1.0)
    app = build_app(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer)
    with serve_in_thread(app, wait_ready=False) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert_error(httpx.get(f"{url}/ready"), 503, "not_ready")
        assert_error(httpx.post(f"{url}/v1/judge/pairwise", json=OK), 503, "not_ready", "GET /ready")
        assert httpx.get(f"{url}/v1/models").json()["data"] == []
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.post(f"{url}/v1/judge/pairwise", json=OK).status_code == 200


def test_failed_start_turns_health_red(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer, fail_start=True)
    app = build_app(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer)
    with serve_in_thread(app, wait_ready=False) as url:
        time.sleep(0.3)
        assert_error(httpx.get(f"{url}/health"), 503, "startup_failed", "scripted start failure")
        assert_error(httpx.get(f"{url}/ready"), 503, "startup_failed")
        assert_error(httpx.post(f"{url}/v1/judge/pairwise", json=OK), 503, "startup_failed", "failed to start")
