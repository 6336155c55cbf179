"""Hostile input: schemathesis against our own OpenAPI schema, then explicit payloads sent as raw bytes.

Whatever arrives, the answer is a 200 or one JSON error shape with a 4xx, never a 5xx or a hang, and the
server keeps serving. Everything runs against a real HTTP server in front of the scripted engine.
"""

from __future__ import annotations

import asyncio
import collections
import json

import httpx
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from rrm_server.api.app import build_app
from rrm_server.api.errors import error_response
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread

LIMITS = {"max_responses": 4, "max_votes": 3, "max_text_chars": 300}  # keep generated requests cheap
TIMEOUT = 30  # seconds; a hang fails the test instead of stalling CI


@pytest.fixture(scope="module")
def fuzz_engine(tokenizer):  # type: ignore[no-untyped-def]
    return ScriptedEngine(tokenizer=tokenizer, max_model_len=2048)


@pytest.fixture(scope="module")
def fuzz_url(model_dir, tokenizer, fuzz_engine):  # type: ignore[no-untyped-def]
    # Group mode: groups of 3 that close after 50 ms, so a fuzzed /get_reward never waits long.
    settings = Settings(model=str(model_dir), **LIMITS, reward_group_size=3, reward_group_wait=0.05,
                        reward_votes=1)
    with serve_in_thread(build_app(settings, engine=fuzz_engine, tokenizer=tokenizer)) as url:
        yield url


@pytest.fixture(scope="module")
def client(fuzz_url):  # type: ignore[no-untyped-def]
    """One keep-alive connection for a hostile request and the normal one after it: a 500 would
    also close the connection under the next request."""
    with httpx.Client(base_url=fuzz_url, timeout=TIMEOUT) as c:
        yield c


def check_error_shape(status: int, content_type: str, body: object) -> dict:
    """The one error shape: exactly {"error": {type, message, param, code}}, code = the status."""
    assert 400 <= status < 500, (status, body)
    assert content_type == "application/json", content_type
    assert isinstance(body, dict) and list(body) == ["error"], body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"type", "message", "param", "code"}, body
    assert err["code"] == status, body
    assert isinstance(err["type"], str) and err["type"], body
    assert isinstance(err["message"], str) and err["message"], body
    assert err["param"] is None or isinstance(err["param"], str), body
    return err


def assert_error_shape(r: httpx.Response, status: int | None = None) -> dict:
    assert status is None or r.status_code == status, r.text
    return check_error_shape(r.status_code, r.headers["content-type"], r.json())


def assert_invalid(r: httpx.Response, param: str, *needles: str) -> dict:
    err = assert_error_shape(r, 400)
    assert err["type"] == "invalid_request" and err["param"] == param, err
    for n in needles:
        assert n in err["message"], err["message"]
    return err


def assert_still_serving(client: httpx.Client) -> None:
    r = client.post("/v1/judge/pairwise", json={"query": "q", "responses": ["a", "bb"]})
    assert r.status_code == 200, r.text
    assert r.json()["winner"] == 1


def post(client: httpx.Client, path: str, body: bytes, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"content-type": content_type}
    return client.post(path, content=body, headers=headers)


# -- schemathesis ------------------------------------------------------------------------------------

# The schema comes from the app object at import: schemathesis' fixture-based loader
# (schemathesis.pytest.from_fixture) breaks on pytest 9.2 (it sets Node._nodeid). The schema does not
# depend on settings or engine; test_the_fuzzed_schema_is_the_served_one checks it is /openapi.json.
OPENAPI = build_app(Settings(), engine=ScriptedEngine(tokenizer=None)).openapi()
CONFIG = schemathesis.Config.from_dict({
    "seed": 20250601,  # with "deterministic", the same cases in every run
    "generation": {"mode": "all", "max-examples": 100, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},  # no links between our operations
    "suppress-health-check": ["too_slow"],  # the only timing-dependent one: CI machines vary
})
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
RAN: collections.Counter[tuple[str, str, bool]] = collections.Counter()


def _fit_get_reward(body: dict) -> dict:
    """What the schema cannot say about a valid /get_reward: prompts align with query, query[i] starts
    with prompts[i] (a question), labels are reference answers. Else nearly every request is a 400."""
    n = len(body["query"])
    prompts = (body["prompts"] + [""] * n)[:n]
    body["prompts"] = [f"Q{i} {p}" for i, p in enumerate(prompts)]
    body["query"] = [p + q for p, q in zip(body["prompts"], body["query"])]
    if isinstance(body.get("labels"), list):
        body["labels"] = [f"reference {i}" for i in range(n)]
    return body


