"""The GeMKR results table and its paired bootstrap differences, built from hand-made evaluation files."""
import json

import pytest

from mmrag.common.errors import DataFormatError, MissingPathError
from mmrag.pipelines.default import REFERENCE, results_table, write_results

P5 = [0.4, 0.2, 0.0, 0.6, 0.2, 0.4, 0.0, 0.2]  # per-query P@5 of the reference
R5 = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]


def _evaluation(folder, p5, r5, ids=None, summary_extra=None):
    """An evaluation's two files, as the knowledge_retrieval task writes them."""
    folder.mkdir(parents=True)
    ids = ids or [f"q{i}" for i in range(len(p5))]
    records = [{"query_id": q, "P@5": p, "R@5": r} for q, p, r in zip(ids, p5, r5)]
    summary = {"case_mode": "gemkr", "P@5": sum(p5) / len(p5), "R@5": sum(r5) / len(r5), "R@10": 0.5, "MRR@10": 0.25,
               **(summary_extra or {})}
    (folder / "retrieval_per_query.json").write_text(json.dumps(records))
    (folder / "retrieval_summary.json").write_text(json.dumps(summary))
    return folder / "retrieval_summary.json"


def test_identical_methods_differ_by_zero_within_noise_and_a_shift_is_outside_noise(tmp_path):
    ref = _evaluation(tmp_path / "ref", P5, R5)
    same = _evaluation(tmp_path / "same", P5, R5)
    # 0.2 lower in P@5 on every question above 0, no hit lost
    shifted = _evaluation(tmp_path / "shift", [max(0.0, p - 0.2) for p in P5], R5)
    text = write_results([(REFERENCE, ref), ("same", same), ("shifted", shifted)], tmp_path)
    assert "| same | +0.0 [+0.0, +0.0] within noise | +0.0 [+0.0, +0.0] within noise |" in text
    diffs = json.loads((tmp_path / "differences.json").read_text())["by_case_mode"]["gemkr"]
    # P5 has two zero rows that cannot shift: the difference is 0.2 on 6 of 8 questions
    assert diffs["shifted"]["P@5"]["diff"] == pytest.approx(0.2 * 6 / 8)
    assert diffs["shifted"]["P@5"]["low"] > 0 and not diffs["shifted"]["P@5"]["within_noise"]
    assert (tmp_path / "results.md").read_text() == text + "\n"


def test_a_constant_shift_on_every_question_is_a_point_interval(tmp_path):
    ref = _evaluation(tmp_path / "ref", [p + 0.2 for p in P5], R5)
    low = _evaluation(tmp_path / "low", P5, [0.0] * 8)
    text = write_results([(REFERENCE, ref), ("low", low)], tmp_path)
    assert "| low | +20.0 [+20.0, +20.0] | +75.0 [+" in text  # R@5: 6 of 8 hits lost, interval varies
    diff = json.loads((tmp_path / "differences.json").read_text())["by_case_mode"]["gemkr"]["low"]["P@5"]
    assert diff["diff"] == pytest.approx(0.2) and diff["low"] == pytest.approx(0.2) and diff["high"] == pytest.approx(0.2)


def test_questions_are_paired_by_id_not_by_position(tmp_path):
    ref = _evaluation(tmp_path / "ref", P5, R5)
    ids = [f"q{i}" for i in range(8)]
    order = [3, 1, 7, 0, 2, 6, 5, 4]
    other = _evaluation(tmp_path / "perm", [P5[i] for i in order], [R5[i] for i in order], ids=[ids[i] for i in order])
    text = write_results([(REFERENCE, ref), ("perm", other)], tmp_path)
    assert "| perm | +0.0 [+0.0, +0.0] within noise |" in text


def test_different_question_sets_and_missing_per_query_files_are_refused(tmp_path):
    ref = _evaluation(tmp_path / "ref", P5, R5)
    other = _evaluation(tmp_path / "other", P5, R5, ids=[f"x{i}" for i in range(8)])
    with pytest.raises(DataFormatError, match="did not score the same questions"):
        write_results([(REFERENCE, ref), ("other", other)], tmp_path)
    (tmp_path / "other" / "retrieval_per_query.json").unlink()
    with pytest.raises(MissingPathError, match="retrieval_per_query.json"):
        write_results([(REFERENCE, ref), ("other", other)], tmp_path)


