"""Evaluation data: readers that turn each source's rows into items.

The ``parse_*`` functions are pure (rows in, items out) and raise ``DataError`` with the source and
row of the problem; the ``load_*`` functions only read files and hand the rows over.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Label = Literal["a", "b", "tie"]

# LLMBar's own benchmark (RewardBench "Chat Hard" llmbar-*): the default selection.
LLMBAR_DEFAULT_SUBSETS = ("Natural", "Adversarial")

_LABELS: dict[str, Label] = {
    "a": "a", "1": "a", "response_a": "a", "model_a": "a", "first": "a",
    "b": "b", "2": "b", "response_b": "b", "model_b": "b", "second": "b",
    "tie": "tie", "0": "tie", "draw": "tie", "equal": "tie", "tie (bothbad)": "tie",
}


class DataError(ValueError):
    pass


class PairItem(BaseModel):
    """One pairwise preference: which of two responses to ``query`` is better (or a tie)."""

    model_config = ConfigDict(frozen=True)
    id: str
    subset: str = "all"
    query: str
    response_a: str
    response_b: str
    label: Label


class BonItem(BaseModel):
    """One best-of-N question: candidates and whether each is correct."""

    model_config = ConfigDict(frozen=True)
    id: str
    query: str
    candidates: list[str]
    correct: list[bool]


# -- labels --------------------------------------------------------------------------------------
def majority_label(annotations: Sequence[int]) -> Label:
    """PandaLM's annotator majority: 1 = response1, 2 = response2, 0 = tie. The strict plurality
    wins; no plurality (e.g. 0/1/2 from three annotators) is a tie: the annotators did not agree
    on a better response."""
    if not annotations:
        raise DataError("no annotations")
    counts = Counter(annotations).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "tie"
    return parse_label(counts[0][0])


def parse_label(value: Any) -> Label:
    """a/b/tie, 1/2/0 (numbers or strings), and a few common spellings, case-insensitively."""
    if isinstance(value, bool):  # bool is an int: never let True mean "a"
        raise DataError(f"label {value!r} is not one of a/b/tie or 1/2/0")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    key = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if key not in _LABELS:
        raise DataError(f"label {value!r} is not one of a/b/tie or 1/2/0")
    return _LABELS[key]


def _text(row: dict, key: str, where: str) -> str:
    if key not in row:
        raise DataError(f"{where}: missing field {key!r} (fields: {', '.join(sorted(row))})")
    v = row[key]
    if v is None or isinstance(v, (list, dict)):
        raise DataError(f"{where}: field {key!r} must be text, got {type(v).__name__}")
    # PandaLM has a few JSON booleans as responses; str() gives the text PandaLM's own prompt shows.
    return v if isinstance(v, str) else str(v)


# -- PandaLM -------------------------------------------------------------------------------------
def parse_pandalm(rows: Sequence[dict], source: str = "pandalm") -> list[PairItem]:
    items = []
    for i, row in enumerate(rows):
        where = f"{source} row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object, got {type(row).__name__}")
        instruction = _text(row, "instruction", where)
        inp = _text(row, "input", where) if "input" in row else ""
        query = instruction + ("\n\n" + inp if inp.strip() else "")
        keys = sorted((k for k in row if k.startswith("annotator")), key=lambda k: (len(k), k))
        if not keys:
            raise DataError(f"{where}: no annotator1..3 fields")
        try:
            label = majority_label([int(row[k]) for k in keys])
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: bad annotator value ({e})") from e
        items.append(PairItem(id=f"pandalm-{row.get('idx', i)}", subset="all", query=query,
                              response_a=_text(row, "response1", where),
                              response_b=_text(row, "response2", where), label=label))
    return _unique(items, source)


def load_pandalm(path: Path) -> list[PairItem]:
    return parse_pandalm(_read_json_list(path), str(path))


# -- LLMBar --------------------------------------------------------------------------------------
def parse_llmbar(rows: Sequence[dict], subset: str) -> list[PairItem]:
    items = []
    for i, row in enumerate(rows):
        where = f"LLMBar {subset} row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object, got {type(row).__name__}")
        if "label" not in row:
            raise DataError(f"{where}: missing field 'label'")
        try:
            label = parse_label(row["label"])
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        items.append(PairItem(id=f"{subset}/{i}", subset=subset, query=_text(row, "input", where),
                              response_a=_text(row, "output_1", where),
                              response_b=_text(row, "output_2", where), label=label))
    return items


def llmbar_subset_name(relative_dir: str) -> str:
    """``LLMBar/Adversarial/Neighbor`` -> ``Adversarial/Neighbor``; other folders keep their path
    (``Processed/MT-Bench``, ``CaseStudy/Normal``)."""
    parts = [p for p in relative_dir.replace(os.sep, "/").split("/") if p and p != "."]
    if parts[:1] == ["LLMBar"] and len(parts) > 1:
        parts = parts[1:]
    return "/".join(parts) or "all"


def load_llmbar(path: Path) -> list[PairItem]:
    """``path``: the ``llmbar`` folder, its ``Dataset`` folder, any folder below, or one dataset.json."""
    if path.is_file():
        return parse_llmbar(_read_json_list(path), path.parent.name)
    root = path / "Dataset" if (path / "Dataset").is_dir() else path
    files = sorted(root.rglob("dataset.json"))
    if not files:
        raise DataError(f"no dataset.json under {path}")
    items = []
    for f in files:
        items += parse_llmbar(_read_json_list(f), llmbar_subset_name(str(f.parent.relative_to(root))))
    return _unique(items, str(path))


def select_subsets(items: Sequence[PairItem], patterns: Iterable[str] | None) -> list[PairItem]:
    """Keep items whose subset is a pattern or lies below one (``Adversarial`` selects
    ``Adversarial/Neighbor`` ...), case-insensitively; ``all`` keeps everything."""
    pats = [p.strip().strip("/").lower() for p in (patterns or []) if p.strip()]
    if not pats or "all" in pats:
        return list(items)
    names = sorted({it.subset for it in items})

    def matches(subset: str, p: str) -> bool:
        s = subset.lower()
        return s == p or s.startswith(p + "/")

    unknown = [p for p in pats if not any(matches(n, p) for n in names)]
    if unknown:
        raise DataError(f"unknown subset(s) {', '.join(unknown)}; available: {', '.join(names)} (or 'all')")
    return [it for it in items if any(matches(it.subset, p) for p in pats)]


# -- generic JSONL -------------------------------------------------------------------------------
def parse_jsonl(lines: Iterable[str], source: str = "jsonl") -> list[PairItem]:
    """One object per line: ``query``, ``response_a``, ``response_b``, ``label`` (a/b/tie or 1/2/0);
    optional ``id`` (default: the line number) and ``subset``. Blank lines are skipped."""
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if "query" not in row and "prompt" in row:
            row["query"] = row["prompt"]
        if "label" not in row:
            raise DataError(f"{where}: missing field 'label' (a/b/tie or 1/2/0; "
                            f"fields: {', '.join(sorted(row))})")
        try:
            label = parse_label(row["label"])
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        items.append(PairItem(id=str(row.get("id", n)), subset=str(row.get("subset", "all")),
                              query=_text(row, "query", where), response_a=_text(row, "response_a", where),
                              response_b=_text(row, "response_b", where), label=label))
    if not items:
        raise DataError(f"{source}: no items")
    return _unique(items, source)


def load_jsonl(path: Path) -> list[PairItem]:
    with path.open(encoding="utf-8") as f:
        return parse_jsonl(f, str(path))


# -- GSM8K best-of-N -----------------------------------------------------------------------------
def parse_gsm8k_bon(lines: Iterable[str], mixed_only: bool = True,
                    source: str = "gsm8k-bon") -> list[BonItem]:
    """Each question's candidate solutions (every field holding ``solution`` and ``is_correct``).
    ``mixed_only``: only questions with both right and wrong candidates, the ones where selection
    matters (731 of 1,319). Ids are the line index, so they do not shift with the filter."""
    items = []
    for i, line in enumerate(x for x in lines if x.strip()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{source} question {i}: not valid JSON ({e.msg})") from None
        cands = [v for v in row.values() if isinstance(v, dict) and "solution" in v and "is_correct" in v]
        if len(cands) < 2 or "question" not in row:
            raise DataError(f"{source} question {i}: needs 'question' and at least 2 candidates")
        flags = [bool(c["is_correct"]) for c in cands]
        if mixed_only and (all(flags) or not any(flags)):
            continue
        items.append(BonItem(id=f"gsm8k-{i}", query=row["question"],
                             candidates=[str(c["solution"]) for c in cands], correct=flags))
    return items


def load_gsm8k_bon(path: Path, mixed_only: bool = True) -> list[BonItem]:
    with path.open(encoding="utf-8") as f:
        return parse_gsm8k_bon(f, mixed_only, str(path))


# -- helpers -------------------------------------------------------------------------------------
def default_data_root() -> Path:
    """``$RRM_EVAL_DATA``, else ``../shared/data`` next to the project (or the working directory)."""
    if env := os.environ.get("RRM_EVAL_DATA"):
        return Path(env)
    project = Path(__file__).resolve().parents[2]
    for base in (project, Path.cwd()):
        if (base.parent / "shared" / "data").is_dir():
            return base.parent / "shared" / "data"
    return Path.cwd().parent / "shared" / "data"


DEFAULT_PATHS = {
    "pandalm": "pandalm/testset-v1.json",
    "llmbar": "llmbar/Dataset",
    "bon": "gsm8k-bon/example_model_solutions.jsonl",
}


def _read_json_list(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects")
    return data


def _unique(items: list[PairItem], source: str) -> list[PairItem]:
    dup = [k for k, c in Counter(it.id for it in items).items() if c > 1]
    if dup:
        raise DataError(f"{source}: duplicate item ids {', '.join(dup[:5])}: "
                        "ids must be unique to resume a run")
    return items
