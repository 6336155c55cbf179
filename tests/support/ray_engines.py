"""Engine factories for Ray Serve engine replicas in tests (``engine_factory`` of
``rrm_server.ray_serve.app.application``): the scripted judge, imported inside each replica."""

from __future__ import annotations

from typing import Any

from rrm_server.engine import EngineError
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine, Shown, prefer

FAILING_QUERY = "engine-error"  # the scripted engine fails every generation of this query
_longer = prefer(lambda a, b: len(a) >= len(b))


def _judge(s: Shown) -> str:
    if s.query == FAILING_QUERY:
        raise EngineError("scripted engine error")
    return _longer(s)


def _tokenizer(settings: Settings) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(settings.tokenizer or settings.model)


def scripted(settings: Settings) -> ScriptedEngine:
    """Prefers the longer response; answers at once (fails the FAILING_QUERY)."""
    return ScriptedEngine(tokenizer=_tokenizer(settings), script=_judge)


def slow(settings: Settings) -> ScriptedEngine:
    """The same judge taking 1 s per comparison: requests stay in flight long enough to kill a
    replica under them, fill the queues, or make the autoscaler add a replica."""
    return ScriptedEngine(tokenizer=_tokenizer(settings), script=_judge, delay=1.0)
