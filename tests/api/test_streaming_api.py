"""``stream: true``: server-sent events (each vote as it lands, each match as it is played, then the
result), over real HTTP; bad input is still a JSON 400; a disconnect aborts the engine work."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from rrm_server.client import AsyncRRMClient, RRMError


def events(url: str, path: str, body: dict) -> list[tuple[str, dict]]:
    out, event = [], None
    with httpx.stream("POST", f"{url}{path}", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
    return out


def strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("id", "created", "usage")}


def test_pairwise_streams_its_votes_then_the_result(base_url, engine):
    body = {"query": "q", "responses": ["a", "bb"], "votes": 4, "early_stop": False, "seed": 3}
    got = events(base_url, "/v1/judge/pairwise", body)
    names = [n for n, _ in got]
    assert names == ["vote"] * 4 + ["match", "result"]
    result = got[-1][1]
    assert result["object"] == "judge.pairwise" and result["winner"] == 1
    streamed = sorted((d["vote"] for n, d in got if n == "vote"), key=lambda v: v["index"])
    assert streamed == result["votes"]
    assert all(d["pair"] == [0, 1] for n, d in got if n == "vote")
    # The same request unstreamed gives the same result (its votes now from the cache).
    plain = httpx.post(f"{base_url}/v1/judge/pairwise", json=body, timeout=60).json()
    assert [v["verdict"] for v in plain["votes"]] == [v["verdict"] for v in result["votes"]]
    assert {k: v for k, v in strip(plain).items() if k != "votes"} == \
        {k: v for k, v in strip(result).items() if k != "votes"}


def test_a_knockout_streams_its_matches_round_by_round(base_url, engine):
    responses = ["a", "", "ccc", "dddd", "ee", "ffffff"]  # one empty answer: it loses without a judgment
    got = events(base_url, "/v1/judge/rank", {"query": "q", "responses": responses, "method": "knockout",
                                              "votes": 2, "seed": 1})
    assert got[-1][0] == "result" and [n for n, _ in got[:-1]].count("result") == 0
    result = got[-1][1]
    matches = [d for n, d in got if n == "match"]
    assert [m["round"] for m in matches] == sorted(m["round"] for m in matches)
    by_pair = {(m["round"], tuple(m["pair"])): m for m in result["matches"]}
    assert {(m["round"], tuple(m["pair"])): m for m in matches} == by_pair  # each once, as in the result
    assert all(1 not in m["pair"] for m in matches)  # the caller's indices; the empty one never plays
    # Every vote arrives before the match it belongs to.
    seen: set[tuple[int, int]] = set()
    for n, d in got:
        if n == "vote":
            seen.add(tuple(d["pair"]))
        elif n == "match":
            assert tuple(d["pair"]) in seen
    assert result["best"] == 5


def test_elo_streams_each_match_as_it_lands(base_url, engine):
    got = events(base_url, "/v1/judge/rank", {"query": "q", "responses": ["a", "bb", "ccc", "dddd"],
                                              "votes": 1, "seed": 2})
    matches = [d for n, d in got if n == "match"]
    assert len(matches) == 6 and {tuple(m["pair"]) for m in matches} == {
        tuple(m["pair"]) for m in got[-1][1]["matches"]}


def test_bad_input_with_stream_is_a_json_400(base_url, engine):
    r = httpx.post(f"{base_url}/v1/judge/rank", json={"query": "q", "responses": ["a", "b"], "stream": True,
                                                      "votes": 99}, timeout=30)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["param"] == "votes" and engine.calls == []


def test_a_failure_after_the_stream_started_is_its_last_event(base_url, engine):
    engine.delay = 0.3
    body = {"query": "q", "responses": ["a", "bb", "ccc"], "votes": 1, "stream": True}
    got = []

    def kill_soon() -> None:
        time.sleep(0.1)
        engine.dead = True

    import threading

    threading.Thread(target=kill_soon).start()
    with httpx.stream("POST", f"{base_url}/v1/judge/rank", json=body, timeout=60) as r:
        assert r.status_code == 200
        got = [line for line in r.iter_lines() if line]
    assert got[-2] == "event: error"
    err = json.loads(got[-1][6:])["error"]
    assert err["code"] == 503 and err["type"] in ("engine_failure", "engine_unavailable")


def test_a_disconnect_aborts_the_streamed_work(base_url, engine):
    engine.delay = 5.0
    body = {"query": "q", "responses": ["a", "bb", "ccc", "dddd"], "votes": 2, "stream": True, "cache": False}
    with httpx.stream("POST", f"{base_url}/v1/judge/rank", json=body, timeout=60) as r:
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while len(engine.calls) < 12:  # every comparison is in the engine
            assert time.monotonic() < deadline
            time.sleep(0.02)
    # The connection is closed: every generation is cancelled in the engine, long before 5 s.
    deadline = time.monotonic() + 3
    while len(engine.cancelled) < 12:
        assert time.monotonic() < deadline, len(engine.cancelled)
        time.sleep(0.02)
    assert engine.in_flight == 0


def test_the_async_client_iterates_over_the_events(base_url, engine):
    async def go():  # type: ignore[no-untyped-def]
        async with AsyncRRMClient(base_url) as c:
            got = [e async for e in c.stream_rank("q", ["a", "bb", "ccc"], method="knockout", votes=1)]
            with pytest.raises(RRMError) as bad:
                async for _ in c.stream_pairwise("q", ["a", "b"], votes=99):
                    pass
            return got, bad.value

    got, bad = asyncio.run(go())
    assert [e.event for e in got][-1] == "result" and got[-1].data.best == 2
    assert {e.event for e in got[:-1]} == {"vote", "match"}
    assert bad.status == 400 and bad.param == "votes"


def test_a_streamed_request_aborts_on_client_exit(base_url, engine):
    """Leaving the async iterator early closes the stream: the judging stops (a knockout over 6
    plays 5 matches in 3 rounds; leaving at round 1's first vote, the later rounds never finish)."""
    engine.delay = 0.5

    async def go():  # type: ignore[no-untyped-def]
        async with AsyncRRMClient(base_url) as c:
            async for e in c.stream_rank("q", [f"r{i}" * (i + 1) for i in range(6)], method="knockout", votes=1,
                                         cache=False):
                assert e.event == "vote"
                break

    asyncio.run(go())
    time.sleep(1.5)  # what a continuing knockout would spend on rounds 2 and 3
    assert engine.in_flight == 0
    assert len(engine.calls) - len(engine.cancelled) < 5
