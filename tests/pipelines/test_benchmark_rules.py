"""One answers file read under each official multiple-choice rule and with circular evaluation:
every number worked out by hand on two questions asked in both option orders."""
from __future__ import annotations

import json

import pytest

from mmrag.cli import benchmark_rules as cli
from mmrag.common.errors import DataFormatError
from mmrag.common.jsonl import write_jsonl
from mmrag.pipelines.benchmark_rules import join_answers, rule_report

QUESTIONS = [
    {"question_id": "q0@r0", "index": 0, "options": {"A": "red", "B": "blue"}, "answer": "A", "category": "colour"},
    {"question_id": "q0@r1", "index": 1000000, "options": {"A": "blue", "B": "red"}, "answer": "B", "category": "colour"},
    {"question_id": "q1@r0", "index": 1, "options": {"A": "cat", "B": "dog"}, "answer": "B", "category": "animal"},
    {"question_id": "q1@r1", "index": 1000001, "options": {"A": "dog", "B": "cat"}, "answer": "A", "category": "animal"},
]
ANSWERS = [{"question_id": "q0@r0", "prediction": "A"}, {"question_id": "q0@r1", "prediction": "B"},
           {"question_id": "q1@r0", "prediction": "(B)"}, {"question_id": "q1@r1", "prediction": "B"}]


def test_rules_by_hand():
    report = rule_report(join_answers(QUESTIONS, ANSWERS, "answers"))
    # rotation 0: 'A' right under every rule; '(B)' wrong for SEED (first character '('), right otherwise
    assert report["rotation0"] == {"mc_seed": 0.5, "mc_mmbench": 1.0, "lenient": 1.0}
    assert report["vanilla_all_rotations"] == 0.75 and report["circular"] == 0.5   # q1's second order is wrong
    assert report["circular_minus_rotation0"]["diff"] == -0.5 and report["mmbench_minus_seed"]["diff"] == 0.5
    assert report["predicted_letters"] == {"A": 1, "B": 3} and report["gold_letters"] == {"A": 2, "B": 2}
    assert report["questions"] == 2 and report["incomplete_questions"] == 0


def test_unknown_question_and_cli(tmp_path, capsys):
    with pytest.raises(DataFormatError, match="answers:1: question_id 'x' is not in the question file"):
        join_answers(QUESTIONS, [{"question_id": "x", "prediction": "A"}], "answers")
    write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    write_jsonl(tmp_path / "a.jsonl", ANSWERS[:3])          # q0 whole, q1 missing a rotation
    assert cli.main(["--questions", str(tmp_path / "q.jsonl"), "--answers", str(tmp_path / "a.jsonl")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 1 and report["incomplete_questions"] == 1 and report["circular"] == 1.0
    assert report["by_category"]["colour"]["circular"] == 1.0