# schemathesis, ~900 generated requests: ~25 s
@pytest.mark.slow
@schema.parametrize()
def test_fuzz(case, fuzz_url):  # type: ignore[no-untyped-def]
    # Positive cases fit the schema (they may still exceed the server's limits: a 400 is fine); negative
    # ones break it and must be rejected. A 503 would mean the live scripted engine is not ready: never.
    if case.operation.path == "/get_reward" and case.meta.generation.mode.is_positive:
        case.body = _fit_get_reward(case.body)
    r = case.call(base_url=fuzz_url, timeout=TIMEOUT)
    RAN[(case.operation.label, case.meta.generation.mode.value, 200 <= r.status_code < 300)] += 1
    assert r.status_code < 500, (r.status_code, r.text)
    if not 200 <= r.status_code < 300:
        check_error_shape(r.status_code, r.headers["content-type"][0], r.json())
    case.validate_response(r, checks=CHECKS)  # also: a 2xx body matches its documented schema


def test_fuzzing_reached_every_operation():
    if not RAN:
        pytest.skip("runs after test_fuzz, in the same session")
    ops = {op.label for op in (r.ok() for r in schema.get_all_operations())}
    assert len(ops) == 12
    print(f"\nschemathesis cases: {sum(RAN.values())}")
    for op in sorted(ops):
        counts = {(mode, ok): RAN[(op, mode, ok)] for mode in ("positive", "negative")
                  for ok in (True, False)}
        print(f"  {op}: {counts}")
        assert counts["negative", True] + counts["negative", False] > 0, op
        if op != "GET /v1/judgments/{judgment_id}":  # a random id is a 404 (tests/api/test_judgments_api.py)
            assert counts["positive", True] > 0, op  # the success path was exercised too
    for op in ("POST /v1/judge/pairwise", "POST /v1/judge/rank", "POST /v1/judge/render", "POST /v1/rewards"):
        assert RAN[(op, "positive", True)] >= 10, (op, RAN)


def test_the_fuzzed_schema_is_the_served_one(client):
    assert client.get("/openapi.json").json() == OPENAPI


def test_schema_documents_only_the_error_shape():
    # FastAPI documents a 422 "HTTPValidationError" body by default; we answer 400 in our own shape.
    assert "HTTPValidationError" not in OPENAPI["components"]["schemas"]
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (method, path)
            for status, resp in op["responses"].items():
                ref = resp.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                if status == "200":
                    assert ref, (method, path)  # documented, so response_schema_conformance checks it
                else:
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
    judge = OPENAPI["paths"]["/v1/judge/pairwise"]["post"]["responses"]
    assert {"400", "4XX", "503"} <= set(judge) and "422" not in judge


# -- hostile payloads ----------------------------------------------------------------------------------

UNICODE = {
    "emoji": "family 👩‍👩‍👧‍👦, flag 🏳️‍🌈, skin tone 👋🏽",  # ZWJ sequences, variation selector, modifier
    "rtl": "price \u202e0.01$\u202c and עברית עם العربية",  # RTL override, Hebrew, Arabic
    "combining": "e\u0301 a\u0308\u0323 Z\u0351\u0352\u0353\u0354 \u1100\u1161\u11a8",  # stacked marks, jamo
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 🀄 \U0001fa77 \U00020000",  # math letters, hieroglyph, CJK ext. B
    "zero_width": "a\u200bb\u200c\u200dc\ufeffd\u2060e",  # ZWSP, ZWNJ, ZWJ, BOM as text, word joiner
    "nul": "before\u0000after",
}


