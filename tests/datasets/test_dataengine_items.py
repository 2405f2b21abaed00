"""DataEngine items: the three views and the reader's counted causes for rows it leaves out."""
from __future__ import annotations

import json

import pytest

from mmrag.common.errors import DataFormatError
from mmrag.datasets import dataengine_items as de

ITEM = {"id": "img1_count", "instruction": "How many trees are in the image?", "answer": "There are two trees.",
        "short_answer": "two", "options": ["one", "two", "three", "four"], "choice_answer": "B",
        "image": "images/img1.jpg", "qtype": "count"}


def test_views_hold_the_same_answer_in_their_own_form():
    text, gold, options = de.view_prompt(ITEM, "direct")
    assert gold == "two" and options is None and text.startswith("How many trees")
    text, gold, options = de.view_prompt(ITEM, "mc")
    assert gold == "B" and "\nA. one\nB. two\nC. three\nD. four\n" in text
    seen = set()
    for n in range(12):  # the shuffled letter always points at 'two', and the order varies over items
        item = dict(ITEM, id=f"img{n}_count")
        _, letter, options = de.view_prompt(item, "mc_shuffled")
        assert options[letter] == "two"
        seen.add(letter)
    assert len(seen) > 1
    assert de.view_prompt(ITEM, "mc_shuffled") == de.view_prompt(ITEM, "mc_shuffled")  # seeded


def test_llava_and_eval_rows():
    record = de.llava_record(ITEM, "mc")
    assert record["conversations"][0]["value"].startswith("<image>\nHow many trees")
    assert record["conversations"][1]["value"] == "B" and record["image"] == "images/img1.jpg"
    row = de.eval_row(ITEM, "direct")
    assert row["answer"] == "two" and row["answer_type"] == "short" and row["qtype"] == "count"
    assert de.eval_row(ITEM, "mc")["options"] == {"A": "one", "B": "two", "C": "three", "D": "four"}


def test_reader_counts_each_left_out_row_with_its_cause(tmp_path):
    rows = [ITEM, dict(ITEM, id="x1", qtype="colourfulness"), dict(ITEM, id="x2", qtype="colourfulness"),
            dict(ITEM, id="x3", choice_answer="E"), {k: v for k, v in ITEM.items() if k != "answer"},
            dict(ITEM, id="x5", choice_answer="A")]
    path = tmp_path / "items.json"
    path.write_text(json.dumps(rows))
    items, report = de.read_items(path, ("count", "existence"))
    assert [it["id"] for it in items] == ["img1_count"] and report.kept == 1
    assert report.skipped["unknown qtype 'colourfulness' (known: count, existence)"] == 2
    assert sum(report.skipped.values()) == 5
    lines = report.lines()
    assert "2 rows skipped: unknown qtype 'colourfulness' (known: count, existence) (first: x1)" in lines
    assert any("missing key(s) answer" in line for line in lines)
    assert any("the option at choice_answer is not the short_answer" in line for line in lines)


def test_reader_refuses_a_file_that_is_not_a_list(tmp_path):
    path = tmp_path / "items.json"
    path.write_text('{"a": 1}')
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        de.read_items(path)
