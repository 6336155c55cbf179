from __future__ import annotations

import httpx
import pytest

from rrm_server.api.app import build_app
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine, prefer
from tests.support.server import serve_in_thread


@pytest.fixture(scope="module")
def scripted(tokenizer):  # type: ignore[no-untyped-def]
    return ScriptedEngine(tokenizer=tokenizer, max_model_len=2048)


@pytest.fixture(scope="module")
def api_settings(tokenizer_dir) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(model=str(tokenizer_dir), max_responses=10, max_votes=8, max_text_chars=5000)


@pytest.fixture(scope="module")
def base_url(scripted, api_settings, tokenizer):  # type: ignore[no-untyped-def]
    with serve_in_thread(build_app(api_settings, engine=scripted, tokenizer=tokenizer)) as url:
        yield url


@pytest.fixture
def engine(scripted, base_url):  # type: ignore[no-untyped-def]
    """The module's scripted engine, reset: a longer response wins, no delay, alive; cache empty."""
    httpx.delete(f"{base_url}/v1/cache").raise_for_status()
    scripted.script = prefer(lambda a, b: len(a) >= len(b))
    scripted.delay = 0.0
    scripted.dead = False
    scripted.calls.clear()
    scripted.probes.clear()
    scripted.probability = None
    scripted.cancelled.clear()
    scripted.max_in_flight = 0
    return scripted
