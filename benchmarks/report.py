"""The Markdown report (and its plots) from the JSON results of a run: benchmarks/results/report.md."""

from __future__ import annotations

import json
from pathlib import Path


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> list[str]:
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(k, "")) for k, _ in cols) + " |")
    return out


def _plot_naive(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r['method']} N={r['n']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for off, key, name in ((-0.27, "naive_sequential_s", "naive, sequential"),
                           (0.0, "naive_concurrent_s", "naive, asyncio"), (0.27, "rrm_server_s", "rrm-server")):
        ax.bar([x + off for x in xs], [r[key] for r in rows], width=0.27, label=name)
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("wall time (s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write(results: Path) -> Path:
    lines = ["# rrm-server benchmark report", ""]
    first = next((d for d in (_load(results, n) for n in ("gateway_overhead", "engine_efficiency", "cold_start",
                                                         "load_curve", "naive_client", "replicas")) if d), None)
    if first:
        m = first["machine"]
        lines += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB, Python {m['python']}; "
                  f"{m['date']}." + (" **Smoke run (tiny sizes): not for quoting.**" if first.get("smoke") else ""), ""]
    if d := _load(results, "engine_efficiency"):
        lines += ["## Engine efficiency (rrm-server over HTTP vs vLLM offline `LLM.generate`)", "",
                  f"{d['comparisons']} PandaLM comparisons, {d['mean_prompt_tokens']} prompt tokens on average, "
                  f"{d['max_tokens']} generated tokens each (ignore_eos). `{d['command']}`", ""]
        rows = [{"side": k, **d[k]} for k in ("rrm_server_http", "vllm_offline_generate")]
        lines += _table(rows, [("side", "side"), ("seconds", "s"), ("judgments_per_s", "judgments/s"),
                               ("generated_tokens_per_s", "generated tok/s")])
        lines += ["", f"Ratio rrm-server / offline: **{d['ratio']}** (target >= 0.95)", ""]
    if d := _load(results, "naive_client"):
        lines += ["## Versus the naive client (same `vllm serve` replica)", "", f"`{d['command']}`", ""]
        lines += _table(d["rows"], [("method", "method"), ("n", "N"), ("comparisons", "comparisons"),
                                    ("naive_sequential_s", "naive sequential s"),
                                    ("naive_concurrent_s", "naive asyncio s"), ("rrm_server_s", "rrm-server s"),
                                    ("speedup_vs_sequential", "x vs sequential"),
                                    ("speedup_vs_concurrent", "x vs asyncio")])
        if _plot_naive(d["rows"], results / "naive_client.png"):
            lines += ["", "![naive client](naive_client.png)"]
        lines += [""]
    if d := _load(results, "gateway_overhead"):
        lat, thr = d["latency"], d["throughput"]
        lines += ["## Gateway overhead (instant engine)", "", f"`{d['command']}`", "",
                  f"- pairwise round trip, sequential: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms "
                  f"({lat['requests']} requests); HTTP floor (GET /health, same client) p50 "
                  f"{lat['http_floor_p50_ms']} ms; **added by the gateway: p50 {lat['added_p50_ms']} ms** "
                  f"(target < 5 ms)",
                  f"- ELO over 8 responses, {thr['votes']} votes, {thr['clients']} clients: "
                  f"**{thr['comparisons_per_s']} comparisons/s** (target >= 1,000)", ""]
    if d := _load(results, "load_curve"):
        lines += [f"## Load curve ({d['latency_s'] * 1e3:.0f} ms engine; admits {d['serve_limit']} + queues "
                  f"{d['queue_limit']})", "", f"`{d['command']}`", ""]
        lines += _table(d["rows"], [("clients", "clients"), ("ok", "answered"), ("rejected_429", "429"),
                                    ("errors", "errors"), ("requests_per_s", "req/s"), ("p50_ms", "p50 ms"),
                                    ("p99_ms", "p99 ms")])
        lines += ["", f"No errors below the admission limit: {d['no_errors_below_limit']}; "
                      f"429s clean (shape + Retry-After): {d['clean_429s']}; no other errors at all: "
                      f"{d['no_errors_at_all']}."]
        try:
            from benchmarks.load_curve import plot

            plot(d, results / "load_curve.png")
            lines += ["", "![load curve](load_curve.png)"]
        except ImportError:
            pass
        lines += [""]
    if d := _load(results, "replicas"):
        lines += ["## Scale-out: one replica vs two, affinity vs round robin", "", f"`{d['command']}`", ""]
        lines += _table(d["rows"], [("arm", "arm"), ("comparisons_per_s", "comparisons/s"), ("p50_s", "p50 s"),
                                    ("p99_s", "p99 s"), ("prefix_cache_hit_rate", "prefix-cache hit rate"),
                                    ("calls_per_replica", "calls per replica")])
        lines += ["", f"Summary: {d['summary']}", ""]
    if d := _load(results, "ray_scaleout"):
        lines += ["## Scale-out on Ray Serve", "", f"`{d['command']}`", ""]
        lines += _table(d["rows"], [("arm", "arm"), ("ready_s", "ready s"), ("comparisons_per_s", "comparisons/s"),
                                    ("hit_rate_by_wave", "prefix-cache hit rate by wave"),
                                    ("p50_s_by_wave", "p50 s by wave")])
        lines += ["", f"Summary: {d['summary']}", ""]
    if d := _load(results, "thinking_exits"):
        lines += ["## Compute inside a judgment: early exit, fixed budget, deadlines", "", f"`{d['command']}`", ""]
        lines += _table(d["arms"], [("arm", "arm"), ("tokens_per_judgment", "tokens/judgment"),
                                    ("tokens_vs_no_budget", "tokens vs none"),
                                    ("seconds_per_judgment", "s/judgment"), ("time_vs_no_budget", "time vs none"),
                                    ("agreement_with_no_budget", "agreement with none"),
                                    ("exit_probes", "exit probes"), ("exits", "exits")])
        lines += [""] + _table(d["deadlines"], [("deadline_s", "deadline s"), ("p50_s", "p50 s"), ("p99_s", "p99 s"),
                                                ("deadline_hit_rate", "deadline hit rate"),
                                                ("answered_within_deadline", "within deadline"),
                                                ("votes_with_verdict", "votes with a verdict")]) + [""]
    if d := _load(results, "cold_start"):
        lines += ["## Cold start and memory (embedded default)", "", f"`{d['command']}`", "",
                  f"- command to /health {d['seconds_to_health']} s, to /ready **{d['seconds_to_ready']} s**",
                  f"- resident memory: gateway process {d['gateway_rss_mib']} MiB, with engine processes "
                  f"{d['total_rss_mib']} MiB; a gateway without an engine "
                  f"{d['gateway_without_engine_rss_mib']} MiB", ""]
    path = results / "report.md"
    path.write_text("\n".join(lines))
    return path
