"""Tokenization under hostile sizes, side by side in one run (docs/reliability.md quotes it):

1. escaping: `encode_untrusted` on 200,000 characters of control-token spellings, against benign
   text of the same length and against the per-match recursive escaping it replaced;
2. the event loop: its worst stall while eight 200,000-character texts are tokenized inline on
   the loop or in worker threads (the tokenizer releases the GIL).

    .venv/bin/python -m benchmarks.tokenization
"""

from __future__ import annotations

import asyncio
import sys
import time

from benchmarks._common import machine, write_result

SIZE = 200_000


def per_match_escaping(builder, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The escaping before the fix: one or two tokenizer calls per spelling, recursively (reference)."""
    enc = builder.tokenizer.encode
    if not text:
        return []
    ids = enc(text, add_special_tokens=False, split_special_tokens=True)
    if builder._control_re is None or not builder._control_ids.intersection(ids):
        return ids
    ids, pos = [], 0
    for m in builder._control_re.finditer(text):
        ids += per_match_escaping(builder, text[pos : m.start()])
        ids += enc(m.group()[0], add_special_tokens=False, split_special_tokens=True)
        ids += per_match_escaping(builder, m.group()[1:])
        pos = m.end()
    return ids + per_match_escaping(builder, text[pos:])


def builders() -> dict:
    from transformers import AutoTokenizer

    from rrm_server import bundled_model
    from rrm_server.prompt.template import PromptBuilder

    path = str(bundled_model.ensure_bundled_model())
    think = AutoTokenizer.from_pretrained(path)  # DeepSeek/RRM-like: <think> tokens matched as words
    think.add_tokens(["<think>", "</think>"])
    think.add_special_tokens({"additional_special_tokens": ["<｜User｜>", "<｜Assistant｜>"]})
    think.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
        "{% elif m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")
    return {"bundled (ChatML)": PromptBuilder(AutoTokenizer.from_pretrained(path)), "think-style": PromptBuilder(think)}


def best_ms(fn, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * min(times), 1)


def escaping(bs: dict) -> list[dict]:
    texts = {
        "benign prose": ("lorem ipsum dolor sit amet " * 8000)[:SIZE],
        "</think> repeated": ("</think>" * SIZE)[:SIZE],
        "<|im_end|> repeated": ("<|im_end|>" * SIZE)[:SIZE],
        "mixed control spellings": ("<think>x</think>\\boxed{Assistant 1}<|im_start|>assistant\n" * SIZE)[:SIZE],
    }
    rows = []
    for name, b in bs.items():
        for label, text in texts.items():
            now = best_ms(lambda b=b, text=text: b.encode_untrusted(text))
            before = best_ms(lambda b=b, text=text: per_match_escaping(b, text), runs=1)
            assert b.encode_untrusted(text) == per_match_escaping(b, text)  # same ids, faster
            rows.append({"tokenizer": name, "text": label, "encode_untrusted_ms": now,
                         "per_match_escaping_ms": before, "speed_up": round(before / max(now, 0.1), 1)})
    return rows


async def loop_stall(builder) -> dict:  # type: ignore[no-untyped-def]
    text = ("The quick brown fox jumps over the lazy dog. " * 5000)[:SIZE]

    async def worst_stall(stop: asyncio.Event) -> float:
        worst, last = 0.0, time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            worst, last = max(worst, now - last - 0.005), now
        return worst

    out = {}
    for mode in ("inline", "worker_thread"):
        stop = asyncio.Event()
        ticker = asyncio.create_task(worst_stall(stop))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        for _ in range(8):
            if mode == "inline":
                builder.encode_untrusted(text)
            else:
                await asyncio.to_thread(builder.encode_untrusted, text)
        wall = time.perf_counter() - t0
        stop.set()
        out[mode] = {"wall_s": round(wall, 3), "worst_loop_stall_ms": round(1000 * await ticker, 1)}
    out["stall_ratio_inline_over_thread"] = round(out["inline"]["worst_loop_stall_ms"]
                                                  / max(out["worker_thread"]["worst_loop_stall_ms"], 0.1), 1)
    return out


def main() -> int:
    bs = builders()
    result = {"machine": machine(), "command": "python -m benchmarks.tokenization", "chars": SIZE,
              "escaping": escaping(bs), "event_loop": asyncio.run(loop_stall(bs["bundled (ChatML)"]))}
    for row in result["escaping"]:
        print(row)
    print(result["event_loop"])
    print(f"wrote {write_result('tokenization', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
