"""What stripping a reasoning policy's think block saves the judge, in prompt tokens per comparison.

Responses are built the way an R1-style policy writes them: real GSM8K candidate solutions
(openai/grade-school-math, ``example_model_solutions.jsonl``) as the reasoning inside
``<think>...</think>``, followed by the short answer the policy commits to ("The answer is N.").
Each of the 4 candidates of a question is compared with the next one, through the judge's real
prompt builder and tokenizer (the bundled model's), with ``strip_reasoning`` off and auto; the
prompt is what the engine would prefill (and what the context must hold). No engine is needed.

    .venv/bin/python -m benchmarks.reasoning_strip [--questions 300]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from benchmarks._common import DATA, machine, write_result
from rrm_server import bundled_model
from rrm_server.prompt.answers import AnswerPolicy, prepare_answer
from rrm_server.prompt.template import PromptBuilder


def policy_responses(limit: int) -> list[tuple[str, list[str]]]:
    out = []
    for line in (DATA / "gsm8k-bon" / "example_model_solutions.jsonl").read_text().splitlines()[:limit]:
        row = json.loads(line)
        cands = [v["solution"] for v in row.values() if isinstance(v, dict) and "solution" in v]
        texts = []
        for c in cands:
            final = re.findall(r"-?\d[\d,]*(?:\.\d+)?", c.split("####")[-1]) or ["?"]
            texts.append(f"<think>\n{c.strip()}\n</think>\n\nThe answer is {final[-1].strip('.')}.")
        out.append((row["question"], texts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=300)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    builder = PromptBuilder(AutoTokenizer.from_pretrained(str(bundled_model.ensure_bundled_model())))
    data = policy_responses(args.questions)
    sizes: dict[str, list[int]] = {"off": [], "auto": []}
    t0 = time.perf_counter()
    for mode in sizes:
        policy = AnswerPolicy(strip_reasoning=mode)  # type: ignore[arg-type]
        for question, texts in data:
            shown = [prepare_answer(t, policy).text for t in texts]
            for a, b in zip(shown, shown[1:]):
                sizes[mode].append(len(builder.build_ids(question, a, b)))
    off, auto = statistics.mean(sizes["off"]), statistics.mean(sizes["auto"])
    template = builder.template_tokens
    result = {
        "machine": machine(),
        "command": f"python -m benchmarks.reasoning_strip --questions {args.questions}",
        "tokenizer": "bundled SmolLM2-135M-Instruct",
        "questions": len(data),
        "comparisons": len(sizes["off"]),
        "prompt_tokens_mean": {"strip_off": round(off, 1), "strip_auto": round(auto, 1)},
        "prompt_tokens_max": {"strip_off": max(sizes["off"]), "strip_auto": max(sizes["auto"])},
        "template_tokens": template,
        "saved_share_of_prompt": round(1 - auto / off, 3),
        "saved_share_of_response_tokens": round(1 - (auto - template) / (off - template), 3),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    write_result("reasoning_strip", result)


if __name__ == "__main__":
    main()
