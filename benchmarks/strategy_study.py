"""Strategy study: best-of-N selection on real GSM8K candidates (openai/grade-school-math, the 731
questions whose 4 candidate solutions mix right and wrong), ELO and knockout with fixed,
early-stopped and difficulty-aware voting. The judge is simulated with a set per-vote accuracy so
the table isolates the scheduling; a short run on the real CPU engine adds token counts.

    .venv/bin/python -m benchmarks.strategy_study [--accuracy 0.75] [--real-questions 3]

A second table puts sparse tournaments (``opponents=m``: each candidate meets m others, rated by
Bradley-Terry) beside the full round robin and knockout at N = 4, 8, 16, 32 (``--sparse-sizes``),
one vote per comparison as in the RRM RL arena.

Writes benchmarks/results/strategy_study.json, docs/strategy_study.png and docs/sparse_study.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import GSM8K_BON, ROOT, machine, missing_data, real_server, write_result
from benchmarks.simulated_judge import simulated_serving
from rrm_server.protocol.judge import RankRequest


@dataclass(frozen=True)
class Config:
    name: str
    method: str
    fields: dict


K = 5
CONFIGS = [
    Config("elo fixed k=5", "elo", {"votes": K, "early_stop": False}),
    Config("elo early-stop k<=5", "elo", {"votes": K}),
    # From 2 votes the default is both orders, in swapped pairs; one order shows what pairing costs.
    Config("elo early-stop k<=5 one order", "elo", {"votes": K, "order": "random"}),
    Config("elo adaptive 1..5", "elo", {"votes": 1, "adaptive_votes": K, "target_confidence": 0.85}),
    Config("knockout fixed k=5", "knockout", {"votes": K, "early_stop": False}),
    Config("knockout early-stop k<=5", "knockout", {"votes": K}),
    Config("knockout adaptive 1..5", "knockout", {"votes": 1, "adaptive_votes": K, "target_confidence": 0.85}),
    Config("knockout adaptive 1..3", "knockout", {"votes": 1, "adaptive_votes": 3, "target_confidence": 0.8}),
]


# Sparse tournaments vs the full round robin and knockout, one vote per comparison (the RRM arena's).
SPARSE_CONFIGS = [
    Config("elo full k=1", "elo", {"votes": 1}),
    Config("elo sparse m=2", "elo", {"votes": 1, "opponents": 2}),
    Config("elo sparse m=4", "elo", {"votes": 1, "opponents": 4}),
    Config("elo sparse m=8", "elo", {"votes": 1, "opponents": 8}),
    Config("knockout k=1", "knockout", {"votes": 1}),
    Config("knockout k<=3", "knockout", {"votes": 3}),
]


def load_questions(n_candidates: int) -> list[tuple[str, list[str], list[bool]]]:
    """The mixed questions; above 4 candidates, extra ones are re-drawn copies of the 4 (marked so
    their texts differ), keeping each question's mix of right and wrong."""
    out = []
    for line in GSM8K_BON.read_text().splitlines():
        row = json.loads(line)
        cands = [v for k, v in row.items() if isinstance(v, dict) and "solution" in v]
        flags = [bool(c["is_correct"]) for c in cands]
        if not (any(flags) and not all(flags)):
            continue
        texts = [c["solution"] for c in cands]
        rnd = random.Random(len(out))
        while len(texts) < n_candidates:
            j = rnd.randrange(len(cands))
            texts.append(f"{cands[j]['solution']}\n(variant {len(texts)})")
            flags.append(flags[j])
        out.append((row["question"], texts[:n_candidates], flags[:n_candidates]))
    return out


async def study(n: int, accuracy: float, configs: list[Config] = CONFIGS, limit: int | None = None) -> list[dict]:
    questions = load_questions(n)[:limit]
    correct = {t: f for _, texts, flags in questions for t, f in zip(texts, flags)}
    rows = []
    winners: dict[str, list[int | None]] = {}
    configs = [c for c in configs if c.fields.get("opponents", 0) < n]
    for cfg in configs:
        serving = simulated_serving(correct, accuracy)
        t0 = time.perf_counter()
        picks, calls = [], 0

        async def one(i: int, q: str, texts: list[str], serving=serving, cfg=cfg):  # type: ignore[no-untyped-def]
            return await serving.rank(RankRequest(query=q, responses=texts, method=cfg.method, seed=i,
                                                  verdict_probs=False, cache=False, **cfg.fields))

        results = []
        for start in range(0, len(questions), 64):
            batch = questions[start : start + 64]
            results += await asyncio.gather(*(one(start + j, q, t) for j, (q, t, _) in enumerate(batch)))
        hits = 0
        for (_, _, flags), r in zip(questions, results):
            picks.append(r.best)
            hits += r.best is not None and flags[r.best]
            calls += r.usage.engine_calls
        winners[cfg.name] = picks
        rows.append({"n": n, "config": cfg.name, "method": cfg.method, "accuracy": hits / len(questions),
                     "calls_per_question": calls / len(questions), "questions": len(questions),
                     "seconds": round(time.perf_counter() - t0, 1)})
    random_pick = sum(sum(f) / len(f) for _, _, f in questions) / len(questions)
    for r in rows:
        r["random_pick"] = random_pick
        if configs is CONFIGS or configs == CONFIGS:
            base = "elo fixed k=5" if r["method"] == "elo" else "knockout fixed k=5"
            r["same_winner_as_fixed"] = (sum(a == b for a, b in zip(winners[r["config"]], winners[base]))
                                         / len(questions))
            r["calls_vs_elo_fixed"] = r["calls_per_question"] / rows[0]["calls_per_question"]
        else:
            r["calls_vs_full_elo"] = r["calls_per_question"] / rows[0]["calls_per_question"]
    return rows


