"""Readers on tiny excerpts of each format, written here (the real data is never copied)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.eval.data import (
    DataError,
    llmbar_subset_name,
    load_gsm8k_bon,
    load_jsonl,
    load_llmbar,
    load_pandalm,
    majority_label,
    parse_jsonl,
    parse_label,
    select_subsets,
)


def test_pandalm_prompt_label_and_odd_values(tmp_path):
    rows = [
        {"idx": 0, "instruction": "Rewrite it.", "input": "A long sentence.", "response1": "Short.",
         "response2": "Shorter.", "annotator1": 2, "annotator2": 2, "annotator3": 1},
        {"idx": 1, "instruction": "Name a color.", "input": "", "response1": "Blue", "response2": "Car",
         "annotator1": 1, "annotator2": 0, "annotator3": 1},
        {"idx": 7, "instruction": "Is water wet?", "input": "   ", "response1": True, "response2": "no",
         "annotator1": 0, "annotator2": 0, "annotator3": 2},
        {"idx": 9, "instruction": "x", "input": "y", "response1": "a", "response2": "b",
         "annotator1": 0, "annotator2": 1, "annotator3": 2},
    ]
    path = tmp_path / "testset.json"
    path.write_text(json.dumps(rows))
    items = load_pandalm(path)
    assert [it.id for it in items] == ["pandalm-0", "pandalm-1", "pandalm-7", "pandalm-9"]
    assert items[0].query == "Rewrite it.\n\nA long sentence."
    assert items[1].query == "Name a color."  # empty input: no separator
    assert items[2].query == "Is water wet?"  # whitespace-only input counts as empty
    assert [it.label for it in items] == ["b", "a", "tie", "tie"]  # last: 0/1/2, no majority
    assert items[2].response_a == "True"  # PandaLM has JSON booleans as responses
    assert (items[0].response_a, items[0].response_b) == ("Short.", "Shorter.")


def test_pandalm_errors_name_the_row(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"instruction": "x", "input": "", "response1": "a", "annotator1": 1}]))
    with pytest.raises(DataError, match=r"row 0: missing field 'response2'"):
        load_pandalm(path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="JSON list"):
        load_pandalm(path)


def _llmbar_tree(root):  # type: ignore[no-untyped-def]
    def put(rel: str, rows: list[dict]) -> None:
        d = root / "Dataset" / rel
        d.mkdir(parents=True)
        (d / "dataset.json").write_text(json.dumps(rows))

    row = {"input": "Say hi.", "output_1": "hi", "output_2": "bye", "label": 1}
    put("LLMBar/Natural", [row, {**row, "label": 2}])
    put("LLMBar/Adversarial/Neighbor", [row])
    put("LLMBar/Adversarial/GPTOut", [{**row, "label": 2}])
    put("Processed/MT-Bench", [row])
    return root


def test_llmbar_subsets_from_folders(tmp_path):
    items = load_llmbar(_llmbar_tree(tmp_path / "llmbar"))
    assert Counter(it.subset for it in items) == {
        "Natural": 2, "Adversarial/Neighbor": 1, "Adversarial/GPTOut": 1, "Processed/MT-Bench": 1}
    nat = [it for it in items if it.subset == "Natural"]
    assert [it.id for it in nat] == ["Natural/0", "Natural/1"]
    assert [it.label for it in nat] == ["a", "b"]
    assert (nat[0].query, nat[0].response_a, nat[0].response_b) == ("Say hi.", "hi", "bye")
    # The Dataset folder itself and a single file work too.
    assert len(load_llmbar(tmp_path / "llmbar" / "Dataset")) == 5
    one = load_llmbar(tmp_path / "llmbar" / "Dataset" / "LLMBar" / "Natural" / "dataset.json")
    assert [it.subset for it in one] == ["Natural", "Natural"]


def test_subset_selection(tmp_path):
    items = load_llmbar(_llmbar_tree(tmp_path / "llmbar"))
    adv = select_subsets(items, ["adversarial"])  # a parent folder, case-insensitive
    assert {it.subset for it in adv} == {"Adversarial/Neighbor", "Adversarial/GPTOut"}
    assert {it.subset for it in select_subsets(items, ["Natural", "Adversarial/GPTOut"])} == {
        "Natural", "Adversarial/GPTOut"}
    assert len(select_subsets(items, ["all"])) == len(items) == len(select_subsets(items, None))
    # "Adv" is not a folder: no prefix matching on partial names.
    with pytest.raises(DataError, match=r"unknown subset\(s\) adv; available: Adversarial/GPTOut"):
        select_subsets(items, ["Adv"])


def test_llmbar_subset_names():
    assert llmbar_subset_name("LLMBar/Adversarial/Neighbor") == "Adversarial/Neighbor"
    assert llmbar_subset_name("LLMBar/Natural") == "Natural"
    assert llmbar_subset_name("Processed/LLMEval^2") == "Processed/LLMEval^2"
    assert llmbar_subset_name("CaseStudy/Base_9") == "CaseStudy/Base_9"


def test_jsonl_lenient_labels_ids_and_blank_lines(tmp_path):
    lines = [
        {"query": "q", "response_a": "x", "response_b": "y", "label": "A"},
        {"query": "q", "response_a": "x", "response_b": "y", "label": 2},
        {"id": "mine", "query": "q", "response_a": "x", "response_b": "y", "label": " Tie "},
        {"prompt": "p", "response_a": 3, "response_b": "y", "label": "0", "subset": "math"},
        {"query": "q", "response_a": "x", "response_b": "y", "label": 1.0},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(lines[0]) + "\n\n" + "\n".join(json.dumps(x) for x in lines[1:]) + "\n")
    items = load_jsonl(path)
    assert [it.label for it in items] == ["a", "b", "tie", "tie", "a"]
    assert [it.id for it in items] == ["1", "3", "mine", "5", "6"]  # line numbers, blank line included
    assert items[3].query == "p" and items[3].response_a == "3" and items[3].subset == "math"


@pytest.mark.parametrize("line, message", [
    ('{"query": "q", "response_a": "x", "response_b": "y", "label": "c"}',
     r"src:1: label 'c' is not one of a/b/tie"),
    ('{"query": "q", "response_a": "x", "response_b": "y"}', r"src:1: missing field 'label'"),
    ('{"query": "q", "response_a": "x", "label": "a"}', r"src:1: missing field 'response_b'"),
    ('{"query": "q", "response_a": null, "response_b": "y", "label": "a"}',
     r"src:1: field 'response_a' must be text"),
    ('{"query": "q", "response_a": "x", "response_b": "y", "label": true}', r"label True is not one of"),
    ('{"query": "q",', r"src:1: not valid JSON"),
    ('["a", "b"]', r"src:1: expected a JSON object, got list"),
])
def test_jsonl_errors_are_clear(line, message):
    with pytest.raises(DataError, match=message):
        parse_jsonl([line], "src")


def test_jsonl_duplicate_ids_and_empty_file():
    row = json.dumps({"id": 1, "query": "q", "response_a": "x", "response_b": "y", "label": "a"})
    with pytest.raises(DataError, match="duplicate item ids 1"):
        parse_jsonl([row, row], "src")
    with pytest.raises(DataError, match="no items"):
        parse_jsonl(["", "  "], "src")


@pytest.mark.parametrize("value, label", [("a", "a"), ("B", "b"), (1, "a"), (2, "b"), (0, "tie"), ("1", "a"),
                                          ("model_b", "b"), ("draw", "tie"), (2.0, "b")])
def test_parse_label(value, label):
    assert parse_label(value) == label


@pytest.mark.parametrize("value", [3, "c", None, True, 1.5, [1]])
def test_parse_label_rejects(value):
    with pytest.raises(DataError):
        parse_label(value)


@given(st.lists(st.sampled_from([0, 1, 2]), min_size=1, max_size=9))
def test_majority_label_is_the_strict_plurality(annotations):
    counts = {v: annotations.count(v) for v in (0, 1, 2)}
    top = max(counts.values())
    leaders = [v for v, c in counts.items() if c == top]
    expected = {0: "tie", 1: "a", 2: "b"}[leaders[0]] if len(leaders) == 1 else "tie"
    assert majority_label(annotations) == expected
    assert majority_label(list(reversed(annotations))) == expected  # order of annotators is irrelevant


def test_majority_label_examples():
    assert majority_label([2, 2, 1]) == "b"
    assert majority_label([1, 1, 0]) == "a"
    assert majority_label([0, 0, 2]) == "tie"
    assert majority_label([0, 1, 2]) == "tie"
    assert majority_label([1, 2]) == "tie"


def test_gsm8k_bon_keeps_mixed_questions_with_stable_ids(tmp_path):
    def q(text: str, flags: list[bool]) -> str:
        row = {"question": text, "ground_truth": "A: 1"}
        for i, f in enumerate(flags):
            row[f"model{i}"] = {"is_correct": f, "solution": f"{text} solution {i}"}
        return json.dumps(row)

    path = tmp_path / "bon.jsonl"
    rows = [q("all right", [True] * 4), q("mixed", [True, False, False, True]), q("all wrong", [False] * 4),
            q("one right", [False, False, True, False])]
    path.write_text("\n".join(rows) + "\n")
    items = load_gsm8k_bon(path)
    assert [it.id for it in items] == ["gsm8k-1", "gsm8k-3"]  # ids are line indices: stable under the filter
    assert items[0].query == "mixed" and items[0].correct == [True, False, False, True]
    assert items[0].candidates[1] == "mixed solution 1"
    assert len(load_gsm8k_bon(path, mixed_only=False)) == 4