@pytest.mark.parametrize("kind", sorted(UNICODE))
@pytest.mark.parametrize("escaped", [False, True], ids=["utf8", "escaped"])
def test_unicode_is_taken_everywhere_and_rendered_verbatim(client, fuzz_engine, kind, escaped):
    text = UNICODE[kind]
    body = {"query": f"Q {text}", "responses": [f"A {text}", f"B {text} longer"], "order": "swapped"}
    # Raw UTF-8 bytes, or \u escapes (astral characters as surrogate pairs, which are valid).
    raw = json.dumps(body, ensure_ascii=escaped).encode()
    r = post(client, "/v1/judge/render", raw)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["shown_order"] == [1, 0]
    prompt = out["prompt_text"]
    for t in (body["query"], *body["responses"]):
        assert t in prompt
    assert prompt.index(body["responses"][1]) < prompt.index(body["responses"][0])
    assert out["num_prompt_tokens"] == len(out["prompt_token_ids"]) > 0
    # The judge is shown the same text, and the other endpoints take it too.
    fuzz_engine.calls.clear()
    pair = {**body, "order": "fixed", "cache": False}
    r = post(client, "/v1/judge/pairwise", json.dumps(pair, ensure_ascii=escaped).encode())
    assert r.status_code == 200, r.text
    assert r.json()["winner"] == 1  # the scripted judge prefers the longer response
    shown = fuzz_engine.shown(fuzz_engine.calls[0])
    assert (shown.query, shown.first, shown.second) == (body["query"], *body["responses"])
    rank = {"query": body["query"], "responses": [*body["responses"], text]}
    assert post(client, "/v1/judge/rank", json.dumps(rank, ensure_ascii=escaped).encode()).status_code == 200
    rewards = {"groups": [{"query": text, "responses": body["responses"]}]}
    r = post(client, "/v1/rewards", json.dumps(rewards, ensure_ascii=escaped).encode())
    assert r.status_code == 200 and r.json()["groups"][0]["best"] == 1, r.text
    sample = {"query": [f"P {text}|R {text}"], "prompts": [f"P {text}|"], "labels": [f"ref {text}"]}
    r = post(client, "/get_reward", json.dumps(sample, ensure_ascii=escaped).encode())
    assert r.status_code == 200, r.text


# Not st.text(): it never draws surrogates, whatever the alphabet.
CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(" \t\n\x00\u202e"))
TEXT = st.lists(CHARS, min_size=1, max_size=30).map("".join)


@settings(max_examples=80, derandomize=True, deadline=None, database=None)
@given(text=TEXT)
def test_any_text_is_rendered_verbatim_or_refused_by_name(client, text):
    # Any code point, lone surrogates included (sent as JSON escapes, as a client's encoder would).
    # strip_reasoning off: the text exactly as sent (auto would judge what follows a </think>).
    body = {"query": "q", "responses": ["a", text], "strip_reasoning": "off"}
    r = client.post("/v1/judge/render", content=json.dumps(body), headers={"content-type": "application/json"})
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert_invalid(r, "responses.1", "lone surrogate")
    elif not text.strip():  # an empty answer: never sent to the judge
        assert r.status_code == 200, r.text
        assert r.json()["judged"] is False and r.json()["answers"][1]["status"] == "empty"
    else:
        assert r.status_code == 200, r.text
        assert r.json()["judged"] is True
        assert f"### Assistant 2\n\n{text}\n\n## Analysis" in r.json()["prompt_text"]


# Every text field, in every endpoint, given a lone surrogate: valid JSON, but no Unicode text.
SURROGATE_FIELDS = [
    ("/v1/judge/pairwise", {"query": "@", "responses": ["a", "b"]}, "query"),
    ("/v1/judge/pairwise", {"query": "q", "responses": ["@", "b"]}, "responses.0"),
    ("/v1/judge/pairwise", {"query": "q", "responses": ["a", "@"]}, "responses.1"),
    ("/v1/judge/rank", {"query": "@", "responses": ["a", "b", "c"]}, "query"),
    ("/v1/judge/rank", {"query": "q", "responses": ["a", "b", "@"]}, "responses.2"),
    ("/v1/judge/render", {"query": "@", "responses": ["a", "b"]}, "query"),
    ("/v1/judge/render", {"query": "q", "responses": ["a", "@"]}, "responses.1"),
    ("/v1/rewards", {"groups": [{"query": "@", "responses": ["a", "b"]}]}, "groups.0.query"),
    ("/v1/rewards", {"groups": [{"query": "q", "responses": ["a"]}, {"query": "q", "responses": ["a", "@"]}]},
     "groups.1.responses.1"),
    ("/get_reward", {"query": ["p@"], "prompts": ["p"], "labels": ["ref"]}, "query.0"),
    ("/get_reward", {"query": ["px", "zy"], "prompts": ["p", "@"], "labels": ["r", "r"]}, "prompts.1"),
    ("/get_reward", {"query": ["px"], "prompts": ["p"], "labels": ["ref@"]}, "labels.0"),
]


