"""Summaries: built from records (pure), written as summary.json, summary.md and summary.png."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rrm_server.eval.data import PairItem
from rrm_server.eval.metrics import (
    BonMetrics,
    Mean,
    PairMetrics,
    Rate,
    bon_metrics,
    pair_metrics,
    subset_groups,
)
from rrm_server.eval.records import BonRecord, PairRecord

PAIR_COUNTING = [
    ("accuracy = correct items / all items. An item is correct iff its pick (the majority of its valid "
     "votes) equals its label."),
    ("Invalid items (not one valid vote: every vote truncated, without a verdict, malformed or an engine "
     "error, or the request refused, e.g. context_length_exceeded or empty_text) count as incorrect in "
     "accuracy; their share is invalid_items, and accuracy_valid leaves them out."),
    ("A tie pick (valid votes split evenly) is correct only for an item labelled tie; accuracy_without_ties "
     "leaves out the items labelled tie (PandaLM's second number)."),
    ("Both orders: each item is judged as given and with the responses swapped; the pick pools both orders' "
     "valid votes (a judge that follows position ends in a tie); position_consistency = items decisive in "
     "both orders that pick the same response / items decisive in both orders."),
    "Intervals are 95% Wilson score intervals.",
]

BON_COUNTING = [
    ("selection accuracy = questions whose chosen (`best`) candidate is correct / questions. A question "
     "without a pick (ELO with no decisive match, or a refused request) counts as wrong and is reported as "
     "no_pick."),
    ("random = expected accuracy of a uniformly random candidate (the mean fraction of correct candidates), "
     "with a normal-approximation 95% interval over questions; oracle = questions with a correct candidate "
     "(1.0 on questions that mix right and wrong)."),
    ("Knockout settles a match without a valid majority by a seeded coin (decided_by = tiebreak): with an "
     "invalid-heavy judge its picks approach the random baseline."),
    ("Costs: with the comparison cache on (the default), the methods share the votes of comparisons they "
     "both play (the same seed gives the same vote), so a method's tokens count only the votes it computed "
     "itself; --no-cache costs each method separately."),
    "Accuracy intervals are 95% Wilson score intervals.",
]


class RunInfo(BaseModel):
    kind: str
    settings: dict[str, Any] = Field(description="run.json: what decides the results.")
    target: str = Field(description="'local' (in-process) or the service URL of the last session.")
    n_selected: int = Field(description="Items this command selected (subsets, limit).")
    n_done: int = Field(description="Selected items with a result (all sessions).")
    n_pending: int = Field(description="Selected items still to judge: rerun the command to finish them.")
    n_other: int = Field(0, description="Results in the directory for items outside this selection "
                         "(not counted).")
    complete: bool
    elapsed_s: float = Field(description="Wall time of all finished sessions of this run.")
    wall_s_per_judgment: float | None = Field(description="elapsed_s / judgments those sessions made.")
    generated_at: float = Field(default_factory=time.time)


class PairSummary(BaseModel):
    run: RunInfo
    counting: list[str] = Field(default_factory=lambda: list(PAIR_COUNTING))
    overall: PairMetrics
    subsets: dict[str, PairMetrics] = Field(default_factory=dict)
    groups: dict[str, PairMetrics] = Field(default_factory=dict, description="Parent folders of subsets.")
    plot: str | None = None
    plot_note: str | None = None


class BonSummary(BaseModel):
    run: RunInfo
    counting: list[str] = Field(default_factory=lambda: list(BON_COUNTING))
    metrics: BonMetrics
    plot: str | None = None
    plot_note: str | None = None


def build_pair_summary(run: RunInfo, items: Sequence[PairItem],
                       records: dict[str, PairRecord]) -> PairSummary:
    recs = [records[it.id] for it in items if it.id in records]  # the selection's order
    ties = run.kind == "pandalm"  # PandaLM reports accuracy with and without its tie items
    by_subset: dict[str, list[PairRecord]] = {}
    for r in recs:
        by_subset.setdefault(r.subset, []).append(r)
    subsets = {s: pair_metrics(rs, ties) for s, rs in sorted(by_subset.items())} if len(by_subset) > 1 else {}
    groups = {g: pair_metrics([r for s in members for r in by_subset[s]], ties)
              for g, members in subset_groups(by_subset).items()}
    return PairSummary(run=run, overall=pair_metrics(recs, ties), subsets=subsets, groups=groups)


def build_bon_summary(run: RunInfo, ids: Sequence[str], records: dict[str, BonRecord],
                      methods: Sequence[str]) -> BonSummary:
    return BonSummary(run=run, metrics=bon_metrics([records[i] for i in ids if i in records], methods))


# -- markdown ------------------------------------------------------------------------------------
def fmt_rate(r: Rate | None, digits: int = 3) -> str:
    if r is None or r.value is None:
        return "–"
    return f"{r.value:.{digits}f} [{r.low:.{digits}f}, {r.high:.{digits}f}] ({r.k}/{r.n})"


def fmt_mean(m: Mean | None, digits: int = 3) -> str:
    if m is None or m.value is None:
        return "–"
    if m.low is None:
        return f"{m.value:.{digits}f} (n={m.n})"
    return f"{m.value:.{digits}f} [{m.low:.{digits}f}, {m.high:.{digits}f}] (n={m.n})"


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _run_lines(run: RunInfo) -> list[str]:
    s = run.settings
    state = "complete" if run.complete else f"**incomplete: {run.n_pending} items pending; rerun to finish**"
    other = f"; {run.n_other} other results in the directory not counted" if run.n_other else ""
    settings = [f"{k}={'default' if v is None else v}" for k, v in s.get("judge", {}).items()]
    settings += [f"{k}={s[k]}" for k in ("methods", "empty_placeholder") if s.get(k) is not None]
    return [
        f"- data: `{s.get('data')}` ({run.kind}), model `{s.get('model')}` via {run.target}",
        f"- items: {run.n_done} of {run.n_selected} selected judged ({state}){other}",
        "- settings: " + ", ".join(settings),
        (f"- wall time: {run.elapsed_s:.1f} s over finished sessions, "
         f"{_num(run.wall_s_per_judgment, 3)} s per judgment"),
    ]


def pair_markdown(summary: PairSummary) -> str:
    o = summary.overall
    header = ["subset", "n", "accuracy", "official (invalid = 0.5)", "debiased", "without ties",
              "valid picks only", "invalid items", "position consistency"]
    out = [f"# Judge evaluation: {summary.run.kind}", "", *_run_lines(summary.run), "", "## Accuracy", "",
           "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    rows = [("all", o), *((f"{g} (group)", m) for g, m in summary.groups.items()), *summary.subsets.items()]
    for name, m in rows:
        rates = (m.accuracy_without_ties, m.accuracy_valid, m.invalid_items, m.position_consistency)
        out.append("| " + " | ".join([name, str(m.n), fmt_rate(m.accuracy), fmt_mean(m.accuracy_official),
                                      fmt_rate(m.accuracy_debiased), *(fmt_rate(r) for r in rates)]) + " |")
    if o.accuracy_by_order:
        alone = "; ".join(f"{k} {fmt_rate(v)}" for k, v in o.accuracy_by_order.items())
        out += ["", (f"Each presentation order alone: {alone}. Items not decisive in both orders "
                     f"(left out of consistency): {o.not_comparable}.")]
    out += [
        "", (f"Picks: {_counts(o.picks)}; labels: {_counts(o.labels)}. "
             f"Votes for the response shown first: {fmt_rate(o.first_slot_rate)}."),
        "", "## Failed judgments", "",
        (f"- invalid judgments (requests without a valid vote): {fmt_rate(o.invalid_judgments)}; "
         f"by reason: {_counts(o.invalid_judgment_reasons) or 'none'}"),
        (f"- invalid votes: {fmt_rate(o.invalid_votes)}; "
         f"by reason: {_counts(o.invalid_vote_reasons) or 'none'}"),
        "", "## Cost", "", *_cost_lines(o.tokens, o.latency_s), "",
    ]
    out += _counting_and_plot(summary.counting, summary.plot, summary.plot_note)
    return "\n".join(out)


def bon_markdown(summary: BonSummary) -> str:
    m = summary.metrics
    r = m.random
    out = [f"# Best-of-N evaluation: {summary.run.kind}", "", *_run_lines(summary.run), "",
           "## Selection accuracy", "",
           "| selector | n | accuracy | no pick | lift over random |", "|---|---|---|---|---|",
           f"| random (expected) | {r.n} | {_num(r.value, 3)} [{_num(r.low, 3)}, {_num(r.high, 3)}] | – | – |"
           ]
    for name, mm in m.methods.items():
        out.append(f"| {name} | {mm.n} | {fmt_rate(mm.selection_accuracy)} | {fmt_rate(mm.no_pick)} | "
                   f"{_num(mm.lift_over_random, 3)} |")
    out += [f"| oracle | {m.oracle.n} | {fmt_rate(m.oracle)} | – | – |", ""]
    for name, mm in m.methods.items():
        out += [f"### {name}", "",
                f"- matches decided by: {_counts(mm.matches_decided_by) or 'none'}",
                (f"- invalid votes: {fmt_rate(mm.invalid_votes)}; "
                 f"by reason: {_counts(mm.invalid_vote_reasons) or 'none'}"),
                f"- refused requests: {_counts(mm.request_errors) or 'none'}",
                *_cost_lines(mm.tokens, mm.latency_s, per="rank request"), ""]
    out += _counting_and_plot(summary.counting, summary.plot, summary.plot_note)
    return "\n".join(out)


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _cost_lines(t: Any, lat: Any, per: str = "judgment") -> list[str]:
    return [(f"- tokens: {t.prompt_tokens} prompt, {t.generated_tokens} generated over {t.judgments} "
             f"{per}s ({_num(t.prompt_per_judgment)} / {_num(t.generated_per_judgment)} per {per}); "
             f"{t.engine_calls} engine calls"),
            (f"- wall time per {per}: mean {_num(lat.mean, 3)} s, p50 {_num(lat.p50, 3)} s, "
             f"p95 {_num(lat.p95, 3)} s (queueing included)")]


def _counting_and_plot(counting: list[str], plot: str | None, note: str | None) -> list[str]:
    out = ["## How items are counted", "", *(f"- {c}" for c in counting), ""]
    if plot:
        out += [f"![summary]({plot})", ""]
    elif note:
        out += [f"_Plot: {note}_", ""]
    return out


# -- plot ----------------------------------------------------------------------------------------
def _bars(ax: Any, labels: list[str], rates: list[tuple[float, float, float]], title: str) -> None:
    ys = list(range(len(labels)))
    vals = [v for v, _, _ in rates]
    err = [[v - lo for v, lo, _ in rates], [hi - v for v, _, hi in rates]]
    ax.barh(ys, vals, xerr=err, color="#4c72b0", capsize=3)
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title(title)


def plot(summary: PairSummary | BonSummary, path: Path) -> str | None:
    """Write the PNG; returns a note instead when matplotlib (the `bench` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed (pip install 'rrm-server[bench]')"

    def ci(r: Rate | Mean) -> tuple[float, float, float]:
        v = r.value or 0.0
        return (v, v if r.low is None else r.low, v if r.high is None else r.high)

    run = summary.run
    if isinstance(summary, PairSummary):
        o = summary.overall
        rows: list[tuple[str, Rate | Mean]] = [("all", o.accuracy)]
        if o.accuracy_without_ties is not None:
            rows.append(("all, without ties", o.accuracy_without_ties))
        rows += [(f"{k} only", v) for k, v in o.accuracy_by_order.items()]
        rows += [(g, m.accuracy) for g, m in summary.groups.items()]
        rows += [(s, m.accuracy) for s, m in summary.subsets.items()]
        rows = [(n, r) for n, r in rows if r.value is not None]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.45 * len(rows) + 1.5)))
        if rows:
            _bars(ax1, [n for n, _ in rows], [ci(r) for _, r in rows], "accuracy (95% CI; invalid = wrong)")
        ax1.axvline(0.5, color="grey", ls="--", lw=1)
        reasons = o.invalid_judgment_reasons
        labels = list(reasons) or ["none"]
        n_j = o.invalid_judgments.n or 1
        ax2.barh(range(len(labels)), [reasons.get(k, 0) / n_j for k in labels], color="#c44e52")
        ax2.set_yticks(range(len(labels)), labels)
        ax2.invert_yaxis()
        ax2.set_xlim(0, 1)
        ax2.set_title("invalid judgments by reason, share of all judgments\n"
                      f"(total {fmt_rate(o.invalid_judgments, 2)})", fontsize=9)
    else:
        m = summary.metrics
        rows = [("random", m.random), *((k, v.selection_accuracy) for k, v in m.methods.items()),
                ("oracle", m.oracle)]
        rows = [(n, r) for n, r in rows if r.value is not None]
        fig, ax1 = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
        if rows:
            _bars(ax1, [n for n, _ in rows], [ci(r) for _, r in rows],
                  "best-of-N selection accuracy (95% CI)")
    fig.suptitle(f"{run.kind}: {run.settings.get('model')} ({run.n_done} items)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_report(out_dir: Path, summary: PairSummary | BonSummary) -> dict[str, Path]:
    out_dir = Path(out_dir)
    png = out_dir / "summary.png"
    note = plot(summary, png)
    summary.plot, summary.plot_note = (None, note) if note else (png.name, None)
    if note and png.exists():
        png.unlink()  # a stale plot from an earlier session would no longer match the numbers
    (out_dir / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n")
    md = pair_markdown(summary) if isinstance(summary, PairSummary) else bon_markdown(summary)
    (out_dir / "summary.md").write_text(md)
    paths = {"json": out_dir / "summary.json", "markdown": out_dir / "summary.md"}
    if not note:
        paths["plot"] = png
    return paths


def headline(summary: PairSummary | BonSummary) -> str:
    """One or two lines for the terminal."""
    if isinstance(summary, PairSummary):
        o = summary.overall
        s = f"accuracy {fmt_rate(o.accuracy)}; invalid items {fmt_rate(o.invalid_items)}"
        if o.accuracy_without_ties is not None:
            s += f"; without ties {fmt_rate(o.accuracy_without_ties)}"
        if o.position_consistency is not None:
            s += f"; position consistency {fmt_rate(o.position_consistency)}"
        return s
    m = summary.metrics
    parts = [f"random {_num(m.random.value, 3)}"] + [f"{k} {fmt_rate(v.selection_accuracy)}"
                                                     for k, v in m.methods.items()]
    return "selection accuracy: " + "; ".join(parts)
