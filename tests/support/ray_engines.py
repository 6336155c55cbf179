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


def _thinks_long(s: Shown) -> str:
    slot = 1 if len(s.first) >= len(s.second) else 2
    return " ".join(["step"] * 300) + f"\n\\boxed{{Assistant {slot}}}"


def thinking(settings: Settings) -> ScriptedEngine:
    """A judge that thinks 300 tokens, 10 ms each, streamed, and whose probes are confident in
    the longer response: for early exit, deadlines and streaming through Serve handles."""
    return ScriptedEngine(tokenizer=_tokenizer(settings), script=_thinks_long, token_delay=0.01,
                          probability=lambda s: 0.9 if len(s.first) >= len(s.second) else 0.1)