@pytest.mark.parametrize(("path", "body", "param"), SURROGATE_FIELDS)
@pytest.mark.parametrize("surrogate", ["\\ud800", "\\udfff", "\\ude00\\ud83d"],
                         ids=["high", "low", "reversed"])
def test_lone_surrogates_are_named_400s(client, fuzz_engine, path, body, param, surrogate):
    fuzz_engine.calls.clear()
    raw = json.dumps(body).replace("@", surrogate).encode()
    r = post(client, path, raw)
    assert_invalid(r, param, "lone surrogate")
    assert fuzz_engine.calls == []
    assert_still_serving(client)


def test_nul_bytes(client):
    # Escaped NUL is text like any other; a raw control character inside a string is not JSON.
    r = post(client, "/v1/judge/render", b'{"query": "\\u0000", "responses": ["a\\u0000b", "\\u0000"]}')
    assert r.status_code == 200, r.text
    assert "a\x00b" in r.json()["prompt_text"]
    r = post(client, "/v1/judge/pairwise", b'{"query": "q\x00", "responses": ["a", "b"]}')
    assert_invalid(r, "body", "not valid JSON")
    r = post(client, "/v1/judge/pairwise", b'{"query": "q", "responses": ["a", "b"]}\x00')
    assert_invalid(r, "body", "not valid JSON")
    assert_still_serving(client)


@pytest.mark.parametrize("raw", [
    b'{"query": "q\xff", "responses": ["a", "b"]}',  # never valid in UTF-8
    b'{"query": "\xc3\x28", "responses": ["a", "b"]}',  # broken two-byte sequence
    b'{"query": "\xc0\xaf", "responses": ["a", "b"]}',  # overlong "/"
    b'{"query": "\xf0\x9f\x98", "responses": ["a", "b"]}',  # truncated emoji
    b'\xfe\xff\x00{',  # a UTF-16 BOM and half a brace
], ids=["ff", "broken", "overlong", "truncated", "utf16"])
def test_invalid_utf8_is_a_400(client, raw):
    err = assert_invalid(post(client, "/v1/judge/pairwise", raw), "body")
    assert "not valid JSON" in err["message"] or "not UTF-8" in err["message"], err
    assert_still_serving(client)


def test_utf8_encoded_surrogates_are_lone_surrogates(client):
    # json.loads decodes bytes with "surrogatepass": a surrogate encoded as UTF-8 (CESU-8) arrives as a
    # lone surrogate, and is refused like an escaped one.
    r = post(client, "/v1/judge/pairwise", b'{"query": "\xed\xa0\x80", "responses": ["a", "b"]}')
    assert_invalid(r, "query", "lone surrogate (U+D800")
    assert_still_serving(client)


def test_utf8_bom_is_ignored(client):
    # RFC 8259 section 8.1: a parser may ignore a byte order mark.
    r = post(client, "/v1/judge/render", b'\xef\xbb\xbf{"query": "q", "responses": ["a", "b"]}')
    assert r.status_code == 200, r.text


