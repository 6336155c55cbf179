"""Judging items through the service, resumably.

Each finished item is appended to ``results.jsonl`` at once, so an interrupted run loses only the
items in flight; a rerun with the same output directory skips the ids already there. ``run.json``
holds the settings that decide the results; a rerun with different ones is refused rather than
mixing two experiments in one file.

Failures come in three kinds (``classify``). A request the service refuses for the item's own
content (a prompt longer than the context, an empty text) would be refused again: it is recorded
as an invalid judgment with the error type as its reason. A refusal of the run's settings (votes
above the server's maximum, a bad key) would hit every item: the run stops at once and records
nothing. Anything else (connection lost, 503, the engine died) says nothing about the item: it is
not recorded, a rerun retries it, and after ``max_errors`` of them the run stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import pydantic
from pydantic import BaseModel, Field

from rrm_server.concurrency import first_error
from rrm_server.eval.data import BonItem, PairItem
from rrm_server.eval.metrics import pool_pick
from rrm_server.eval.records import (
    BonRecord,
    Judgment,
    PairRecord,
    RankJudgment,
    failed_judgment,
    judgment_from_pairwise,
    rank_judgment,
)
from rrm_server.protocol.judge import PairwiseResponse, RankResponse

logger = logging.getLogger("rrm_server.eval")

RESULTS = "results.jsonl"
MANIFEST = "run.json"
SESSIONS = "sessions.jsonl"


class JudgeOptions(BaseModel):
    """The pairwise/rank request fields every request of a run shares (the API's names)."""

    votes: int = Field(1, ge=1)
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_thinking_tokens: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    order: Literal["random", "fixed", "both"] = "random"
    rescue_invalid: bool = False
    verdict_probs: bool = False  # one extra engine call per vote; off unless asked for
    verdict_parser: Literal["lenient", "official"] | None = None  # None: the service's default
    cache: bool = True

    def request_fields(self, **override: Any) -> dict[str, Any]:
        # max_thinking_tokens is always sent: null asks for no budget, so an evaluation measures the
        # judge as it is (the official code forces no verdicts) whatever the server's default.
        return {k: v for k, v in {**self.model_dump(), **override}.items()
                if v is not None or k == "max_thinking_tokens"}


class Judge(Protocol):
    """What LocalJudge and AsyncRRMClient both offer."""

    async def pairwise(self, query: str, responses: Sequence[str], **fields: Any) -> PairwiseResponse: ...

    async def rank(self, query: str, responses: Sequence[str], method: str = "elo",
                   **fields: Any) -> RankResponse: ...


# -- failures ------------------------------------------------------------------------------------
class RunError(Exception):
    """The run cannot go on as asked (its directory holds something else); a message for the user."""


class SettingsMismatch(RunError):
    pass


# Request fields that belong to the item: a refusal about them is the item's, about anything else
# (votes, max_tokens, the model) it is the run's configuration and would hit every item.
ITEM_PARAMS = ("query", "responses")


def classify(exc: BaseException) -> tuple[Literal["refused", "fatal", "transient"], str, str]:
    """(kind, reason, message). refused: the service refused this item for what it contains, and
    would again; fatal: the run's settings or access are wrong, stop now; transient: anything
    else (connection, 503, a dead engine): says nothing about the item."""
    from rrm_server.client import RRMError as HTTPError
    from rrm_server.errors import ContextLengthExceeded, InvalidRequest

    e = first_error(exc)

    def about_item(param: object) -> bool:
        return isinstance(param, str) and param.split(".")[0] in ITEM_PARAMS

    if isinstance(e, HTTPError):
        item = about_item(e.param) or e.type == "context_length_exceeded"
        if e.status == 413 or (e.status in (400, 422) and item):
            return "refused", e.type, e.message
        if e.status in (400, 401, 403, 404, 405, 422):
            return "fatal", e.type, str(e)
        return "transient", e.type, str(e)
    if isinstance(e, InvalidRequest):
        item = isinstance(e, ContextLengthExceeded) or about_item(e.param)
        return ("refused" if item else "fatal"), e.error_type, e.message
    if isinstance(e, pydantic.ValidationError):  # the in-process API validates like the HTTP one
        first = e.errors()[0]
        loc = first.get("loc") or ("",)
        return ("refused" if about_item(str(loc[0])) else "fatal"), "invalid_request", \
            f"{'.'.join(map(str, loc))}: {first.get('msg')}"
    return "transient", type(e).__name__, str(e)


def _blank(texts: Sequence[str]) -> bool:
    return any(not t.strip() for t in texts)


# -- judging one item ----------------------------------------------------------------------------
async def judge_pair(judge: Judge, item: PairItem, opts: JudgeOptions, *, both_orders: bool = False,
                     empty_placeholder: str | None = None) -> PairRecord:
    """Both orders are sent with order=fixed, the second with the responses swapped, so each
    request shows exactly one presentation."""
    query, a, b = item.query, item.response_a, item.response_b
    if empty_placeholder is not None:
        query, a, b = (t if t.strip() else empty_placeholder for t in (query, a, b))
    presentations = [False, True] if both_orders else [False]
    order = "fixed" if both_orders else opts.order

    async def one(swapped: bool) -> Judgment:
        responses = [b, a] if swapped else [a, b]
        if _blank([query, *responses]):
            # The API refuses empty texts; no request needed to know that.
            return failed_judgment("empty_text", "the query or a response is empty", swapped=swapped,
                                   order=order)
        t0 = time.perf_counter()
        try:
            res = await judge.pairwise(query, responses, **opts.request_fields(order=order))
        except Exception as e:
            kind, reason, message = classify(e)
            if kind != "refused":
                raise
            return failed_judgment(reason, message, swapped=swapped, order=order,
                                   seconds=time.perf_counter() - t0)
        return judgment_from_pairwise(res, swapped=swapped, order=order, seconds=time.perf_counter() - t0)

    async with asyncio.TaskGroup() as tg:  # a transient failure of one order cancels the other
        tasks = [tg.create_task(one(s)) for s in presentations]
    judgments = [t.result() for t in tasks]
    pick = pool_pick(judgments)
    return PairRecord(id=item.id, subset=item.subset, label=item.label, judgments=judgments, pick=pick,
                      correct=pick == item.label)


async def judge_bon(judge: Judge, item: BonItem, opts: JudgeOptions, methods: Sequence[str]) -> BonRecord:
    async def one(method: str) -> RankJudgment:
        if _blank([item.query, *item.candidates]):
            return RankJudgment(method=method, reason="empty_text",
                                error="the question or a candidate is empty")
        t0 = time.perf_counter()
        try:
            res = await judge.rank(item.query, item.candidates, method=method, **opts.request_fields())
        except Exception as e:
            kind, reason, message = classify(e)
            if kind != "refused":
                raise
            return RankJudgment(method=method, reason=reason, error=message, seconds=time.perf_counter() - t0)
        return rank_judgment(res, seconds=time.perf_counter() - t0)

    async with asyncio.TaskGroup() as tg:
        tasks = {m: tg.create_task(one(m)) for m in methods}
    return BonRecord(id=item.id, correct=item.correct, methods={m: t.result() for m, t in tasks.items()})


# -- the output directory ------------------------------------------------------------------------
R = TypeVar("R", bound=BaseModel)


class ResultStore(Generic[R]):
    def __init__(self, out_dir: Path, record_type: type[R]) -> None:
        self.dir = Path(out_dir)
        self.record_type = record_type
        self.results = self.dir / RESULTS
        self.manifest = self.dir / MANIFEST
        self.sessions = self.dir / SESSIONS

    def prepare(self, settings: dict[str, Any]) -> bool:
        """Write run.json, or check it against ``settings``. True when resuming."""
        self.dir.mkdir(parents=True, exist_ok=True)
        settings = json.loads(json.dumps(settings))  # normalise (tuples, paths) as they will be stored
        if self.manifest.exists():
            old = json.loads(self.manifest.read_text())
            diff = settings_diff(old, settings)
            if diff:
                raise SettingsMismatch(
                    f"{self.dir} holds a run with different settings:\n  " + "\n  ".join(diff)
                    + f"\nUse another --out, or delete {self.dir} to start over.")
            return True
        if self.results.exists() and self.results.stat().st_size:
            raise SettingsMismatch(f"{self.results} exists but {self.manifest} does not; refusing to guess "
                                   "which settings produced it. Use another --out.")
        self.manifest.write_text(json.dumps(settings, indent=2) + "\n")
        return False

    def load(self) -> dict[str, R]:
        """Finished records by id. A torn last line (the process died mid-write) is cut off;
        damage anywhere else is an error, not something to paper over."""
        if not self.results.exists():
            return {}
        raw = self.results.read_bytes()
        lines = raw.split(b"\n")
        out: dict[str, R] = {}
        offset = 0  # where the current line starts
        for i, line in enumerate(lines):
            last = i == len(lines) - 1  # only a line without its newline can be last and non-empty
            if line.strip():
                try:
                    rec = self.record_type.model_validate_json(line)
                except pydantic.ValidationError as e:
                    if not last:
                        raise RunError(f"{self.results} line {i + 1} is not a valid record: "
                                       f"{str(e).splitlines()[0]}") from None
                    logger.warning("dropping an unfinished last line of %s", self.results)
                    with self.results.open("r+b") as f:
                        f.truncate(offset)
                    return out
                out[rec.id] = rec  # type: ignore[attr-defined]
                if last:  # complete, but its newline never made it: end the line before appending
                    with self.results.open("ab") as f:
                        f.write(b"\n")
            offset += len(line) + 1
        return out

    def append(self, rec: R, f: Any) -> None:
        f.write(rec.model_dump_json() + "\n")
        f.flush()

    def log_session(self, entry: dict[str, Any]) -> None:
        with self.sessions.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def session_totals(self) -> tuple[float, int]:
        """(seconds, judgments) over all finished sessions of this run."""
        if not self.sessions.exists():
            return 0.0, 0
        secs = n = 0
        for line in self.sessions.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                secs += e.get("elapsed_s", 0.0)
                n += e.get("judgments", 0)
        return secs, n


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``judge.votes: was 1, now 3`` for every setting that differs (nested keys flattened)."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(old), flat(new)
    return [f"{k}: was {a.get(k)!r}, now {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


# -- the run loop --------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    finished: int = 0  # items finished by this session
    judgments: int = 0
    errors: list[str] = field(default_factory=list)
    aborted: bool = False
    fatal: str | None = None  # the settings or access are wrong: no item can succeed
    elapsed_s: float = 0.0


T = TypeVar("T")


async def run_items(
    todo: Sequence[T],
    work: Callable[[T], Awaitable[R]],
    store: ResultStore[R],
    *,
    concurrency: int = 8,
    max_errors: int = 10,
    progress: bool = True,
    total: int | None = None,
    initial: int = 0,
    postfix: Callable[[R], dict[str, Any]] | None = None,
    judgments_of: Callable[[R], int] = lambda r: 1,
) -> RunOutcome:
    """Judge ``todo`` with ``concurrency`` workers, appending each finished record at once."""
    from tqdm.auto import tqdm

    out = RunOutcome()
    queue = list(reversed(todo))  # pop() from the end keeps the data's order
    t0 = time.perf_counter()
    bar = tqdm(total=total if total is not None else len(todo), initial=initial, unit="item",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    with store.results.open("a", encoding="utf-8") as f:

        async def worker() -> None:
            while queue and not out.aborted:
                item = queue.pop()
                try:
                    rec = await work(item)
                except Exception as exc:  # not recorded: the item is retried by the next run
                    kind, reason, message = classify(exc)
                    out.errors.append(f"{getattr(item, 'id', item)}: {reason}: {message}")
                    if kind == "fatal":
                        out.fatal = message
                    else:
                        logger.warning("item %s failed (a rerun retries it): %s: %s",
                                       getattr(item, "id", item), reason, message)
                    if kind == "fatal" or len(out.errors) >= max_errors:
                        out.aborted = True
                    continue
                store.append(rec, f)
                out.finished += 1
                out.judgments += judgments_of(rec)
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix(postfix(rec), refresh=False)

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        finally:
            bar.close()
            out.elapsed_s = time.perf_counter() - t0
            store.log_session({"started": time.time() - out.elapsed_s, "elapsed_s": out.elapsed_s,
                               "items": out.finished, "judgments": out.judgments, "errors": len(out.errors)})
    return out


class RunningAccuracy:
    """Progress-bar postfix: accuracy and invalid share so far in this session."""

    def __init__(self) -> None:
        self.n = self.correct = self.invalid = 0

    def pair(self, rec: PairRecord) -> dict[str, Any]:
        self.n += 1
        self.correct += rec.correct
        self.invalid += rec.pick == "invalid"
        return {"acc": f"{self.correct / self.n:.3f}", "invalid": f"{self.invalid / self.n:.2f}"}

    def bon(self, rec: BonRecord) -> dict[str, Any]:
        self.n += 1
        hits = {m: j.best is not None and rec.correct[j.best] for m, j in rec.methods.items()}
        self.correct += sum(hits.values())
        return {"sel_acc": f"{self.correct / max(1, self.n * len(hits)):.3f}"}
