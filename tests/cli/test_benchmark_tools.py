"""The benchmark data tools end to end through main(argv): a SEED-Bench file -> vqa_jsonl questions ->
(hand-written answers) -> the upload file; a missing input fails in one line naming it."""
from __future__ import annotations

import json

import pytest

from mmrag.cli import benchmark_submission, convert_benchmark
from mmrag.common.jsonl import read_jsonl, write_jsonl

SEED = {"question_type": {"Instance Counting": 3}, "questions": [
    {"answer": "C", "choice_a": "1", "choice_b": "2", "choice_c": "3", "choice_d": "4", "data_id": "a.jpg",
     "data_type": "image", "question": "How many cups?", "question_id": "7", "question_type_id": 3}]}


def test_convert_then_submit(tmp_path, capsys):
    seed = tmp_path / "SEED-Bench.json"
    seed.write_text(json.dumps(SEED))
    assert convert_benchmark.main(["--benchmark", "seed_bench", "--questions", str(seed), "--out-dir",
                                   str(tmp_path / "seed"), "prompt_style=minigpt_v2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 1 and report["scorer"] == "mc_seed"
    row = read_jsonl(tmp_path / "seed" / "questions.jsonl")[0]
    assert row["question"].startswith("[vqa] How many cups?\nA. 1\n") and row["answer"] == "C"
    write_jsonl(tmp_path / "answers.jsonl", [{"question_id": "7", "prediction": "C. 3"}])
    assert benchmark_submission.main(["--benchmark", "seed_bench", "--annotations", str(seed), "--answers",
                                      str(tmp_path / "answers.jsonl"), "--out", str(tmp_path / "up.jsonl")]) == 0
    assert read_jsonl(tmp_path / "up.jsonl") == [{"question_id": "7", "prediction": "C"}]


def test_missing_files_fail_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"error: .*absent.json: SEED-Bench annotation file does not exist"):
        convert_benchmark.main(["--benchmark", "seed_bench", "--questions", str(tmp_path / "absent.json"),
                                "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="benchmark.*expected one of okvqa"):
        convert_benchmark.main(["--benchmark", "gqa", "--questions", "x", "--out-dir", str(tmp_path)])
