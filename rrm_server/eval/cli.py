"""``rrm-server eval``: judge a dataset through the service and write a summary (see docs/eval.md).

    rrm-server eval pandalm --limit 100 --out runs/pandalm
    rrm-server eval llmbar --subsets Natural Adversarial --both-orders --url http://judge:8000
    rrm-server eval jsonl --data prefs.jsonl --votes 3
    rrm-server eval bon --methods elo knockout
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field

from rrm_server.eval.data import (
    DEFAULT_PATHS,
    LLMBAR_DEFAULT_SUBSETS,
    BonItem,
    DataError,
    PairItem,
    default_data_root,
    load_gsm8k_bon,
    load_jsonl,
    load_llmbar,
    load_pandalm,
    select_subsets,
)
from rrm_server.eval.records import BonRecord, PairRecord
from rrm_server.eval.report import RunInfo, build_bon_summary, build_pair_summary, headline, write_report
from rrm_server.eval.runner import (
    JudgeOptions,
    ResultStore,
    RunError,
    RunningAccuracy,
    RunOutcome,
    judge_bon,
    judge_pair,
    run_items,
)

Kind = Literal["pandalm", "llmbar", "jsonl", "bon"]
PROG = "rrm-server eval"


class EvalOptions(BaseModel):
    kind: Kind
    data: Path
    out: Path
    url: str | None = None
    api_key: str | None = None
    model: str | None = None
    judge: JudgeOptions = Field(default_factory=JudgeOptions)
    both_orders: bool = False
    concurrency: int = Field(8, ge=1)
    limit: int | None = Field(None, ge=1)
    subsets: list[str] | None = None
    methods: list[Literal["elo", "knockout"]] = Field(default_factory=lambda: ["elo", "knockout"])
    empty_placeholder: str | None = None
    max_errors: int = Field(10, ge=1)
    progress: bool = True

    @property
    def pairs(self) -> bool:
        return self.kind != "bon"

    def identity(self, model: str) -> dict[str, Any]:
        """run.json: everything that decides an item's result. Not here: the selection (subsets,
        limit; the summary covers the selection), concurrency, the URL and the cache switch."""
        judge = self.judge.model_dump(exclude={"cache"})
        if self.pairs:
            judge["both_orders"] = self.both_orders
            if self.both_orders:
                judge["order"] = "fixed"
        ident: dict[str, Any] = {"kind": self.kind, "data": str(self.data.resolve()), "model": model,
                                 "judge": judge}
        if self.pairs:
            ident["empty_placeholder"] = self.empty_placeholder
        else:
            ident["methods"] = list(self.methods)
        return ident


def positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Evaluate the judge on pairwise-preference data "
                                "(PandaLM, LLMBar, JSONL) or best-of-N selection (GSM8K). Resumable: rerun "
                                "the same command to continue.")
    p.add_argument("kind", choices=["pandalm", "llmbar", "jsonl", "bon"],
                   help="pandalm: PandaLM testset-v1.json; llmbar: LLMBar Dataset/**/dataset.json; jsonl: "
                   "query/response_a/response_b/label lines; bon: GSM8K best-of-4 via /v1/judge/rank")
    p.add_argument("--data", type=Path, help="dataset file or folder (default: under $RRM_EVAL_DATA or "
                   "../shared/data; required for jsonl)")
    p.add_argument("--out", type=Path, help="output directory: results.jsonl, run.json, "
                   "summary.{json,md,png} (default: eval-runs/KIND)")
    g = p.add_argument_group("judge")
    g.add_argument("--url", help="a running rrm-server (default: judge in-process with LocalJudge)")
    g.add_argument("--api-key", help="bearer key for --url")
    g.add_argument("--model", help="in-process only: the judge model (default: the bundled model; other "
                   "engine settings come from RRM_* variables)")
    r = p.add_argument_group("request fields (the pairwise/rank API's)")
    r.add_argument("--votes", type=positive, default=1, help="votes per comparison (default 1)")
    r.add_argument("--temperature", type=float, help="default: the server's (0.6)")
    r.add_argument("--max-tokens", type=positive, help="default: the server's")
    r.add_argument("--max-thinking-tokens", type=positive, help="thinking budget; then a forced verdict")
    r.add_argument("--seed", type=non_negative, default=0, help="request seed (default 0)")
    r.add_argument("--order", choices=["random", "fixed", "both"], help="presentation order (default random; "
                   "--both-orders sends fixed)")
    r.add_argument("--rescue-invalid", action="store_true",
                   help="force verdicts for truncated/verdict-less votes")
    r.add_argument("--verdict-probs", action="store_true",
                   help="read p(verdict) per vote (one extra engine call each)")
    r.add_argument("--no-cache", action="store_true", help="compute every vote afresh")
    r.add_argument("--verdict-parser", choices=["lenient", "official"],
                   help="default: the service's (lenient); official: the RRM evaluation code's exact parser")
    e = p.add_argument_group("evaluation")
    e.add_argument("--both-orders", action="store_true", help="judge each pair as given and swapped; report "
                   "position consistency and the accuracy of both orders pooled")
    e.add_argument("--subsets", nargs="+", metavar="SUBSET", help="llmbar/jsonl: subsets to run, by name or "
                   f"parent folder, or 'all' (llmbar default: {' '.join(LLMBAR_DEFAULT_SUBSETS)})")
    e.add_argument("--methods", nargs="+", choices=["elo", "knockout"], default=["elo", "knockout"],
                   help="bon only (default: both)")
    e.add_argument("--limit", type=positive, help="only the first N selected items")
    e.add_argument("--concurrency", type=positive, default=8, help="items in flight (default 8)")
    e.add_argument("--empty-placeholder", metavar="TEXT", help="judge empty texts as TEXT instead of "
                   "counting them as failed (the API refuses empty texts)")
    e.add_argument("--max-errors", type=positive, default=10, help="stop after this many failed requests "
                   "that are not the item's fault (connection, 503; default 10); a rerun retries those items")
    e.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv: Sequence[str]) -> EvalOptions:
    p = build_parser()
    a = p.parse_args(list(argv))
    if a.both_orders and a.order not in (None, "fixed"):
        p.error("--both-orders sends each order with order=fixed; drop --order")
    if a.kind == "bon" and a.both_orders:
        p.error("--both-orders is for pairwise data, not bon")
    if a.kind == "jsonl" and a.data is None:
        p.error("jsonl needs --data FILE")
    if a.url and a.model:
        p.error("--model selects the in-process judge; with --url the service decides the model")
    data = a.data or default_data_root() / DEFAULT_PATHS[a.kind]
    if not data.exists():
        p.error(f"data not found at {data}: pass --data or set RRM_EVAL_DATA to the data folder")
    try:
        judge = JudgeOptions(votes=a.votes, temperature=a.temperature, max_tokens=a.max_tokens,
                             max_thinking_tokens=a.max_thinking_tokens, seed=a.seed,
                             order="fixed" if a.both_orders else (a.order or "random"),
                             rescue_invalid=a.rescue_invalid, verdict_probs=a.verdict_probs,
                             verdict_parser=a.verdict_parser, cache=not a.no_cache)
        return EvalOptions(kind=a.kind, data=data, out=a.out or Path("eval-runs") / a.kind, url=a.url,
                           api_key=a.api_key, model=a.model, judge=judge, both_orders=a.both_orders,
                           concurrency=a.concurrency, limit=a.limit, subsets=a.subsets, methods=a.methods,
                           empty_placeholder=a.empty_placeholder, max_errors=a.max_errors,
                           progress=not a.no_progress)
    except pydantic.ValidationError as err:  # argparse already checked the numbers; a safety net
        p.error(str(err))
    raise AssertionError("unreachable")


def load_items(opts: EvalOptions) -> list[PairItem] | list[BonItem]:
    items: list[Any]
    if opts.kind == "pandalm":
        items = select_subsets(load_pandalm(opts.data), opts.subsets)
    elif opts.kind == "llmbar":
        items = select_subsets(load_llmbar(opts.data), opts.subsets or list(LLMBAR_DEFAULT_SUBSETS))
    elif opts.kind == "jsonl":
        items = select_subsets(load_jsonl(opts.data), opts.subsets)
    else:
        items = load_gsm8k_bon(opts.data)
    return items[: opts.limit] if opts.limit else items


# -- the judge -----------------------------------------------------------------------------------
class Backend:
    """A judge plus what the run records about it. Tests pass their own (a LocalJudge on a
    scripted engine); the command builds one from the options."""

    def __init__(self, judge: Any, model: str, target: str, start: Callable[[], Any] | None = None,
                 close: Callable[[], Any] | None = None) -> None:
        self.judge, self.model, self.target = judge, model, target
        self._start, self._close = start, close

    async def start(self) -> None:
        if self._start is not None:
            await self._start()

    async def close(self) -> None:
        if self._close is not None:
            await self._close()

    @classmethod
    async def create(cls, opts: EvalOptions) -> Backend:
        fanout = (2 if opts.both_orders else 1) if opts.pairs else len(opts.methods)
        if opts.url:
            import httpx

            from rrm_server.client import AsyncRRMClient

            headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
            async with httpx.AsyncClient(timeout=30) as http:
                r = await http.get(f"{opts.url.rstrip('/')}/v1/models", headers=headers)
                r.raise_for_status()
                model = r.json()["data"][0]["id"]
            client = AsyncRRMClient(opts.url, api_key=opts.api_key, max_concurrency=opts.concurrency * fanout)
            return cls(client, model, opts.url, close=client.aclose)
        from rrm_server.local import LocalJudge
        from rrm_server.settings import Settings

        settings = Settings()  # RRM_* variables configure the in-process engine like `serve`
        if opts.model:
            settings = settings.model_copy(update={"model": opts.model})
        judge = LocalJudge(settings)
        return cls(judge, settings.model_name, "local", start=judge.start, close=judge.close)


# -- the command ---------------------------------------------------------------------------------
def _store(opts: EvalOptions) -> ResultStore:
    return ResultStore(opts.out, PairRecord if opts.pairs else BonRecord)


def write_summary(opts: EvalOptions, items: Sequence[Any], store: ResultStore,
                  target: str) -> tuple[str, int]:
    """Summarise whatever the directory holds for this selection: (terminal report, items pending)."""
    import json

    records = store.load()
    ids = [it.id for it in items]
    done = sum(i in records for i in ids)
    secs, judgments = store.session_totals()
    run = RunInfo(kind=opts.kind, settings=json.loads(store.manifest.read_text()), target=target,
                  n_selected=len(ids), n_done=done, n_pending=len(ids) - done,
                  n_other=len(set(records) - set(ids)), complete=done == len(ids), elapsed_s=secs,
                  wall_s_per_judgment=secs / judgments if judgments else None)
    if opts.pairs:
        summary: Any = build_pair_summary(run, items, records)
    else:
        summary = build_bon_summary(run, ids, records, opts.methods)
    paths = write_report(opts.out, summary)
    lines = [f"{done}/{len(ids)} items judged; " + headline(summary)]
    lines += [f"  {name}: {path}" for name, path in paths.items()]
    if summary.plot_note:
        lines.append(f"  plot {summary.plot_note}")
    return "\n".join(lines), run.n_pending


async def run_command(opts: EvalOptions, backend: Backend | None = None) -> int:
    """The whole command; 0 when every selected item has a result, 1 when some are still pending,
    2 when the data or the output directory is unusable."""
    try:
        items = load_items(opts)
    except (DataError, OSError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    owned = backend is None
    if backend is None:
        try:
            backend = await Backend.create(opts)
        except Exception as e:
            print(f"{PROG}: cannot reach the judge at {opts.url}: {e}", file=sys.stderr)
            return 2
    store = _store(opts)
    try:
        resumed = store.prepare(opts.identity(backend.model))
        done = store.load()
    except RunError as e:
        if owned:
            await backend.close()
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    todo = [it for it in items if it.id not in done]
    print(f"{len(items)} items selected, {len(items) - len(todo)} already judged"
          f"{' (resuming)' if resumed else ''}, {len(todo)} to judge; results in {opts.out}", file=sys.stderr)
    outcome = RunOutcome()
    try:
        if todo:
            if owned and not await _start(backend):
                return 2
            outcome = await _judge_items(opts, backend, store, items, todo)
    finally:
        if owned:
            await backend.close()
    report, pending = write_summary(opts, items, store, backend.target)
    print(report)
    if outcome.fatal:
        print(f"{PROG}: stopped: {outcome.fatal}", file=sys.stderr)
    elif outcome.errors:
        print(f"{PROG}: {len(outcome.errors)} requests failed for reasons outside the items"
              f"{' (stopped after --max-errors)' if outcome.aborted else ''}; their items are not counted "
              f"and a rerun retries them. First: {outcome.errors[0]}", file=sys.stderr)
    return 0 if pending == 0 else 1


async def _start(backend: Backend) -> bool:
    if backend.target == "local":
        print(f"starting the in-process judge ({backend.model}); this loads the engine", file=sys.stderr)
    try:
        await backend.start()
    except Exception as e:
        print(f"{PROG}: the judge failed to start: {type(e).__name__}: {e}", file=sys.stderr)
        return False
    return True


async def _judge_items(opts: EvalOptions, backend: Backend, store: Any, items: list, todo: list) -> RunOutcome:
    tracker = RunningAccuracy()
    judge = backend.judge

    def work(it: Any) -> Any:
        if opts.pairs:
            return judge_pair(judge, it, opts.judge, both_orders=opts.both_orders,
                              empty_placeholder=opts.empty_placeholder)
        return judge_bon(judge, it, opts.judge, opts.methods)

    def count(rec: Any) -> int:  # judgments (requests) per record, for the time per judgment
        return len(rec.judgments) if opts.pairs else len(rec.methods)

    return await run_items(todo, work, store, concurrency=opts.concurrency, max_errors=opts.max_errors,
                           progress=opts.progress, total=len(items), initial=len(items) - len(todo),
                           judgments_of=count, postfix=tracker.pair if opts.pairs else tracker.bon)


def main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_command(opts))
    except KeyboardInterrupt:
        # Finished items are on disk already; summarise them so the interrupted run is still readable.
        store = _store(opts)
        if store.manifest.exists():
            try:
                print(write_summary(opts, load_items(opts), store, opts.url or "local")[0])
            except Exception as e:  # the summary is a courtesy here; never mask the interrupt
                print(f"{PROG}: no summary: {e}", file=sys.stderr)
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
