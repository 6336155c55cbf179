"""rrm-server vs the client a user would write without it: the RRM prompt built by hand, one
`/v1/chat/completions` call per comparison against `vllm serve`, verdicts parsed with a regex;
sequentially, and with asyncio concurrency (knockout: concurrent within a round). rrm-server runs as
a gateway on the SAME `vllm serve` replica (`--engine openai`) and takes one `/v1/judge/rank` call.
Both sides generate a fixed number of tokens (ignore_eos), one vote per comparison.

    .venv/bin/python -m benchmarks.naive_client [--max-tokens 16] [--sizes 4 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time

import httpx

from benchmarks._common import RESULTS, machine, write_result
from benchmarks.replicas import gateway, replicas
from benchmarks.strategy_study import load_questions
from rrm_server import bundled_model
from rrm_server.prompt.template import rrm_prompt

BOXED = re.compile(r"\\boxed\{Assistant ([12])\}")


class Naive:
    """What one writes in an afternoon: correct prompt, no batching beyond asyncio, no caching."""

    def __init__(self, url: str, model: str, max_tokens: int) -> None:
        self.url, self.model, self.max_tokens = url, model, max_tokens
        self.spec = rrm_prompt()

    async def compare(self, c: httpx.AsyncClient, q: str, a: str, b: str, rnd: random.Random) -> bool:
        """True if a beats b."""
        swap = rnd.random() < 0.5
        first, second = (b, a) if swap else (a, b)
        user = self.spec.user.format(question=q, answer1=first, answer2=second) + self.spec.user_suffix
        r = await c.post(f"{self.url}/v1/chat/completions", json={
            "model": self.model, "messages": [{"role": "system", "content": self.spec.system},
                                              {"role": "user", "content": user}],
            "max_tokens": self.max_tokens, "temperature": 0.6, "ignore_eos": True, "seed": rnd.randrange(1 << 30)})
        text = r.json()["choices"][0]["message"]["content"] or ""
        m = BOXED.findall(text.split("</think>")[-1])
        slot = int(m[-1]) if m else rnd.choice((1, 2))  # the usual shortcut: a coin for a failed verdict
        return (slot == 1) != swap

    async def elo(self, c: httpx.AsyncClient, q: str, rs: list[str], concurrent: bool) -> int:
        rnd = random.Random(0)
        pairs = [(i, j) for i in range(len(rs)) for j in range(i + 1, len(rs))]
        if concurrent:
            wins = await asyncio.gather(*(self.compare(c, q, rs[i], rs[j], rnd) for i, j in pairs))
        else:
            wins = [await self.compare(c, q, rs[i], rs[j], rnd) for i, j in pairs]
        score = [0] * len(rs)
        for (i, j), w in zip(pairs, wins):
            score[i if w else j] += 1
        return max(range(len(rs)), key=score.__getitem__)

    async def knockout(self, c: httpx.AsyncClient, q: str, rs: list[str], concurrent: bool) -> int:
        rnd = random.Random(0)
        alive = list(range(len(rs)))
        while len(alive) > 1:
            pairs = list(zip(alive[::2], alive[1::2]))
            if concurrent:
                wins = await asyncio.gather(*(self.compare(c, q, rs[i], rs[j], rnd) for i, j in pairs))
            else:
                wins = [await self.compare(c, q, rs[i], rs[j], rnd) for i, j in pairs]
            alive = [i if w else j for (i, j), w in zip(pairs, wins)] + (alive[-1:] if len(alive) % 2 else [])
        return alive[0]


def responses(n: int) -> tuple[str, list[str]]:
    q, texts, _ = load_questions(n)[0]
    return q, texts


async def timed(coro) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


def run(sizes: tuple[int, ...] = (4, 8), max_tokens: int = 16) -> list[dict]:
    model = bundled_model.ensure_bundled_model()
    logs = RESULTS / "naive_client-logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    with replicas(model, ["0-1"], logs) as urls:
        for u in urls:
            httpx.post(f"{u}/reset_prefix_cache", timeout=30)
        naive = Naive(urls[0], str(model), max_tokens)
        # ignore_eos through the gateway too, so both sides generate the same tokens.
        with gateway(model, urls, "prefix_affinity", logs, "rrm", {"RRM_ENGINE_IGNORE_EOS": "true"}) as gw:
            async def one(method: str, n: int) -> dict:
                q, rs = responses(n)
                async with httpx.AsyncClient(timeout=3600) as c:
                    # Same prompts for every arm: warm the replica's prefix cache equally with one call.
                    await naive.compare(c, q, rs[0], rs[1], random.Random(1))
                    fn = naive.elo if method == "elo" else naive.knockout
                    seq = await timed(fn(c, q, rs, concurrent=False))
                    conc = await timed(fn(c, q, rs, concurrent=True))
                    body = {"query": q, "responses": rs, "method": method, "votes": 1, "seed": 0, "cache": False,
                            "verdict_probs": False, "max_tokens": max_tokens, "temperature": 0.6}
                    t0 = time.perf_counter()
                    r = await c.post(f"{gw}/v1/judge/rank", json=body)
                    ours = time.perf_counter() - t0
                    r.raise_for_status()
                calls = r.json()["usage"]["engine_calls"]
                return {"method": method, "n": n, "comparisons": calls, "naive_sequential_s": round(seq, 2),
                        "naive_concurrent_s": round(conc, 2), "rrm_server_s": round(ours, 2),
                        "speedup_vs_sequential": round(seq / ours, 2), "speedup_vs_concurrent": round(conc / ours, 2)}

            for method in ("elo", "knockout"):
                for n in sizes:
                    row = asyncio.run(one(method, n))
                    print(row, flush=True)
                    rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    rows = run(tuple(args.sizes), args.max_tokens)
    out = write_result("naive_client", {"machine": machine(), "max_tokens": args.max_tokens, "rows": rows,
                                        "command": "python -m benchmarks.naive_client " + " ".join(sys.argv[1:])})
    print(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