BIG = "1" + "0" * 4000  # under Python's 4300-digit int-string limit: parsed
HUGE = "1" + "0" * 5000  # over it: json.loads refuses it
PAIR = '"query": "q", "responses": ["a", "bb"]'
# (field, JSON literal, extra fields, expected status, param); 200 where the value is legitimately valid.
NUMBERS = [
    ("votes", "1e309", "", 400, "votes"),  # inf
    ("votes", "-1e309", "", 400, "votes"),
    ("votes", "1e-400", "", 400, "votes"),  # 0.0: a float, not an integer
    ("votes", "NaN", "", 400, "votes"),
    ("votes", "Infinity", "", 400, "votes"),
    ("votes", BIG, "", 400, "votes"),  # above max_votes
    ("votes", HUGE, "", 400, "body"),
    ("votes", "-" + HUGE, "", 400, "body"),
    ("seed", "1e309", "", 400, "seed"),
    ("seed", "-1e309", "", 400, "seed"),
    ("seed", "1e-400", "", 400, "seed"),  # 0.0 is a float
    ("seed", "-Infinity", "", 400, "seed"),
    ("seed", BIG, "", 400, "seed"),
    ("seed", "-" + BIG, "", 400, "seed"),
    ("seed", HUGE, "", 400, "body"),
    ("max_tokens", "1e309", "", 400, "max_tokens"),
    ("max_tokens", BIG, "", 400, "max_tokens"),  # above the context length
    ("max_tokens", "1e-400", "", 400, "max_tokens"),
    ("temperature", "1e309", "", 400, "temperature"),
    ("temperature", "-1e309", "", 400, "temperature"),
    ("temperature", "1e-400", "", 200, None),  # 0.0: greedy
    ("temperature", "NaN", "", 400, "temperature"),
    ("temperature", BIG, "", 400, "temperature"),
    ("top_p", "1e-400", "", 400, "top_p"),  # 0.0 is out of (0, 1]
    ("top_p", "NaN", "", 400, "top_p"),
    ("top_p", "Infinity", "", 400, "top_p"),
    ("confidence", "NaN", ', "min_votes": 1', 400, "confidence"),
    ("confidence", "Infinity", ', "min_votes": 1', 400, "confidence"),
    ("min_votes", BIG, ', "confidence": 0.9', 200, None),  # never reached: every vote is drawn
    ("min_votes", "1e309", ', "confidence": 0.9', 400, "min_votes"),
    ("max_thinking_tokens", BIG, "", 200, None),  # no budget short of max_tokens
    ("max_thinking_tokens", "1e309", "", 400, "max_thinking_tokens"),
    ("max_thinking_tokens", HUGE, "", 400, "body"),
]
RANK_NUMBERS = [
    ("target_confidence", "NaN", "", 400, "target_confidence"),
    ("target_confidence", "-Infinity", "", 400, "target_confidence"),
    ("adaptive_votes", BIG, "", 400, "adaptive_votes"),  # above max_votes
    ("budget_engine_calls", BIG, ', "adaptive_votes": 2', 200, None),  # an unlimited budget
    ("budget_engine_calls", "1e309", ', "adaptive_votes": 2', 400, "budget_engine_calls"),
    ("budget_tokens", BIG, ', "adaptive_votes": 2', 200, None),
    ("budget_tokens", "NaN", ', "adaptive_votes": 2', 400, "budget_tokens"),
    ("budget_tokens", HUGE, ', "adaptive_votes": 2', 400, "body"),
]


@pytest.mark.parametrize(("field", "literal"), [
    ("cache", "0"), ("early_stop", '"false"'), ("include_reasoning", "1"), ("verdict_probs", '"no"'),
    ("votes", "2.0"), ("votes", '"2"'), ("votes", "true"), ("seed", "false"), ("seed", '"7"'),
    ("temperature", '"0.5"'), ("temperature", "true"), ("responses", '{"0": "a", "1": "b"}'),
])
def test_types_are_not_coerced(client, field, literal):
    # The schema says boolean, integer or number: a string, a bool for a number, or 2.0 for an integer
    # is refused, not silently read as something else (schemathesis' negative cases found these).
    r = post(client, "/v1/judge/pairwise", f'{{{PAIR}, "{field}": {literal}}}'.encode())
    assert_invalid(r, field, "valid")
    assert client.post("/v1/judge/pairwise", json={"query": "q", "responses": ["a", "bb"], "temperature": 1,
                                                   "votes": 1, "cache": False}).status_code == 200


def _number_id(case: tuple) -> str:
    field, literal = case[0], case[1]
    return f"{field}={literal if len(literal) < 12 else f'{len(literal)}digits'}"


@pytest.mark.parametrize(("path", "case"), [("/v1/judge/pairwise", c) for c in NUMBERS]
                         + [("/v1/judge/rank", c) for c in RANK_NUMBERS],
                         ids=[_number_id(c) for c in NUMBERS]
                         + [f"rank-{_number_id(c)}" for c in RANK_NUMBERS])
def test_huge_and_non_finite_numbers(client, path, case):
    field, literal, extra, status, param = case
    r = post(client, path, f'{{{PAIR}, "{field}": {literal}{extra}}}'.encode())
    if status == 200:
        assert r.status_code == 200, r.text
    else:
        err = assert_invalid(r, param)
        if param == "body":
            assert "more than 4300 digits" in err["message"], err
    assert_still_serving(client)


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ('{%s, "votes": %s}' % (PAIR, "[" * 100_000 + "]" * 100_000)).encode(),
    ('{"query": ["px"], "prompts": ["p"], "labels": [%s]}' % ('{"a":' * 100_000 + "1" + "}" * 100_000))
    .encode(),
], ids=["array", "object", "in-field", "in-labels"])
def test_deeply_nested_json_is_a_400(client, raw):
    # json.loads raises RecursionError at this depth: a parse error of the body, not a 500.
    assert_invalid(post(client, "/v1/judge/pairwise", raw), "body", "nested too deeply")
    assert_invalid(post(client, "/get_reward", raw), "body", "nested too deeply")
    assert_still_serving(client)