def real_engine_run(questions: int) -> list[dict]:
    """The same configurations on the real vLLM CPU engine (bundled model), for token counts."""
    import httpx

    qs = load_questions(4)[:questions]
    rows = []
    with real_server(env={"RRM_CACHE_ENABLED": "false"}) as url, httpx.Client(base_url=url, timeout=3600) as c:
        for cfg in CONFIGS:
            calls = tokens = 0
            t0 = time.perf_counter()
            for i, (q, texts, _) in enumerate(qs):
                body = {"query": q, "responses": texts, "method": cfg.method, "seed": i, "cache": False,
                        "verdict_probs": False, **cfg.fields}
                u = c.post("/v1/judge/rank", json=body).json()["usage"]
                calls += u["engine_calls"]
                tokens += u["generated_tokens"]
            rows.append({"config": cfg.name, "questions": len(qs), "calls_per_question": calls / len(qs),
                         "generated_tokens_per_question": tokens / len(qs),
                         "seconds_per_question": round((time.perf_counter() - t0) / len(qs), 1)})
    return rows


def plot(rows: list[dict], path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = {"elo": "o", "knockout": "s"}
    colors = {"fixed": "tab:red", "early-stop": "tab:blue", "adaptive": "tab:green"}
    for r in rows:
        kind = next(k for k in colors if k in r["config"])
        ax.scatter(r["calls_per_question"], r["accuracy"], marker=markers[r["method"]], color=colors[kind],
                   s=20 + 12 * r["n"], alpha=0.8)
        ax.annotate(f"N={r['n']}", (r["calls_per_question"], r["accuracy"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    for kind, col in colors.items():
        ax.scatter([], [], color=col, label=kind)
    for m, mk in markers.items():
        ax.scatter([], [], color="gray", marker=mk, label=m)
    _finish(fig, ax, "GSM8K best-of-N, simulated judge (per-vote accuracy %.2f)" % rows[0]["judge_accuracy"], path)


def _finish(fig, ax, title: str, path) -> None:  # type: ignore[no-untyped-def]
    ax.set_xscale("log")
    ax.set_xlabel("engine calls per question (log)")
    ax.set_ylabel("best-of-N selection accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_sparse(rows: list[dict], path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name in dict.fromkeys(r["config"] for r in rows):
        pts = sorted((r["calls_per_question"], r["accuracy"], r["n"]) for r in rows if r["config"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        for x, y, n in pts:
            ax.annotate(f"N={n}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    _finish(fig, ax, "Sparse tournaments, simulated judge (per-vote accuracy %.2f)" % rows[0]["judge_accuracy"], path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accuracy", type=float, default=0.75)
    ap.add_argument("--sizes", default="4,6,8")
    ap.add_argument("--sparse-sizes", default="4,8,16,32")
    ap.add_argument("--limit", type=int, help="only the first N questions (smoke runs)")
    ap.add_argument("--real-questions", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs", help="where the plots go")
    args = ap.parse_args()
    if why := missing_data(GSM8K_BON):
        raise SystemExit(why)
    rows, sparse = [], []
    for n in (map(int, args.sizes.split(",")) if args.sizes else ()):
        for r in asyncio.run(study(n, args.accuracy, limit=args.limit)):
            r["judge_accuracy"] = args.accuracy
            rows.append(r)
            print(json.dumps(r))
    for n in (map(int, args.sparse_sizes.split(",")) if args.sparse_sizes else ()):
        for r in asyncio.run(study(n, args.accuracy, SPARSE_CONFIGS, limit=args.limit)):
            r["judge_accuracy"] = args.accuracy
            sparse.append(r)
            print(json.dumps(r))
    real = real_engine_run(args.real_questions) if args.real_questions else []
    for r in real:
        print(json.dumps(r))
    if rows:
        plot(rows, args.out_dir / "strategy_study.png")
    if sparse:
        plot_sparse(sparse, args.out_dir / "sparse_study.png")
    write_result("strategy_study", {"machine": machine(), "command": "python -m benchmarks.strategy_study",
                                    "simulated": rows, "sparse": sparse, "real_engine": real})


if __name__ == "__main__":
    main()
