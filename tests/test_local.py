"""The in-process Python API gives the same results as HTTP and raises the same errors."""

from __future__ import annotations

import pydantic
import pytest

from rrm_server.errors import InvalidRequest
from rrm_server.local import LocalJudge
from rrm_server.settings import Settings
from tests.support.engines import ScriptedEngine


async def test_local_judge(model_dir, tokenizer):
    engine = ScriptedEngine(tokenizer=tokenizer)
    async with LocalJudge(Settings(model=str(model_dir)), engine=engine, tokenizer=tokenizer,
                          max_votes=4) as judge:
        pw = await judge.pairwise("q", ["a", "bbb"], votes=3, seed=1)
        # Unanimous: early stopping needs 2 of the 3 votes.
        assert pw.winner == 1 and pw.tally.second == 2 and pw.usage.engine_calls == 2
        assert pw.usage.votes_saved == 1 and pw.confidence == 0.875
        rk = await judge.rank("q", ["a", "bbbb", "cc"], method="knockout", seed=2)
        assert rk.best == 1 and rk.ranking[0] == 1
        assert (await judge.render("q", ["a", "b"])).num_prompt_tokens > 100
        with pytest.raises(InvalidRequest, match="maximum of 4"):
            await judge.pairwise("q", ["a", "b"], votes=5)
        with pytest.raises(pydantic.ValidationError):
            await judge.pairwise("q", ["a"])
    assert not engine.ready