def test_table_columns_keep_their_numbers_and_add_the_gemkr_mode_beside_the_headline():
    old = {"case_mode": "gemkr", "P@5": 0.18, "R@5": 0.30, "R@10": 0.385, "MRR@10": 0.246, "clues_in_corpus": 1.0}
    assert results_table([("GeMKR (constrained)", old)]).splitlines()[2] == "| GeMKR (constrained) | 18.0 | 30.0 | 38.5 | 24.6 | 100% |"
    new = {**old, "case_mode": "case_insensitive", "P@5": 0.198, "R@5": 0.33,
           "by_case_mode": {"gemkr": {"P@5": 0.18, "R@5": 0.30}}}
    lines = results_table([("GeMKR (constrained)", new), ("BM25", {**new, "by_case_mode": {}})]).splitlines()
    assert lines[0].endswith("| P@5 (gemkr mode) | R@5 (gemkr mode) |")
    assert lines[2] == "| GeMKR (constrained) | 19.8 | 33.0 | 38.5 | 24.6 | 100% | 18.0 | 30.0 |"
    assert lines[3].endswith("| - | - |")


def test_rescoring_saved_rankings_counts_a_capitalised_answer_only_case_insensitively(tmp_path):
    from mmrag.pipelines.default import RUNS, eval_folder, rescore_evaluations

    (tmp_path / "corpus.csv").write_text("id,text\np1,Pellumbra is far away.\np2,it comes from pellumbra\np3,nothing here\n")
    saved = [{"query_id": "q1", "retrieved": ["p1", "p2", "p3"], "answers": ["Pellumbra"],
              "relevant": [False, True, False]}]  # gemkr mode: the answer lower-cased, the passage as is
    for label, _, _ in RUNS:
        _evaluation(tmp_path / "eval" / eval_folder(label), [0.2], [1.0])
        (tmp_path / "eval" / eval_folder(label) / "retrieval_per_query.json").write_text(json.dumps(saved))
    text = rescore_evaluations(tmp_path / "eval", tmp_path / "corpus.csv", tmp_path / "out")
    assert "| GeMKR (constrained) | 40.0 | 100.0 | 100.0 | 100.0 | - | 20.0 | 100.0 |" in text
    saved[0]["relevant"] = [True, True, False]  # not what gemkr mode gives: a different corpus
    (tmp_path / "eval" / eval_folder(RUNS[0][0]) / "retrieval_per_query.json").write_text(json.dumps(saved))
    with pytest.raises(DataFormatError, match="saved relevance flags differ"):
        rescore_evaluations(tmp_path / "eval", tmp_path / "corpus.csv", tmp_path / "out2")


def test_the_gemkr_mode_gets_its_own_differences_beside_a_case_insensitive_headline(tmp_path):
    def records(p5_ci, p5_gemkr):
        return [{"query_id": f"q{i}", "P@5": a, "R@5": 1.0, "by_case_mode": {
            "case_insensitive": {"P@5": a, "R@5": 1.0}, "gemkr": {"P@5": b, "R@5": 1.0}}} for i, (a, b) in enumerate(zip(p5_ci, p5_gemkr))]
    rows = []
    for label, p5_ci, p5_gemkr in ((REFERENCE, [0.4] * 4, [0.2] * 4), ("other", [0.4] * 4, [0.0] * 4)):
        path = _evaluation(tmp_path / label, p5_ci, [1.0] * 4, summary_extra={"case_mode": "case_insensitive"})
        path.with_name("retrieval_per_query.json").write_text(json.dumps(records(p5_ci, p5_gemkr)))
        rows.append((label, path))
    text = write_results(rows, tmp_path)
    headline, gemkr = text.split("(case_insensitive case mode)")[1], text.split("(gemkr case mode)")[1]
    assert "| other | +0.0 [+0.0, +0.0] within noise |" in headline.split("(gemkr case mode)")[0]
    assert "| other | +20.0 [+20.0, +20.0] | +0.0 [+0.0, +0.0] within noise |" in gemkr