@pytest.mark.parametrize("depth", [50, 500])
def test_nesting_the_parser_accepts_is_a_field_error(client, depth):
    nested = "[" * depth + "]" * depth
    r = post(client, "/v1/judge/pairwise", f'{{"query": "q", "responses": ["a", {nested}]}}'.encode())
    assert_invalid(r, "responses.1", "valid string")
    r = post(client, "/get_reward", f'{{"query": ["px"], "prompts": ["p"], "labels": [{nested}]}}'.encode())
    assert_invalid(r, "labels.0", "non-empty reference answer")
    assert_still_serving(client)


def test_huge_flat_arrays_are_refused_by_the_limits(client, fuzz_engine):
    fuzz_engine.calls.clear()
    many = ["x"] * 200_000
    r = client.post("/v1/judge/rank", json={"query": "q", "responses": many})
    assert_invalid(r, "responses", "200000 responses", "at most 4")
    r = client.post("/v1/rewards", json={"groups": [{"query": "q", "responses": many}]})
    assert_invalid(r, "groups.0.responses", "200000 responses", "limit is 4")
    r = client.post("/v1/judge/pairwise", json={"query": "q", "responses": many})
    assert_invalid(r, "responses", "at most 2")
    assert fuzz_engine.calls == []
    assert_still_serving(client)


def test_duplicate_keys_last_one_wins(client):
    # Python's json (and most parsers) keep the last value; the request is then validated as usual.
    r = post(client, "/v1/judge/render", b'{"query": "first", "query": "second", "responses": ["a", "b"]}')
    assert r.status_code == 200, r.text
    assert "second" in r.json()["prompt_text"] and "first" not in r.json()["prompt_text"]
    r = post(client, "/v1/judge/pairwise", b'{"query": "q", "responses": ["a", "b"], "votes": 1, "votes": 0}')
    assert_invalid(r, "votes")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_a_400(client, content_type):
    r = post(client, "/v1/judge/pairwise", b'{"query": "q", "responses": ["a", "b"]}', content_type)
    assert_invalid(r, "body", "Content-Type: application/json", content_type or "no Content-Type")
    assert_still_serving(client)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.rrm+json"])
def test_json_content_types_are_accepted(client, content_type):
    r = post(client, "/v1/judge/pairwise", b'{"query": "q", "responses": ["a", "bb"]}', content_type)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("raw", "needle"), [
    (b"", "missing"),
    (b"null", "missing"),
    (b"   ", "not valid JSON"),
    (b'"hello"', "valid dictionary"),
    (b"42", "valid dictionary"),
    (b"true", "valid dictionary"),
    (b"[]", "valid dictionary"),
    (b'{"query": "q", "responses": ["a", "b"]', "not valid JSON"),
])
@pytest.mark.parametrize("path", ["/v1/judge/pairwise", "/v1/rewards", "/get_reward"])
def test_a_body_that_is_not_an_object_is_a_400(client, path, raw, needle):
    assert_invalid(post(client, path, raw), "body", needle)
    assert_still_serving(client)


def test_get_reward_question_must_survive_template_stripping(client, fuzz_engine):
    # The judge's question is the prompt without its chat template; none left used to be a 500.
    fuzz_engine.calls.clear()
    chat = "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    for body, param in [
        ({"query": [" x"], "prompts": [" "], "labels": ["ref"]}, "prompts.0"),
        ({"query": ["x"], "prompts": [""], "labels": ["ref"]}, "prompts.0"),
        ({"query": [chat + "x"], "prompts": [chat], "labels": ["ref"]}, "prompts.0"),
        ({"query": ["Q: 1+1?|x", " y"], "prompts": ["Q: 1+1?|", " "], "mode": "group"}, "prompts.1"),
    ]:
        assert_invalid(client.post("/get_reward", json=body), param, "no question")
    assert fuzz_engine.calls == []
    assert_still_serving(client)


