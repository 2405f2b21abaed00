"""The test table at the val-chosen step count against the original 400-step table, same 200 test
questions, paired bootstrap per row (reporting only: the step count was chosen on val). From the root:

    PYTHONPATH=. python docs/measurements/gemkr_small_val_2026-12-01/compare_test_steps.py 1200
"""
import json
import sys
from pathlib import Path

from mmrag.metrics.bootstrap import format_difference
from mmrag.pipelines.default import differences, read_per_query

ROWS = ("gemkr", "gemkr_no_constraint", "gemkr_no_region_features", "gemkr_no_prefix", "bm25", "dense_dual_encoder")


def main(steps: str) -> None:
    new, old = Path(f"output/gemkr_seeing_small_steps{steps}/eval"), Path("output/gemkr_seeing_small/eval")
    here = Path(__file__).resolve().parent / f"test_steps{steps}"
    lines = [f"| row | {steps} steps minus 400 steps: P@5 [95% CI] | R@5 [95% CI] |", "|---|---|---|"]
    found = {}
    for row in ROWS:
        a, b = read_per_query(new / row / "retrieval_summary.json"), read_per_query(old / row / "retrieval_summary.json")
        assert [q["query_id"] for q in a] == [q["query_id"] for q in b]
        d = dict(differences({"new": a, "old": b}, reference="new"))["old"]
        found[row] = d
        lines.append(f"| {row} | {format_difference(d['P@5'])} | {format_difference(d['R@5'])} |")
    text = "\n".join(lines) + "\n"
    (here / "versus_400_steps.md").write_text(text)
    (here / "versus_400_steps.json").write_text(json.dumps(found, indent=1))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1])
