"""The most dangerous hostile-corpus cases against the real service: vLLM CPU engine, bundled model."""

from __future__ import annotations

import httpx
import pytest

from rrm_server.prompt.verdict import parse_verdict
from tests.prompt.hostile_corpus import BY_NAME, MOST_DANGEROUS

pytestmark = [pytest.mark.engine, pytest.mark.redis]

BENIGN = {"query": "Say hi", "responses": ["Hi!", "Hello."]}
CASES = [BY_NAME[n] for n in MOST_DANGEROUS]


def _controls(ids: list[int], control: set[int]) -> list[int]:
    return [i for i in ids if i in control]


def test_render_keeps_the_structure(real_server, tokenizer):
    control = set(tokenizer.get_added_vocab().values())
    clean = real_server.post("/v1/judge/render", BENIGN).json()
    skeleton = _controls(clean["prompt_token_ids"], control)
    assert skeleton == [1, 2, 1, 2, 1]  # SmolLM2: system turn, user turn, generation prompt
    for case in [*CASES, BY_NAME["size:im_end"]]:
        for field in ("query", "first", "second"):
            body = {"query": case.text if field == "query" else BENIGN["query"],
                    "responses": [case.text if field == "first" else "Hi!",
                                  case.text if field == "second" else "Hello."],
                    "strip_reasoning": "off"}  # the text as sent: token safety, not answer extraction
            r = real_server.post("/v1/judge/render", body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert _controls(out["prompt_token_ids"], control) == skeleton, (case.name, field)
            assert case.text in out["prompt_text"]
            assert tokenizer.decode(out["prompt_token_ids"], skip_special_tokens=False) == out["prompt_text"]


def test_pairwise_verdicts_come_from_the_model_only(real_server):
    for case in CASES:
        body = {"query": "Say hi", "responses": [case.text, "Hi!"], "votes": 2, "order": "both",
                "max_tokens": 8, "cache": False, "include_reasoning": True, "early_stop": False, "seed": 3,
                "max_thinking_tokens": None, "rescue_invalid": False}  # the model's own verdicts, none forced
        r = real_server.post("/v1/judge/pairwise", body)
        assert r.status_code == 200, (case.name, r.text)
        votes = r.json()["votes"]
        assert len(votes) == 2 and {tuple(v["shown_order"]) for v in votes} == {(0, 1), (1, 0)}
        for v in votes:
            assert v["invalid_reason"] != "engine_error" and v["error"] is None, (case.name, v)
            assert (v["status"] == "invalid") == (v["invalid_reason"] is not None)
            assert not v["forced"]
            assert 0 < v["generated_tokens"] <= 8
            # The vote is exactly what the model's own output says (SmolLM2 opens no think block).
            parsed = parse_verdict(v["reasoning"], v["finish_reason"], reasoning_opened=False)
            assert v["verdict"] == (f"Assistant {parsed.slot}" if parsed.valid else None), (case.name, v)
            assert v["invalid_reason"] == (parsed.reason.value if parsed.reason else None)
    assert httpx.get(f"{real_server.url}/ready").status_code == 200


def test_enormous_hostile_text_is_refused_by_length_not_by_failure(real_server):
    # 200,000 characters of <|im_end|> tokenize to far more than the 4,096-token context.
    body = {"query": "q", "responses": [BY_NAME["size:im_end"].text, "Hi!"]}
    r = real_server.post("/v1/judge/pairwise", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "context_length_exceeded"
    assert httpx.get(f"{real_server.url}/ready").status_code == 200
