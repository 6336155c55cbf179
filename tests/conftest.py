from __future__ import annotations

from pathlib import Path

import pytest

from rrm_server import bundled_model
from rrm_server.prompt.template import PromptBuilder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The bundled model, converted once per machine (the README's commands already did it)."""
    return bundled_model.ensure_bundled_model()


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="session")
def builder(tokenizer) -> PromptBuilder:  # type: ignore[no-untyped-def]
    return PromptBuilder(tokenizer)


@pytest.fixture(scope="session")
def think_tokenizer(model_dir: Path):  # type: ignore[no-untyped-def]
    """The bundled tokenizer made to look like DeepSeek-R1-Distill/RRM: <think> and </think> are
    added (non-special) tokens and the generation prompt opens a think block."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.add_tokens(["<think>", "</think>"])
    tok.add_special_tokens({"additional_special_tokens": ["<｜User｜>", "<｜Assistant｜>"]})
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
        "{% elif m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
    )
    return tok


def pandalm_items(limit: int | None = None) -> list[dict]:
    import json

    path = SHARED_DATA / "pandalm" / "testset-v1.json"
    if not path.exists():
        pytest.skip(f"evaluation data not found at {path}")
    items = json.loads(path.read_text())
    return items[:limit] if limit else items


@pytest.fixture(scope="session")
def redis_proc():  # type: ignore[no-untyped-def]
    """Our own redis-server (started once; tests may stop and restart it)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required for the cache tests")
    from tests.support.redis_server import RedisProcess

    proc = RedisProcess()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_prefix(request):  # type: ignore[no-untyped-def]
    """A key prefix of this test's own on the machine's Redis (127.0.0.1:6379), cleaned up after."""
    import uuid

    import redis

    prefix = f"rrm-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis()
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def service(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    """A running service (real HTTP) whose scripted judge prefers the longer response."""
    from rrm_server.api.app import build_app
    from rrm_server.settings import Settings
    from tests.support.engines import ScriptedEngine
    from tests.support.server import serve_in_thread

    engine = ScriptedEngine(tokenizer=tokenizer)
    settings = Settings(model=str(model_dir), reward_group_size=3, reward_group_wait=1.0, reward_votes=2)
    with serve_in_thread(build_app(settings, engine=engine, tokenizer=tokenizer)) as url:
        yield url, engine
