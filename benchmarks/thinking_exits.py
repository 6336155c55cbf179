"""Compute inside a judgment: early exit vs a fixed thinking budget vs no budget on the same
comparisons in one run (tokens and wall time per judgment, agreement with the no-budget verdicts),
then deadlines under load (hit rate, p99 latency, answers within the deadline) with and without.

    .venv/bin/python -m benchmarks.thinking_exits                       # bundled model, its own server
    .venv/bin/python -m benchmarks.thinking_exits --url http://gpu:8000 --max-tokens 8192 \\
        --budget 2048 --probe-every 256 --deadline 60 --load-max-tokens 8192   # an RRM checkpoint

The bundled 135M model shows the mechanics only (its verdicts are near chance); the figure that
matters is the second command against an RRM checkpoint (docs/benchmarks.md, "Early exit").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator

import httpx

from benchmarks._common import PANDALM, machine, missing_data, percentile, real_server, write_result


def comparisons(n: int) -> list[tuple[str, list[str]]]:
    items = json.loads(PANDALM.read_text())[:n]
    return [((it["instruction"] + "\n\n" + it["input"]).strip(), [it["response1"], it["response2"]]) for it in items]


async def judge_all(url: str, pairs: list[tuple[str, list[str]]], fields: dict, concurrency: int,
                    headers: dict | None = None) -> tuple[list[dict], float, list[float]]:
    """Every comparison once (one vote, the same seed and order in every arm); the responses, the
    wall time of the batch and each request's latency."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(c: httpx.AsyncClient, q: str, rs: list[str]) -> dict:
        async with sem:
            t = time.perf_counter()
            r = await c.post("/v1/judge/pairwise", json={"query": q, "responses": rs, **fields}, headers=headers)
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            return r.json()

    async with httpx.AsyncClient(base_url=url, timeout=3600) as c:
        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(c, q, rs) for q, rs in pairs))
        return list(out), time.perf_counter() - t0, latencies


def arm_row(name: str, results: list[dict], wall: float, reference: list[dict] | None) -> dict:
    votes = [r["votes"][0] for r in results]
    exits: dict[str, int] = {}
    for v in votes:
        exits[v["exit"] or "engine_error"] = exits.get(v["exit"] or "engine_error", 0) + 1
    n = len(votes)
    row = {"arm": name, "judgments": n,
           "tokens_per_judgment": round(sum(v["generated_tokens"] for v in votes) / n, 1),
           "seconds_per_judgment": round(wall / n, 3),
           "valid": sum(v["verdict"] is not None for v in votes),
           "exit_probes": sum(r["usage"]["exit_probes"] for r in results),
           "thinking_tokens_saved": sum(r["usage"]["thinking_tokens_saved"] for r in results),
           "exits": exits}
    if reference is not None:
        same = sum(v["verdict"] == rv["votes"][0]["verdict"] for v, rv in zip(votes, reference))
        row["agreement_with_no_budget"] = round(same / n, 3)
    return row


async def deadline_load(url: str, pairs: list[tuple[str, list[str]]], votes: int, max_tokens: int,
                        deadline: float | None) -> dict:
    """All requests at once (the load an RL step sends), each ``votes`` long votes."""
    fields = {"votes": votes, "early_stop": False, "cache": False, "max_tokens": max_tokens,
              "max_thinking_tokens": None, "rescue_invalid": True, "seed": 7}
    headers = {"X-Request-Deadline": str(deadline)} if deadline else None
    results, wall, lat = await judge_all(url, pairs, fields, concurrency=len(pairs), headers=headers)
    closed = [r for r in results if any(v["exit"] == "deadline" for v in r["votes"])]
    row = {"deadline_s": deadline, "requests": len(results), "wall_s": round(wall, 2),
           "p50_s": round(percentile(lat, 0.5), 2), "p99_s": round(percentile(lat, 0.99), 2),
           "max_s": round(max(lat), 2), "deadline_hit_rate": round(len(closed) / len(results), 3),
           "votes_with_verdict": sum(v["verdict"] is not None for r in results for v in r["votes"]),
           "votes": sum(len(r["votes"]) for r in results)}
    if deadline:
        row["answered_within_deadline"] = round(sum(x <= deadline for x in lat) / len(lat), 3)
    return row