def test_reward_text_limits_name_the_request_field(client, fuzz_engine):
    fuzz_engine.calls.clear()
    long = "x" * 301
    r = client.post("/get_reward", json={"query": ["p" + long], "prompts": ["p"], "labels": ["ref"]})
    assert_invalid(r, "query.0", "response in query[0] is 301 characters", "limit is 300")
    r = client.post("/get_reward", json={"query": [long + "y"], "prompts": [long], "labels": ["ref"]})
    assert_invalid(r, "prompts.0", "301 characters")
    r = client.post("/get_reward", json={"query": ["px"], "prompts": ["p"], "labels": [long]})
    assert_invalid(r, "labels.0", "labels[0] is 301 characters")
    r = client.post("/v1/rewards", json={"groups": [{"query": "q", "responses": ["a", "b"]},
                                                    {"query": "q", "responses": ["a", long]}]})
    assert_invalid(r, "groups.1.responses.1", "groups[1].responses[1] is 301 characters")
    assert fuzz_engine.calls == []  # not even the first, valid group started


def test_a_bad_sample_does_not_fail_its_group(model_dir, tokenizer):
    # Group mode ranks the samples of one prompt together. An over-long sibling used to join the group
    # and fail its ranking, so every sibling got its error. Groups of 2 and a long wait: the two good
    # samples fill their group whatever the timing, the bad one must not take a place in it.
    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), **LIMITS, reward_mode="group", reward_group_size=2,
                        reward_group_wait=20, reward_votes=1)
    prompt = "<|im_start|>user\nWhich is better?<|im_end|>\n<|im_start|>assistant\n"

    async def go(url: str):  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as c:
            return await asyncio.gather(*(c.post("/get_reward", json={"query": [prompt + t],
                                                                      "prompts": [prompt]})
                                          for t in ["short", "x" * 301, "a longer answer"]))

    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        good1, bad, good2 = asyncio.run(go(url))
    assert_invalid(bad, "query.0", "301 characters")
    assert good1.status_code == good2.status_code == 200, (good1.text, good2.text)
    assert good1.json()["extra_logs"]["rrm_group_size"] == [2.0]
    assert good1.json()["scores"] == [0.0] and good2.json()["scores"] == [1.0]  # judged, not neutral


def test_hostile_requests_do_not_disturb_good_ones(fuzz_url, fuzz_engine):
    hostile = {  # body -> the param its error names
        b"[" * 100_000 + b"]" * 100_000: "body",
        b'{"query": "\\ud800", "responses": ["a", "b"]}': "query",
        b'{"query": "\xff", "responses": ["a", "b"]}': "body",
        ('{%s, "votes": %s}' % (PAIR, HUGE)).encode(): "body",
        b'{"query": "q", "responses": ["a", "b"], "temperature": NaN}': "temperature",
        b"": "body",
    }

    async def go():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(base_url=fuzz_url, timeout=TIMEOUT) as c:
            good = [c.post("/v1/judge/pairwise", json={"query": f"q{i}", "responses": ["a", "bb"],
                                                         "votes": 2}) for i in range(4)]
            bad = [c.post("/v1/judge/pairwise", content=raw, headers={"content-type": "application/json"})
                   for raw in hostile]
            return await asyncio.gather(*good, *bad)

    fuzz_engine.delay = 0.2  # the good requests are in flight while the hostile ones arrive
    try:
        rs = asyncio.run(go())
    finally:
        fuzz_engine.delay = 0.0
    assert [r.status_code for r in rs] == [200] * 4 + [400] * len(hostile), [r.text for r in rs]
    assert [r.json()["winner"] for r in rs[:4]] == [1] * 4
    for r, param in zip(rs[4:], hostile.values()):
        assert_invalid(r, param)


def test_clearing_the_cache_names_the_backend(client):
    client.post("/v1/judge/pairwise", json={"query": "q", "responses": ["a", "bb"]}).raise_for_status()
    assert client.delete("/v1/cache").json()["backend"] == "memory"
    # Now empty: an empty in-memory backend used to be reported as "off".
    assert client.delete("/v1/cache").json() == {"deleted": 0, "backend": "memory"}


def test_error_responses_survive_unencodable_text():
    r = error_response(400, "invalid_request", "bad \ud800 text", "key\udfff")
    err = json.loads(r.body)["error"]
    assert err == {"type": "invalid_request", "message": "bad \\ud800 text", "param": "key\\udfff",
                   "code": 400}
