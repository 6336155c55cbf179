"""One state machine: each state answers with one error type, whichever endpoint asks."""

from __future__ import annotations

import pytest

from rrm_server.errors import Unavailable
from rrm_server.serving.runtime import ERROR_TYPES, Runtime, State
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine


@pytest.fixture
async def runtime(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    rt = Runtime(Settings(model=str(model_dir)), engine=ScriptedEngine(tokenizer=tokenizer), tokenizer=tokenizer)
    yield rt
    await rt.shutdown()


def _refusal(rt: Runtime) -> str:
    with pytest.raises(Unavailable) as e:
        rt.require_serving()
    assert e.value.status_code == 503
    return e.value.error_type


async def test_states_and_their_error_types(runtime):  # type: ignore[no-untyped-def]
    assert runtime.state is State.loading and _refusal(runtime) == "not_ready"
    await runtime.start()
    assert runtime.state is State.ready and runtime.require_serving() is runtime.serving
    runtime.engine.dead = True
    assert runtime.state is State.unavailable and _refusal(runtime) == "engine_unavailable"
    runtime.engine.dead = False
    runtime.restarting = True
    assert runtime.state is State.restarting and _refusal(runtime) == "engine_unavailable"
    runtime.restarting = False
    runtime.draining = True
    assert runtime.state is State.draining and runtime.require_serving() is runtime.serving  # in-flight work ends
    runtime._fatal("the judge engine died (3 restarts); exiting")
    assert runtime.state is State.engine_failed and _refusal(runtime) == "engine_failed"
    assert not runtime.state.alive


async def test_a_failed_start_is_one_state_everywhere(model_dir, tokenizer):  # type: ignore[no-untyped-def]
    rt = Runtime(Settings(model=str(model_dir)), engine=ScriptedEngine(tokenizer=tokenizer, fail_start=True),
                 tokenizer=tokenizer)
    with pytest.raises(RuntimeError):
        await rt.start()
    assert rt.state is State.startup_failed and not rt.state.alive
    assert _refusal(rt) == ERROR_TYPES[State.startup_failed] == "startup_failed"
    assert "scripted start failure" in rt.state_message()


def test_every_refusing_state_has_one_error_type() -> None:
    refusing = {s for s in State if not s.accepts_work}
    assert refusing <= set(ERROR_TYPES)
    assert {s for s in State if s.accepts_work} == {State.ready, State.draining}
