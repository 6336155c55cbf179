"""Engine efficiency: the same comparisons through rrm-server over HTTP (in-process vLLM engine) vs
vLLM's offline `LLM.generate` batch, same model and engine arguments, same prompt token ids (taken
from the service's own /v1/judge/render), same seeds, and a fixed output length (ignore_eos) so
both sides generate exactly the same number of tokens. One run, one after the other.

    .venv/bin/python -m benchmarks.engine_efficiency [--comparisons 64] [--max-tokens 64]

Target: rrm-server >= 0.95x the offline batch's judgments/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks._common import RESULTS, machine, real_server, write_result
from benchmarks.gateway_overhead import pandalm_pairs


def offline(prompts_file: Path, max_tokens: int) -> None:
    """In a fresh process: vLLM's LLM with the engine arguments rrm-server itself would use."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from rrm_server.engine.vllm_local import engine_kwargs
    from rrm_server.serving.runtime import resolve_model_path
    from rrm_server.settings import Settings

    data = json.loads(prompts_file.read_text())
    settings = Settings()
    kwargs = engine_kwargs(settings, resolve_model_path(settings))
    t_load = time.perf_counter()
    llm = LLM(**kwargs)
    load_s = time.perf_counter() - t_load
    prompts = [TokensPrompt(prompt_token_ids=p["ids"]) for p in data]
    params = [SamplingParams(temperature=p["temperature"], top_p=p["top_p"], max_tokens=max_tokens, seed=p["seed"],
                             ignore_eos=True) for p in data]
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t0
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    # A file, not stdout: vLLM logs there too.
    prompts_file.with_suffix(".offline.json").write_text(
        json.dumps({"seconds": wall, "generated_tokens": generated, "load_s": load_s}))


async def through_service(url: str, pairs: list, max_tokens: int) -> tuple[dict, list[dict]]:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as c:
        bodies = [{"query": q, "responses": [a, b], "votes": 1, "order": "fixed", "seed": i, "cache": False,
                   "verdict_probs": False, "max_tokens": max_tokens, "temperature": 0.6, "top_p": 1.0,
                   # The same work as offline: no thinking budget, no forced verdict after it.
                   "max_thinking_tokens": None, "rescue_invalid": False}
              for i, (q, a, b) in enumerate(pairs)]
        # The exact prompts and per-vote seeds, for the offline side.
        rendered = []
        for b in bodies:
            r = (await c.post("/v1/judge/render", json={"query": b["query"], "responses": b["responses"],
                                                         "order": "fixed"})).json()
            rendered.append({"ids": r["prompt_token_ids"]})
        await c.post("/v1/judge/pairwise", json={**bodies[0], "seed": 10**6})  # warm-up, as LLM() warms up
        t0 = time.perf_counter()
        results = await asyncio.gather(*(c.post("/v1/judge/pairwise", json=b) for b in bodies))
        wall = time.perf_counter() - t0
    outs = [r.json() for r in results]
    for r, b, out in zip(rendered, bodies, outs):
        r.update(seed=out["votes"][0]["seed"], temperature=b["temperature"], top_p=b["top_p"])
    generated = sum(o["usage"]["generated_tokens"] for o in outs)
    return {"seconds": wall, "generated_tokens": generated}, rendered


def run(comparisons: int = 64, max_tokens: int = 64) -> dict:
    pairs = pandalm_pairs(comparisons)
    env = {"RRM_CACHE_ENABLED": "false", "RRM_ENGINE_IGNORE_EOS": "true", "RRM_LOG_LEVEL": "warning"}
    with real_server(env=env, log=RESULTS / "engine_efficiency-server.log") as url:
        service, rendered = asyncio.run(through_service(url, pairs, max_tokens))
    prompts_file = RESULTS / "engine_efficiency-prompts.json"
    prompts_file.write_text(json.dumps(rendered))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.engine_efficiency", "--offline", str(prompts_file),
                           "--max-tokens", str(max_tokens)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    off = json.loads(prompts_file.with_suffix(".offline.json").read_text())
    prompt_tokens = sum(len(r["ids"]) for r in rendered)
    row = lambda d: {"seconds": round(d["seconds"], 2), "generated_tokens": d["generated_tokens"],  # noqa: E731
                     "judgments_per_s": round(comparisons / d["seconds"], 3),
                     "generated_tokens_per_s": round(d["generated_tokens"] / d["seconds"], 1)}
    result = {"comparisons": comparisons, "max_tokens": max_tokens,
              "mean_prompt_tokens": round(prompt_tokens / comparisons), "rrm_server_http": row(service),
              "vllm_offline_generate": row(off), "offline_engine_load_s": round(off["load_s"], 1)}
    result["ratio"] = round(result["rrm_server_http"]["judgments_per_s"] /
                            result["vllm_offline_generate"]["judgments_per_s"], 3)
    result["meets_target"] = result["ratio"] >= 0.95
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comparisons", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--offline", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.offline:
        return offline(args.offline, args.max_tokens)
    result = run(args.comparisons, args.max_tokens)
    out = write_result("engine_efficiency", {"machine": machine(), **result,
                                             "command": "python -m benchmarks.engine_efficiency "
                                             + " ".join(sys.argv[1:])})
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