@contextlib.contextmanager
def service(url: str | None, deadline_margin: float | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with real_server(*(["--deadline-margin", str(deadline_margin)] if deadline_margin is not None else [])) as u:
            yield u


def run(comparisons_n: int = 16, max_tokens: int = 128, budget: int = 32,
        thresholds: tuple[float, ...] = (0.6, 0.75, 0.9), probe_every: int = 16, concurrency: int = 8,
        load_requests: int = 8, load_votes: int = 2, load_max_tokens: int = 384, deadline: float = 4.0,
        url: str | None = None, deadline_margin: float | None = None) -> dict:
    pairs = comparisons(comparisons_n)
    base = {"votes": 1, "order": "fixed", "seed": 3, "cache": False, "max_tokens": max_tokens,
            "rescue_invalid": True, "early_stop": False}
    # The same work streamed (a far deadline streams every vote and closes none): the cost of streaming.
    arms = [("no budget", {"max_thinking_tokens": None}),
            ("no budget, streamed", {"max_thinking_tokens": None, "deadline_s": 600}),
            (f"fixed budget {budget}", {"max_thinking_tokens": budget})]
    arms += [(f"early exit {t}", {"max_thinking_tokens": None, "early_exit": True, "exit_confidence": t,
                                  "probe_every": probe_every}) for t in thresholds]
    with service(url, deadline_margin) as u:
        info = httpx.get(f"{u}/v1/models", timeout=30).json()["data"][0]
        judge_all_sync = lambda f: asyncio.run(judge_all(u, pairs, {**base, **f}, concurrency))  # noqa: E731
        judge_all_sync({"max_tokens": 4})  # warm-up: prompts in the prefix cache for every arm alike
        rows, reference = [], None
        for name, fields in arms:
            results, wall, _ = judge_all_sync(fields)
            rows.append(arm_row(name, results, wall, reference))
            reference = reference or results
            print(json.dumps(rows[-1]), flush=True)
        load_pairs = pairs[:load_requests]
        loads = [asyncio.run(deadline_load(u, load_pairs, load_votes, load_max_tokens, d)) for d in (None, deadline)]
        for row in loads:
            print(json.dumps(row), flush=True)
    none = rows[0]
    for r in rows[1:]:
        r["tokens_vs_no_budget"] = round(r["tokens_per_judgment"] / none["tokens_per_judgment"], 3)
        r["time_vs_no_budget"] = round(r["seconds_per_judgment"] / none["seconds_per_judgment"], 3)
    return {"model": info["id"], "max_tokens": max_tokens, "probe_every": probe_every, "arms": rows,
            "deadlines": loads, "deadline_margin": deadline_margin}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running rrm-server (e.g. an RRM checkpoint on a GPU); default: start the "
                    "bundled model")
    ap.add_argument("--comparisons", type=int, default=16, help="PandaLM pairs judged by every arm")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--budget", type=int, default=32, help="the fixed-budget arm's max_thinking_tokens")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.75, 0.9])
    ap.add_argument("--probe-every", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--load-requests", type=int, default=8)
    ap.add_argument("--load-max-tokens", type=int, default=384)
    ap.add_argument("--deadline", type=float, default=4.0, help="X-Request-Deadline of the loaded arm (s)")
    ap.add_argument("--deadline-margin", type=float, help="the started server's --deadline-margin (default: its own)")
    ap.add_argument("--out-name", default="thinking_exits", help="results file name (benchmarks/results/NAME.json)")
    a = ap.parse_args(argv)
    if why := missing_data(PANDALM):
        print(why, file=sys.stderr)
        return 2
    result = run(a.comparisons, a.max_tokens, a.budget, tuple(a.thresholds), a.probe_every, a.concurrency,
                 a.load_requests, 2, a.load_max_tokens, a.deadline, a.url, a.deadline_margin)
    cmd = "python -m benchmarks.thinking_exits " + " ".join(argv if argv is not None else sys.argv[1:])
    write_result(a.out_name, {"machine": machine(), "smoke": False, "command": cmd.strip(), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
