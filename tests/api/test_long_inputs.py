"""Long and oversized texts: rejected after tokenizing as little as needed, and tokenized off the
event loop, so one huge request neither costs seconds of CPU nor stalls everyone else's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

import rrm_server.prompt.template as template
from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine
from tests.support.server import serve_in_thread


def on_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:  # a worker thread
        return False


@contextmanager
def spied(model_dir, tokenizer) -> Iterator[tuple[str, ScriptedEngine, list]]:  # type: ignore[no-untyped-def]
    """A service whose prompt builder records (method, text length, on the event loop?) for every
    tokenization."""
    engine = ScriptedEngine(tokenizer=tokenizer, max_model_len=32768)
    app = build_app(Settings(model=str(model_dir), max_text_chars=100_000, max_responses=64),
                    engine=engine, tokenizer=tokenizer)
    calls: list[tuple[str, int, bool]] = []
    with serve_in_thread(app) as url:
        builder = app.state.runtime.serving.builder
        encode, build = builder.encode_untrusted, builder.build_ids

        def encode_spy(text: str) -> list[int]:
            calls.append(("encode", len(text), on_loop()))
            return encode(text)

        def build_spy(q: str, a: str, b: str) -> list[int]:
            calls.append(("build", len(q) + len(a) + len(b), on_loop()))
            return build(q, a, b)

        builder.encode_untrusted, builder.build_ids = encode_spy, build_spy
        yield url, engine, calls


def test_oversized_responses_are_rejected_after_two_tokenizations(model_dir, tokenizer):
    with spied(model_dir, tokenizer) as (url, engine, calls):
        huge = [f"response {i}: " + "lorem ipsum dolor " * 5000 for i in range(40)]  # ~90k chars each
        r = httpx.post(f"{url}/v1/judge/rank", json={"query": "q", "responses": huge}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["type"] == "context_length_exceeded", r.text
        encoded = [c for c in calls if c[0] == "encode" and c[1] > 1000]
        assert len(encoded) == 2, calls  # the two longest, not all forty
        assert not any(c[2] for c in encoded), calls  # in worker threads
        assert engine.calls == []


def test_long_prompts_are_built_off_the_event_loop(model_dir, tokenizer):
    with spied(model_dir, tokenizer) as (url, engine, calls):
        body = {"query": "q", "responses": ["a" * 11000 + " x", "b" * 11000, "c" * 11000], "votes": 2,
                "early_stop": False, "cache": False}
        r = httpx.post(f"{url}/v1/judge/rank", json=body, timeout=60)
        assert r.status_code == 200, r.text
        builds = [c for c in calls if c[0] == "build"]
        # 3 pairs x 2 votes in random orders: each (pair, order) built once, in a worker thread.
        assert 3 <= len(builds) <= 6 and len(engine.calls) == 6
        assert not any(c[2] for c in builds), builds
        # Short prompts stay inline: a thread hop per prompt would cost more than it saves.
        calls.clear()
        assert httpx.post(f"{url}/v1/judge/pairwise", json={"query": "q", "responses": ["a", "bb"]}).status_code == 200
        assert [c for c in calls if c[0] == "build"] and all(c[2] for c in calls)


def test_render_of_long_texts_runs_off_the_event_loop(model_dir, tokenizer):
    """/v1/judge/render of up to 3 x max_text_chars: tokenized in a worker thread, not on the loop
    every other request needs."""
    with spied(model_dir, tokenizer) as (url, engine, calls):
        body = {"query": "q", "responses": ["a" * 60000, "b" * 60000]}
        builder_render = []  # on the event loop? per render call
        original = template.PromptBuilder.render

        def render_spy(self, q, a, b):  # type: ignore[no-untyped-def]
            builder_render.append(on_loop())
            return original(self, q, a, b)

        template.PromptBuilder.render = render_spy  # type: ignore[method-assign]
        try:
            r = httpx.post(f"{url}/v1/judge/render", json=body, timeout=60)
            short = httpx.post(f"{url}/v1/judge/render", json={"query": "q", "responses": ["a", "b"]})
        finally:
            template.PromptBuilder.render = original  # type: ignore[method-assign]
        assert r.status_code == 200 and short.status_code == 200, r.text
        assert builder_render == [False, True], builder_render  # long: a worker thread; short: inline
        assert engine.calls == []
