"""One command for the whole performance suite: runs every benchmark side by side on this machine,
writes benchmarks/results/<suite>.json, PNG plots, and benchmarks/results/report.md (machine, date,
commands, tables), which is what docs/benchmarks.md quotes.

    .venv/bin/python -m benchmarks.run_all                 # full sizes (about an hour on 2 CPU cores)
    .venv/bin/python -m benchmarks.run_all --smoke         # tiny sizes into a scratch folder (CI)
    .venv/bin/python -m benchmarks.run_all --only gateway_overhead load_curve
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# Full and smoke sizes per suite: (module, full kwargs, smoke kwargs).
SUITES: dict[str, tuple[str, dict, dict]] = {
    "gateway_overhead": ("benchmarks.gateway_overhead", {"requests": 500, "seconds": 10.0},
                         {"requests": 20, "seconds": 1.0}),
    "load_curve": ("benchmarks.load_curve", {"latency": 0.05, "per_client": 4},
                   {"latency": 0.01, "per_client": 1, "serve_limit": 4, "queue_limit": 4, "levels": (1, 4, 16)}),
    "engine_efficiency": ("benchmarks.engine_efficiency", {"comparisons": 64, "max_tokens": 64},
                          {"comparisons": 4, "max_tokens": 4}),
    "naive_client": ("benchmarks.naive_client", {"sizes": (4, 8), "max_tokens": 16}, {"sizes": (3,), "max_tokens": 2}),
    "replicas": ("benchmarks.replicas", {"questions": 4, "concurrency": 4, "max_tokens": 16},
                 {"questions": 1, "concurrency": 2, "max_tokens": 2}),
    "ray_scaleout": ("benchmarks.ray_scaleout", {"questions": 8, "concurrency": 4, "max_tokens": 16, "waves": 3},
                     {"questions": 1, "concurrency": 2, "max_tokens": 2, "waves": 2, "arms": ("ray, 1 replica",)}),
    "thinking_exits": ("benchmarks.thinking_exits", {},
                       {"comparisons_n": 2, "max_tokens": 16, "budget": 4, "thresholds": (0.75,), "probe_every": 4,
                        "load_requests": 2, "load_max_tokens": 64, "deadline": 2.0}),
    "cold_start": ("benchmarks.cold_start", {}, {}),
}
# The shared data each suite reads, under ../shared/data (benchmarks/_common.py DATA).
DATA_NEEDED: dict[str, tuple[str, ...]] = {
    "gateway_overhead": ("pandalm/testset-v1.json",),
    "engine_efficiency": ("pandalm/testset-v1.json",),
    "naive_client": ("gsm8k-bon/example_model_solutions.jsonl",),
    "replicas": ("gsm8k-bon/example_model_solutions.jsonl",),
    "ray_scaleout": ("gsm8k-bon/example_model_solutions.jsonl",),
    "thinking_exits": ("pandalm/testset-v1.json",),
}


def missing_data(suites: list[str]) -> str | None:
    """Why these suites cannot run here (their data is absent, the folder named), or None."""
    from benchmarks._common import DATA
    from benchmarks._common import missing_data as missing

    needed = dict.fromkeys(rel for name in suites for rel in DATA_NEEDED.get(name, ()))
    return missing(*(DATA / rel for rel in needed)) if needed else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, results into --out (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="results folder (default: benchmarks/results, or a temp dir with --smoke)")
    ap.add_argument("--only", nargs="+", choices=sorted(SUITES), help="run these suites only")
    args = ap.parse_args(argv)
    if args.smoke and args.out is None:
        import tempfile

        args.out = Path(tempfile.mkdtemp(prefix="rrm-bench-smoke-"))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        os.environ["RRM_BENCH_RESULTS"] = str(args.out)  # before the suites import _common
    import importlib

    from benchmarks import report
    from benchmarks._common import RESULTS, machine, write_result

    failed = []
    for name in args.only or list(SUITES):
        module, full, smoke = SUITES[name]
        kwargs = smoke if args.smoke else full
        print(f"== {name} {kwargs}", flush=True)
        if why := missing_data([name]):
            print(f"{name}: {why}", file=sys.stderr)
            failed.append(name)
            continue
        t0 = time.perf_counter()
        try:
            run: Callable = importlib.import_module(module).run
            result = run(**kwargs)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        payload = {"machine": machine(), "smoke": args.smoke, "seconds": round(time.perf_counter() - t0, 1),
                   "command": f"python -m benchmarks.run_all{' --smoke' if args.smoke else ''} --only {name}",
                   **({"rows": result} if isinstance(result, list) else result),
                   "args": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}
        write_result(name, payload)
    path = report.write(RESULTS)
    print(f"report: {path}")
    if failed:
        print(f"failed suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
